"""The CgroupManager interface (a typing.Protocol), apart from the package so that loading
pallet.cgroups costs no `typing` import (~2 ms of every pallet-runtime create)."""

from __future__ import annotations

from typing import Protocol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pallet.cgroups.stats import Stats


class CgroupManager(Protocol):
    """The cgroup of one container, in every hierarchy it has on this host.

    `path` is the OCI linux.cgroupsPath: "/pallet/<id>", relative to each hierarchy root.
    validate() is pure and creates nothing. apply(), set(), freeze()/thaw() and destroy() are
    idempotent. Errors are pallet.errors kinds: InvalidArgument naming the OCI field
    ("linux.resources.memory.limit: ..."), NotSupported for what this host lacks, Conflict when
    the cgroup is busy, PermissionDenied, NotFound for a cgroup that does not exist.
    """

    version: int
    path: str

    def validate(self, resources: dict) -> None:
        """Check an OCI linux.resources dict against the spec and this host; writes nothing."""

    def apply(self, pid: int) -> None:
        """Create the cgroup (and parents) if needed, then move pid into it."""

    def set(self, resources: dict) -> None:
        """Write OCI linux.resources; at create and on update of a running container."""

    def stats(self) -> Stats:
        """Current usage counters."""
        ...

    def freeze(self) -> None:
        """Freeze every process and return once the kernel reports the cgroup frozen."""

    def thaw(self) -> None:
        """Let the processes run again."""

    def frozen(self) -> bool:
        """Whether the kernel reports the cgroup frozen."""
        ...

    def pids(self) -> list[int]:
        """Every process in the cgroup and its sub-cgroups, sorted."""
        ...

    def exists(self) -> bool:
        """Whether the cgroup directory exists (in any v1 hierarchy)."""
        ...

    def dirs(self) -> list[str]:
        """The cgroup's directory in each hierarchy (one for v2), existing or not: what
        pallet-runtime records to remove an empty cgroup without this manager (delete)."""
        ...

    def self_move_files(self) -> list[str]:
        """Files a single-threaded process writes "0" to, to move itself into this cgroup without
        cgroup_threadgroup_rwsem (v1's `tasks` of each hierarchy; kernel/cgroup/cgroup.c
        cgroup_procs_write_start: a thread moving itself needs no threadgroup lock, so no RCU
        grace period), or [] when there is no such way (v2: cgroup.procs takes the lock)."""
        ...

    def destroy(self) -> None:
        """Remove `path` and its sub-cgroups, children first; never a parent. Idempotent."""
