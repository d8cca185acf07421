"""Named volumes of the local driver: directories under the data root, one small record each.

On disk, version 1:
    <data-root>/volumes/<name>/volume.json   the record (atomic: temp + fsync + rename):
        {"version": 1, "Name", "Driver": "local", "CreatedAt", "Labels", "Options", "Scope": "local"}
    <data-root>/volumes/<name>/_data/        the volume's content (the Mountpoint)

Anonymous volumes (no name given: a random 64-hex name) carry Docker's label
`com.docker.volume.anonymous`; `prune` removes only those unless asked for `all`, as dockerd
does for API >= 1.42, and a container removed with `volumes=True` removes its anonymous ones.

Which volumes are in use is the engine's knowledge: `VolumeStore(data_root, users)` takes a
callable giving the ids of the containers using a volume name. Checks and removals run under
`lock`, which the engine also holds while it creates a container's volumes and registers them,
so a volume cannot be removed between the two. Driver options (type/device/o of Docker's local
driver, which mount a file system at the mount point) are not supported yet.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pallet.errors import Conflict, InvalidArgument, NotFound, NotSupported

RECORD_VERSION = 1
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def valid_name(name: str) -> bool:
    return bool(NAME_RE.match(name))


def _write_json_atomic(path: str, data: Any) -> None:
    tmp = f"{path}.tmp-{secrets.token_hex(4)}"
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _size(path: str) -> int:
    total = 0
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            try:
                st = os.lstat(os.path.join(root, n))
            except OSError:
                continue
            if n in files:
                total += st.st_size
    return total


def _label_ok(labels: Mapping[str, str], spec: str) -> bool:
    key, sep, value = spec.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _bool_filter(key: str, value: str) -> bool:
    v = value.lower()
    if v in ("true", "1"):
        return True
    if v in ("false", "0"):
        return False
    raise InvalidArgument(f"invalid filter '{key}={value}'")


class VolumeStore:
    """The local driver's volumes under `<data-root>/volumes` (see the module docstring)."""

    def __init__(self, data_root: str | os.PathLike[str],
                 users: Callable[[str], Sequence[str]] | None = None) -> None:
        self.root = os.path.join(os.path.abspath(data_root), "volumes")
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        self.users: Callable[[str], Sequence[str]] = users or (lambda name: [])
        self.lock = threading.RLock()

    def _dir(self, name: str) -> str:
        return os.path.join(self.root, name)

    def mountpoint(self, name: str) -> str:
        return os.path.join(self._dir(name), "_data")

    def _view(self, rec: Mapping[str, Any]) -> dict[str, Any]:
        return {"CreatedAt": rec["CreatedAt"], "Driver": "local", "Labels": dict(rec.get("Labels") or {}),
                "Mountpoint": self.mountpoint(rec["Name"]), "Name": rec["Name"],
                "Options": dict(rec.get("Options") or {}), "Scope": "local"}

    def _read(self, name: str) -> dict[str, Any] | None:
        if not valid_name(name):
            return None
        try:
            with open(os.path.join(self._dir(name), "volume.json")) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            return None
        if not isinstance(rec, dict) or rec.get("version") != RECORD_VERSION or rec.get("Name") != name:
            return None
        return rec

    def create(self, name: str | None = None, driver: str | None = None,
               labels: Mapping[str, str] | None = None, options: Mapping[str, str] | None = None,
               *, anonymous: bool = False) -> dict[str, Any]:
        """Docker's Volume; an existing volume of that name is returned as it is (dockerd's
        behaviour). No name: a random 64-hex name, labelled anonymous when `anonymous`."""
        if driver not in (None, "", "local"):
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
        if options:
            raise NotSupported("options of the local volume driver (type, device, o) are not supported yet")
        labels = dict(labels or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise InvalidArgument("volume labels must be a map of strings")
        if not name:
            name = secrets.token_hex(32)
            if anonymous:
                labels[ANONYMOUS_LABEL] = ""
        elif not valid_name(name):
            raise InvalidArgument(f'create {name}: "{name}" includes invalid characters for a local volume '
                                  'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to '
                                  "pass a host directory, use absolute path")
        with self.lock:
            rec = self._read(name)
            if rec is not None:
                return self._view(rec)
            rec = {"version": RECORD_VERSION, "Name": name, "Driver": "local",
                   "CreatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "Labels": labels, "Options": {}, "Scope": "local"}
            d = self._dir(name)
            try:
                os.makedirs(self.mountpoint(name), mode=0o755, exist_ok=True)
                os.chmod(self.mountpoint(name), 0o755)
                _write_json_atomic(os.path.join(d, "volume.json"), rec)
            except BaseException:
                shutil.rmtree(d, ignore_errors=True)
                raise
            self._event("create", name)
            return self._view(rec)

    def get(self, name: str) -> dict[str, Any]:
        rec = self._read(name)
        if rec is None:
            raise NotFound(f"get {name}: no such volume")
        return self._view(rec)

    def exists(self, name: str) -> bool:
        return self._read(name) is not None

    def _all(self) -> builtins.list[dict[str, Any]]:
        out = []
        for name in sorted(os.listdir(self.root)):
            rec = self._read(name)
            if rec is not None:
                out.append(self._view(rec))
        return out

    def list(self, filters: Mapping[str, Sequence[str]] | None = None) -> builtins.list[dict[str, Any]]:
        """Volumes matching Docker's filters: name (a regular expression searched in the name),
        label (key or key=value, all must match), label! , driver, dangling (true: used by no
        container)."""
        flt = {k: [str(v) for v in vs] for k, vs in (filters or {}).items()}
        for k in flt:
            if k not in ("name", "label", "label!", "driver", "dangling"):
                raise InvalidArgument(f"invalid filter '{k}'")
        dangling = [_bool_filter("dangling", v) for v in flt.get("dangling") or []]
        names = []
        for pattern in flt.get("name") or []:
            try:
                names.append(re.compile(pattern))
            except re.error:
                names.append(re.compile(re.escape(pattern)))
        out = []
        for v in self._all():
            if names and not any(p.search(v["Name"]) for p in names):
                continue
            if not all(_label_ok(v["Labels"], s) for s in flt.get("label") or []):
                continue
            if any(_label_ok(v["Labels"], s) for s in flt.get("label!") or []):
                continue
            if flt.get("driver") and "local" not in flt["driver"]:
                continue
            if dangling and (not self.users(v["Name"])) not in dangling:
                continue
            out.append(v)
        return out

    def remove(self, name: str, force: bool = False) -> None:
        """Remove a volume: Conflict while a container uses it, even with `force` (dockerd's force
        only ignores a missing volume)."""
        with self.lock:
            if self._read(name) is None:
                if force:
                    return
                raise NotFound(f"get {name}: no such volume")
            users = self.users(name)
            if users:
                raise Conflict(f"remove {name}: volume is in use - [{' '.join(users)}]")
            self._delete(name)

    def _delete(self, name: str) -> None:
        d = self._dir(name)
        # The record goes first, so a half-removed volume is never listed.
        os.unlink(os.path.join(d, "volume.json"))
        shutil.rmtree(d, ignore_errors=True)
        self._event("destroy", name)

    def _event(self, action: str, name: str) -> None:
        """dockerd's volume events (create, destroy; attribute driver) in the engine's event log."""
        from pallet.engine.events import open_log

        open_log(os.path.dirname(self.root)).emit("volume", action, name, {"driver": "local"})

    def prune(self, filters: Mapping[str, Sequence[str]] | None = None) -> tuple[builtins.list[str], int]:
        """Remove unused volumes, anonymous ones only unless `all=true`; filters label, label!.
        Returns (removed names, bytes reclaimed)."""
        flt = {k: [str(v) for v in vs] for k, vs in (filters or {}).items()}
        for k in flt:
            if k not in ("label", "label!", "all"):
                raise InvalidArgument(f"invalid filter '{k}'")
        everything = any(_bool_filter("all", v) for v in flt.get("all") or [])
        deleted, space = [], 0
        with self.lock:
            for v in self._all():
                labels = v["Labels"]
                if not everything and ANONYMOUS_LABEL not in labels:
                    continue
                if not all(_label_ok(labels, s) for s in flt.get("label") or []):
                    continue
                if any(_label_ok(labels, s) for s in flt.get("label!") or []):
                    continue
                if self.users(v["Name"]):
                    continue
                size = _size(v["Mountpoint"])
                self._delete(v["Name"])
                deleted.append(v["Name"])
                space += size
        return deleted, space
