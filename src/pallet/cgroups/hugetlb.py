"""The hugetlb controller, v1 hugetlb.<size>.limit_in_bytes or v2 hugetlb.<size>.max.

Documentation/admin-guide/cgroup-v1/hugetlb.rst and cgroup-v2.rst "HugeTLB"; one file per huge
page size the host supports, so a size without a file is NotSupported.
"""

from __future__ import annotations

from pathlib import Path

from pallet.cgroups import cgroupfs as fs
from pallet.cgroups.conversions import hugepage_size_suffix
from pallet.errors import NotSupported


def set(d: Path, limits: list, suffix: str) -> None:
    for i, entry in enumerate(limits):
        size = hugepage_size_suffix(entry["pageSize"])
        target = d / f"hugetlb.{size}.{suffix}"
        if not target.exists():
            raise NotSupported(f"linux.resources.hugepageLimits[{i}].pageSize: {size} huge pages "
                               f"are not available on this host (no {target.name})")
        limit = entry["limit"]
        fs.write(target, "max" if limit < 0 and suffix == "max" else limit)
