"""Per-container runtime state on disk, under --root (default /run/pallet-runtime).

Layout, version 1:
    <root>/<id>/state.json   {"version": 1, "id", "pid", "pid_start", "bundle", "rootfs", "created",
                              "owner", "cgroup_path", "config", "annotations"}
    <root>/<id>/exec.fifo    present from create until start (the init blocks writing to it)
state.json is written atomically (temp + fsync + rename). The status is not stored: it is read
from the kernel each time (is the pid alive with the same start time, is the fifo still there,
is the cgroup frozen), so a crash at any moment cannot leave a stale status behind.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pallet.errors import AlreadyExists, NotFound
from pallet.oci.runtime_spec import OCI_VERSION, check_id

STATE_VERSION = 1
DEFAULT_ROOT = "/run/pallet-runtime"


@dataclass
class ContainerState:
    id: str
    bundle: str
    rootfs: str
    created: str
    owner: str
    cgroup_path: str
    config: dict
    pid: int = 0
    pid_start: int = 0
    annotations: dict = field(default_factory=dict)


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
        self.root = Path(root)

    def dir(self, cid: str) -> Path:
        check_id(cid)
        return self.root / cid

    def fifo(self, cid: str) -> Path:
        return self.dir(cid) / "exec.fifo"

    def reserve(self, cid: str) -> Path:
        """Create the container's directory; AlreadyExists if the id is taken."""
        self.root.mkdir(mode=0o711, parents=True, exist_ok=True)
        d = self.dir(cid)
        try:
            d.mkdir(mode=0o711)
        except FileExistsError:
            raise AlreadyExists(f"container with id {cid!r} already exists") from None
        return d

    def save(self, st: ContainerState) -> None:
        d = self.dir(st.id)
        tmp = d / "state.json.tmp"
        with open(tmp, "w") as f:
            json.dump({"version": STATE_VERSION, **asdict(st)}, f)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, d / "state.json")

    def load(self, cid: str) -> ContainerState:
        try:
            with open(self.dir(cid) / "state.json") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise NotFound(f"container {cid!r} does not exist") from None
        data.pop("version", None)
        return ContainerState(**data)

    def list(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "state.json").exists())

    def remove(self, cid: str) -> None:
        shutil.rmtree(self.dir(cid), ignore_errors=True)


def status_of(store: StateStore, st: ContainerState, frozen: bool = False) -> str:
    if not st.pid or proc_start_time(st.pid) != st.pid_start:
        return "stopped"
    if store.fifo(st.id).exists():
        return "created"
    return "paused" if frozen else "running"


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
