"""The judge: claim schema, check families, evidence values, verdicts and the pipeline that joins them."""
