"""Reading and writing cgroupfs interface files, with kernel errors mapped to Pallet's kinds.

cgroupfs files are small text files that take one write per value; the kernel reports a bad
value as EINVAL, an unsupported one as EOPNOTSUPP and a busy cgroup as EBUSY on the write(2)
itself, so every write is a single os.write on a fresh fd.

Paths are strings handled with os.path (a pathlib.Path works too, through os.fspath): this
package is on the path of every pallet-runtime create and delete, and pathlib costs ~4 ms of
imports there (re, fnmatch, urllib.parse).
"""

from __future__ import annotations

import errno
import os
import time

from pallet.errors import Conflict, InvalidArgument, NotFound, NotSupported, PermissionDenied, Unavailable

TYPE_CHECKING = False  # mypy treats this name as typing's
if TYPE_CHECKING:
    from typing import TypeAlias

    StrPath: TypeAlias = "str | os.PathLike[str]"


def write(path: StrPath, value: str | int) -> None:
    """Write value to one interface file; the error names the file and the value."""
    data = str(value).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        if exc.errno == errno.EACCES and not os.path.exists(path):
            # cgroupfs refuses O_CREAT with EACCES: the interface file is simply not there,
            # which means the controller is not enabled for this cgroup or the kernel lacks it.
            raise NotSupported(f"write {value!r} to {path}: no such cgroup interface file") from exc
        raise error_for(exc, f"write {value!r} to {path}") from exc


def read_text(path: StrPath) -> str:
    """The whole file (pathlib's read_text, without pathlib); OSError as the kernel gave it."""
    with open(path) as f:
        return f.read()


def read(path: StrPath) -> str:
    try:
        return read_text(path)
    except OSError as exc:
        raise error_for(exc, f"read {path}") from exc


def read_int(path: StrPath, default: int = 0) -> int:
    """An integer file; "max" and a missing file read as `default`."""
    try:
        text = read_text(path).strip()
    except FileNotFoundError:
        return default
    except OSError as exc:
        raise error_for(exc, f"read {path}") from exc
    if not text or text == "max":
        return default
    return int(text.split()[0])


def read_keyed(path: StrPath) -> dict[str, int]:
    """A flat keyed file ("key value" per line: memory.stat, cpu.stat, memory.events)."""
    out: dict[str, int] = {}
    try:
        lines = read_text(path).splitlines()
    except FileNotFoundError:
        return out
    except OSError as exc:
        raise error_for(exc, f"read {path}") from exc
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def read_ints(path: StrPath) -> list[int]:
    """A space separated list of integers (cpuacct.usage_percpu)."""
    try:
        return [int(v) for v in read_text(path).split()]
    except FileNotFoundError:
        return []


def read_pids(directory: StrPath) -> list[int]:
    """cgroup.procs of directory and every directory below it."""
    pids: list[int] = []
    if not os.path.isdir(directory):
        return pids
    for dirpath, _dirs, _files in os.walk(directory):
        try:
            text = read_text(os.path.join(dirpath, "cgroup.procs"))
        except FileNotFoundError:
            continue
        pids.extend(int(p) for p in text.split())
    return sorted(set(pids))


def make_dirs(directory: StrPath, on_create=None) -> None:
    """mkdir -p, calling on_create(dir) for each directory made (a str), from the top down."""
    missing: list[str] = []
    d = os.path.normpath(os.fspath(directory))
    while not os.path.exists(d):
        missing.append(d)
        d = os.path.dirname(d)
    for d in reversed(missing):
        try:
            os.mkdir(d)
        except FileExistsError:
            continue
        except OSError as exc:
            raise error_for(exc, f"mkdir {d}") from exc
        if on_create is not None:
            on_create(d)


def remove_tree(directory: StrPath, timeout: float = 2.0) -> None:
    """rmdir directory and its sub-cgroups, children first; idempotent.

    rmdir of a cgroup fails with EBUSY while it still has tasks, and for a short time after the
    last one exited (its css is released asynchronously), so EBUSY is retried until timeout.
    """
    try:
        os.rmdir(directory)  # the usual case, a leaf cgroup that its tasks left: one syscall
        return
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY, errno.EEXIST):
            raise error_for(exc, f"rmdir {directory}") from exc
    subdirs = sorted((os.path.normpath(dp) for dp, _d, _f in os.walk(directory)),
                     key=lambda p: p.count("/"), reverse=True)
    deadline = time.monotonic() + timeout
    delay = 0.01
    for d in subdirs:
        while True:
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno == errno.EBUSY and time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.2)
                    continue
                if exc.errno == errno.EBUSY:
                    raise Conflict(f"cgroup {d} still has processes") from exc
                raise error_for(exc, f"rmdir {d}") from exc


def error_for(exc: OSError, what: str) -> Exception:
    """The Pallet error kind for a failed cgroupfs operation, naming it and keeping errno's text."""
    msg = f"{what}: {exc.strerror or exc}"
    if exc.errno == errno.ENOENT:
        return NotFound(msg)
    if exc.errno in (errno.EINVAL, errno.ERANGE):
        return InvalidArgument(msg)
    if exc.errno in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENODEV):
        return NotSupported(msg)
    if exc.errno in (errno.EPERM, errno.EACCES):
        return PermissionDenied(msg)
    if exc.errno == errno.EBUSY:
        return Conflict(msg)
    return Unavailable(msg)
