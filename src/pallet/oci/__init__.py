"""Pure data of the OCI specs: runtime config and state, image formats, digests; no I/O beyond JSON."""
