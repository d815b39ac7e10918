"""seqclaims: pre-registered claims about what sequence models have learned, checked by pytest."""

__version__ = "0.1.0"
