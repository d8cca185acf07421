"""The v1 net_cls and net_prio controllers: OCI linux.resources.network.

Documentation/admin-guide/cgroup-v1/net_cls.rst (net_cls.classid) and net_prio.rst
(net_prio.ifpriomap, one "ifname priority" per write). cgroup v2 has neither.
"""

from __future__ import annotations

import os

from pallet.cgroups import cgroupfs as fs


def set_classid(d: str, classid: int) -> None:
    fs.write(os.path.join(d, "net_cls.classid"), classid)


def set_priorities(d: str, priorities: list) -> None:
    for entry in priorities:
        fs.write(os.path.join(d, "net_prio.ifpriomap"), f"{entry['name']} {entry['priority']}")
