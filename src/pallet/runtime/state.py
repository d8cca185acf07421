"""Per-container runtime state on disk, under --root (default /run/pallet-runtime).

Layout, version 1:
    <root>/<id>/state.json   {"version": 1, "id", "pid", "pid_start", "bundle", "rootfs", "created",
                              "owner", "cgroup_path", "config", "annotations", "cgroup_dirs"}
"cgroup_dirs" (the cgroup's directory in each hierarchy, so that `delete` of a stopped container
needs no cgroup driver) is optional: files written before it was added lack it, and are read
as they were.
    <root>/<id>/exec.fifo    present from create until start (the init blocks writing to it)
state.json is written atomically (temp + rename, not fsync: see StateStore.save). The status is
not stored: it is read
from the kernel each time (is the pid alive with the same start time, is the fifo still there,
is the cgroup frozen), so a crash at any moment cannot leave a stale status behind. It is plain
JSON for any reader; the runtime reads and writes it through jsonio (no `json` import).
"""

from __future__ import annotations

import os

from pallet import jsonio
from pallet.errors import AlreadyExists, NotFound, Unavailable
from pallet.oci.runtime_spec import OCI_VERSION, check_id

STATE_VERSION = 1
DEFAULT_ROOT = "/run/pallet-runtime"


class ContainerState:
    """What state.json holds. A plain class, not a dataclass: `start` and `state` run this module
    on every call and dataclasses costs ~6 ms of imports (inspect, ast) for nothing here."""

    FIELDS = ("id", "bundle", "rootfs", "created", "owner", "cgroup_path", "config", "pid", "pid_start",
              "annotations", "cgroup_dirs")

    def __init__(self, id: str, bundle: str, rootfs: str, created: str, owner: str, cgroup_path: str,
                 config: dict, pid: int = 0, pid_start: int = 0, annotations: dict | None = None,
                 cgroup_dirs: list[str] | None = None) -> None:
        self.id, self.bundle, self.rootfs, self.created = id, bundle, rootfs, created
        self.owner, self.cgroup_path, self.config = owner, cgroup_path, config
        self.pid, self.pid_start = pid, pid_start
        self.annotations = annotations or {}
        self.cgroup_dirs = cgroup_dirs or []

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ContainerState) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (starttime), or None when the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


class StateStore:
    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = str(root)

    def dir(self, cid: str) -> str:
        check_id(cid)
        return os.path.join(self.root, cid)

    def fifo(self, cid: str) -> str:
        return os.path.join(self.dir(cid), "exec.fifo")

    def reserve(self, cid: str) -> str:
        """Create the container's directory; AlreadyExists if the id is taken."""
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        d = self.dir(cid)
        try:
            os.mkdir(d, 0o711)
        except FileExistsError:
            raise AlreadyExists(f"container with id {cid!r} already exists") from None
        return d

    def save(self, st: ContainerState) -> None:
        """Write state.json: a temp file renamed over it, so a reader sees the old or the new one,
        never half of one (rename(2)). No fsync, as runc (libcontainer saveState): the state
        describes live processes and lives under /run, a tmpfs by the FHS ("cleared at the
        beginning of the boot process"); a crash that could lose the write also kills the
        processes it describes. The fsync cost 0.5-5 ms of every create where --root is on
        disk; load() reports an unreadable file clearly if one is left by such a crash."""
        d = self.dir(st.id)
        tmp = os.path.join(d, "state.json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            data = memoryview(jsonio.dumps({"version": STATE_VERSION, **st.to_dict()}).encode())
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(d, "state.json"))

    def load(self, cid: str) -> ContainerState:
        path = os.path.join(self.dir(cid), "state.json")
        try:
            data = jsonio.load_file(path)
        except FileNotFoundError:
            raise NotFound(f"container {cid!r} does not exist") from None
        except ValueError as exc:  # only a crash between create's write and rename leaves one
            raise Unavailable(f"container {cid!r}: {path} is unreadable ({exc}); "
                              f"remove {os.path.dirname(path)} by hand") from None
        data.pop("version", None)
        return ContainerState(**data)

    def list(self) -> list[str]:
        if not os.path.isdir(self.root):
            return []
        return sorted(n for n in os.listdir(self.root)
                      if os.path.exists(os.path.join(self.root, n, "state.json")))

    def remove(self, cid: str) -> None:
        """Remove the container's directory. It holds only files (state.json, exec.fifo, ...),
        so a loop does it without importing shutil (~2 ms of `delete`); rmtree is the fallback."""
        d = self.dir(cid)
        try:
            for name in os.listdir(d):
                os.unlink(os.path.join(d, name))
            os.rmdir(d)
        except FileNotFoundError:
            pass
        except OSError:
            import shutil

            shutil.rmtree(d, ignore_errors=True)


def status_of(store: StateStore, st: ContainerState, frozen=lambda: False) -> str:
    """stopped, created, paused or running; `frozen` is asked only when it matters (it loads the
    cgroup driver, which `start` and `state` of a created container do not need)."""
    if not st.pid or proc_start_time(st.pid) != st.pid_start:
        return "stopped"
    if os.path.exists(store.fifo(st.id)):
        return "created"
    return "paused" if frozen() else "running"


def oci_state(st: ContainerState, status: str) -> dict:
    """The state object of the runtime spec (runtime.md "State"), with runc's extra fields."""
    out = {
        "ociVersion": OCI_VERSION,
        "id": st.id,
        "pid": st.pid if status != "stopped" else 0,
        "status": status,
        "bundle": st.bundle,
        "rootfs": st.rootfs,
        "created": st.created,
        "owner": st.owner,
    }
    if st.annotations:
        out["annotations"] = st.annotations
    return out
