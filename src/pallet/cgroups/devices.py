"""OCI linux.resources.devices entries as checked rules, shared by the v1 files and the v2 eBPF filter.

The OCI list is read like cgroup v1 reads writes to devices.allow / devices.deny
(Documentation/admin-guide/cgroup-v1/devices.rst): in order, a later rule overriding an earlier
one, an "a" (all devices) rule resetting the default. A fresh cgroup inherits "a *:* rwm" from
the root, so a list that does not start with a deny-all only removes or adds exceptions.
"""

from __future__ import annotations

from pallet.errors import InvalidArgument

WILDCARD = -1


class DeviceRule:
    """allow, type ("a" all, "b" block, "c" char), major, minor (WILDCARD for any), access.
    A plain value class, not a dataclass or a namedtuple: dataclasses costs ~6 ms of imports on
    every create, and collections (for namedtuple) ~1 ms."""

    __slots__ = ("access", "allow", "major", "minor", "type")

    def __init__(self, allow: bool, type: str = "a", major: int = WILDCARD, minor: int = WILDCARD,
                 access: str = "rwm") -> None:
        self.allow, self.type, self.major, self.minor, self.access = allow, type, major, minor, access

    def _key(self) -> tuple:
        return (self.allow, self.type, self.major, self.minor, self.access)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeviceRule) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"DeviceRule(allow={self.allow!r}, type={self.type!r}, major={self.major!r}, "
                f"minor={self.minor!r}, access={self.access!r})")

    def v1_line(self) -> str:
        """The line to write to devices.allow / devices.deny ("c 1:3 rwm", or "a" for all)."""
        if self.type == "a":
            return "a"
        major = "*" if self.major == WILDCARD else str(self.major)
        minor = "*" if self.minor == WILDCARD else str(self.minor)
        return f"{self.type} {major}:{minor} {self.access}"


def parse_rules(entries: list) -> list[DeviceRule]:
    """Check OCI device entries; raises InvalidArgument naming the entry and field."""
    if not isinstance(entries, list):
        raise InvalidArgument("linux.resources.devices: must be a list")
    rules = []
    for i, entry in enumerate(entries):
        where = f"linux.resources.devices[{i}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"{where}: must be an object")
        allow = entry.get("allow")
        if not isinstance(allow, bool):
            raise InvalidArgument(f"{where}.allow: required boolean")
        dtype = entry.get("type") or "a"
        if dtype not in ("a", "b", "c"):
            raise InvalidArgument(f"{where}.type: {dtype!r} is not one of a, b, c")
        numbers = []
        for name in ("major", "minor"):
            value = entry.get(name)
            if value is None:
                value = WILDCARD
            if not isinstance(value, int) or isinstance(value, bool) or value < WILDCARD:
                raise InvalidArgument(f"{where}.{name}: {value!r} is not a device number")
            numbers.append(value)
        access = entry.get("access") or "rwm"
        if not isinstance(access, str) or not access or set(access) - set("rwm") \
                or len(set(access)) != len(access):
            raise InvalidArgument(f"{where}.access: {access!r} is not made of r, w, m")
        # Canonical order so rules compare equal however the caller spelled them.
        access = "".join(c for c in "rwm" if c in access)
        rules.append(DeviceRule(allow, dtype, numbers[0], numbers[1], access))
    return rules


def effective(rules: list[DeviceRule]) -> tuple[bool, list[DeviceRule]]:
    """The default (allow all?) and the exceptions still in force after the last "a" rule.

    devices.rst: writing "a" to devices.deny (allow) sets the default to deny (allow) and drops
    every exception, so only rules after the last "a" rule matter. With no "a" rule the default
    is the inherited one: allow.
    """
    default_allow = True
    start = 0
    for i, rule in enumerate(rules):
        if rule.type == "a":
            default_allow, start = rule.allow, i + 1
    return default_allow, rules[start:]
