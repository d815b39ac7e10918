"""The embedded models built here: the planted models and the trained organisms, with their cards."""
