"""The v1 devices controller: the OCI rule list written line by line to devices.allow / devices.deny.

Documentation/admin-guide/cgroup-v1/devices.rst. Rules are written in list order, so a list that
opens with a deny-all ("a" to devices.deny, as runc and Docker send) first drops everything the
cgroup inherited and the allows that follow are the whole whitelist.
"""

from __future__ import annotations

import os

from pallet.cgroups import cgroupfs as fs
from pallet.cgroups.devices import DeviceRule


def set(d: str, rules: list[DeviceRule]) -> None:
    for rule in rules:
        fs.write(os.path.join(d, "devices.allow" if rule.allow else "devices.deny"), rule.v1_line())
