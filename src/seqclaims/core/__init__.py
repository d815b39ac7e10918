"""What a claim is and what its evidence is made of: the claim schema, the value types a family hands back,
verdicts, and the check families' declarations. The bottom layer above the base modules: nothing here
imports `inputs`, `methods`, `record` or `judging`."""
