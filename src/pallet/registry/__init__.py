"""Registries: the distribution-API client (pull, push, login, search) and Pallet's own registry server."""
