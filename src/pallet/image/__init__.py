"""Images: the content store (an OCI image layout), image metadata (SQLite), layers, snapshots."""
