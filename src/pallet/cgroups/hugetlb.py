"""The hugetlb controller, v1 hugetlb.<size>.limit_in_bytes or v2 hugetlb.<size>.max.

Documentation/admin-guide/cgroup-v1/hugetlb.rst and cgroup-v2.rst "HugeTLB"; one file per huge
page size the host supports, so a size without a file is NotSupported.
"""

from __future__ import annotations

import os

from pallet.cgroups import cgroupfs as fs
from pallet.cgroups.conversions import hugepage_size_suffix
from pallet.errors import NotSupported


def set(d: str | os.PathLike[str], limits: list, suffix: str) -> None:
    for i, entry in enumerate(limits):
        size = hugepage_size_suffix(entry["pageSize"])
        target = os.path.join(d, f"hugetlb.{size}.{suffix}")
        if not os.path.exists(target):
            raise NotSupported(f"linux.resources.hugepageLimits[{i}].pageSize: {size} huge pages "
                               f"are not available on this host (no {os.path.basename(target)})")
        limit = entry["limit"]
        fs.write(target, "max" if limit < 0 and suffix == "max" else limit)
