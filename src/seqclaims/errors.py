"""Errors a user can cause, and missing capabilities.

Both carry a one-line message that names the input and what to do about it. They are
results, not crashes: the judge records them against the claim and moves on.
"""


class SeqclaimsError(Exception):
    """A problem with an input the user controls (a claim, a file, a model folder)."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))

    @property
    def message(self) -> str:
        return str(self)


class ClaimError(SeqclaimsError):
    """A malformed claim file: schema, YAML syntax, include, unknown family or statistic."""


class InputError(SeqclaimsError):
    """A bad input other than the claim file itself: FASTA, CSV, BED, model folder, sequence length."""


class Unavailable(SeqclaimsError):
    """A model or dataset that is not present locally; the claim is skipped with this reason."""


class HookInfidelity(SeqclaimsError):
    """Reading a model's hooks changed its outputs: its evidence cannot be trusted, so its claims are
    inconclusive with this reason (not an error of the claim)."""
