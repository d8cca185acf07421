"""palletd: the daemon serving the Docker Engine API; this package wires flags, config and listeners."""
