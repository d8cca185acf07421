"""The few kinds of error every Pallet layer raises; imports nothing else from pallet.

Modelled on containerd's errdefs: one root, a handful of kinds, mapped to HTTP statuses and
CLI exit codes once, at the edges.
"""


class PalletError(Exception):
    """Root of every error Pallet raises on purpose."""


class NotFound(PalletError):
    """The named object does not exist."""


class AlreadyExists(PalletError):
    """An object with that name or id exists already."""


class Conflict(PalletError):
    """The object is in a state that does not allow the operation."""


class InvalidArgument(PalletError):
    """The caller's input is malformed or unsupported; the message names the field."""


class NotSupported(PalletError):
    """The operation or feature is not available on this host or in this version."""


class PermissionDenied(PalletError):
    """The caller may not do this."""


class Unavailable(PalletError):
    """A needed service or resource is not available right now."""
