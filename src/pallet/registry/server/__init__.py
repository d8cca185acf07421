"""Pallet's registry server: the OCI distribution API over a content-addressed store.

Run it with `pallet registry serve --addr HOST:PORT --root DIR [--config FILE]` or
`python -m pallet.registry.server serve ...`. The pieces: `storage` (the storage Protocol and its
file-system implementation), `app` (the aiohttp routes), `auth` (htpasswd, bearer tokens, access
rules), `notify` (webhooks), `search`, `gc` (offline mark and sweep) and `config`.
Design notes: docs/design/registry.md; spec: ../shared/specs/oci-distribution/spec.md.
"""
