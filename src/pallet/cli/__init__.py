"""The `pallet` command line: Docker's verbs and flags, one module per verb (they arrive with palletd)."""
