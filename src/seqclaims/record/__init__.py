"""What a run leaves behind: the pre-registration registry, the ledger of accepted conclusions, the report."""
