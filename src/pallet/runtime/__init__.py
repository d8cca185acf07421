"""pallet-runtime: the OCI runtime library and its runc-compatible command line."""
