"""Default security profiles `pallet-runtime spec` writes into config.json.

`default_seccomp` resolves the default seccomp policy (pallet.runtime.profiles.seccomp_default)
for one capability set, architecture and kernel, the way Docker resolves its profile.
"""

from pallet.runtime.profiles.seccomp_default import default_seccomp

__all__ = ["default_seccomp"]
