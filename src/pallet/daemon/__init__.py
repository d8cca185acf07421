"""palletd: the daemon serving the Docker Engine API (issue 4)."""
