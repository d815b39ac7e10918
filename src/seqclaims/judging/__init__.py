"""Judging claims: a claim file in, a result out.

`judge.judge_path` loads a claim and judges it (the pytest plugin, the Ray executor and `seqclaims judge`
all go through it); `judge.judge` asks the claim's family for its evidence, or re-judges stored evidence
(`evidence_store`), and decides every criterion; `claim_inputs` loads the claim's model and dataset for
its family. This layer sits above `inputs` and `methods`, which it uses, and below the plugin, the
command line and the executors; it never reaches `record` (the registry, ledger and report).
"""
