"""Makes `pytest claims/` collect the YAML claims (see seqclaims.plugin)."""

pytest_plugins = ["seqclaims.plugin"]
