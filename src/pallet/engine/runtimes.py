"""OCI runtimes the engine can run containers through, and how it calls them.

Every runtime is driven by runc's command line (`--root R --log L --log-format json COMMAND`),
each with its own state root under <exec-root>/runtime/<name> so that runc and pallet-runtime
never read each other's state. The engine never does namespace work itself (STYLE.md §8).

crun 1.8.1 (Debian 12) refuses a cgroup v1 hybrid host whose /sys/fs/cgroup/unified is mounted:
`check_runtime` says so up front (NotSupported at create) instead of letting every start fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from pallet.errors import Conflict, InvalidArgument, NotFound, NotSupported, PalletError

DEFAULT_RUNTIME = "pallet-runtime"


def default_runtimes() -> dict[str, list[str]]:
    return {
        "pallet-runtime": pallet_runtime_argv(),
        "runc": ["runc"],
        "crun": ["crun"],
    }


def pallet_runtime_argv() -> list[str]:
    """The `pallet-runtime` beside this interpreter (the venv's; its launcher skips `site`,
    pallet.runtime.launcher), else the module through this interpreter."""
    exe = os.path.join(os.path.dirname(sys.executable), "pallet-runtime")
    if os.access(exe, os.X_OK):
        return [exe]
    return [sys.executable, "-m", "pallet.runtime.cli"]


def signal_number(value: str | int) -> int:
    """SIGTERM, TERM, 15 -> 15 (Docker's signal.ParseSignal)."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        v = str(value).strip().upper()
        if v.isdigit():
            n = int(v)
        else:
            name = v if v.startswith("SIG") else "SIG" + v
            try:
                n = int(signal.Signals[name])
            except KeyError:
                raise InvalidArgument(f"invalid signal: {value}") from None
    if not 0 < n < 65:
        raise InvalidArgument(f"invalid signal: {value}")
    return n


def hybrid_cgroups(root: str = "/sys/fs/cgroup") -> bool:
    return os.path.isdir(os.path.join(root, "unified")) and os.path.ismount(os.path.join(root, "unified"))


def check_runtime(name: str, argv: Sequence[str]) -> None:
    """NotSupported when `name` cannot run containers on this host (found out without running it)."""
    if shutil.which(argv[0]) is None and not os.path.exists(argv[0]):
        raise NotSupported(f"runtime {name!r}: {argv[0]} is not installed")
    if os.path.basename(argv[0]) == "crun" and hybrid_cgroups():
        raise NotSupported("runtime 'crun': crun refuses cgroup v1 hybrid hosts such as this one "
                           "(/sys/fs/cgroup/unified is mounted)")


class RuntimeError_(PalletError):
    """The runtime exited non-zero; the message is its own error."""


class Runtime:
    """One runtime's CLI with its own --root. Methods raise Conflict/NotFound from what the runtime
    says where the difference matters, else PalletError with the runtime's message."""

    def __init__(self, name: str, argv: Sequence[str], root: str) -> None:
        self.name, self.argv, self.root = name, list(argv), root

    def base(self, log: str | None = None) -> list[str]:
        out = [*self.argv, "--root", self.root]
        if log:
            out += ["--log", log, "--log-format", "json"]
        return out

    def run(self, *args: str, input: bytes | None = None, timeout: float = 60,
            check: bool = True) -> subprocess.CompletedProcess[bytes]:
        proc = subprocess.run([*self.base(), *args], input=input, capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise self._error(args[0], proc.returncode, proc.stderr)
        return proc

    def _error(self, command: str, returncode: int, stderr: bytes) -> PalletError:
        """The error of a failed command, from the last line of its stderr."""
        msg = stderr.decode("utf-8", "replace").strip().splitlines()
        text = msg[-1] if msg else f"exit status {returncode}"
        low = text.lower()
        if "does not exist" in low or "not found" in low or "no such" in low:
            return NotFound(f"{self.name} {command}: {text}")
        if "not running" in low or "stopped" in low or "paused" in low or "not paused" in low:
            return Conflict(f"{self.name} {command}: {text}")
        return RuntimeError_(f"{self.name} {command}: {text}")

    def has_state(self, cid: str) -> bool:
        """Whether the runtime keeps state for `cid` (<root>/<id> for runc, crun and
        pallet-runtime alike): without it, `state` and `delete` have nothing to do, and a runtime
        process (~30 ms for pallet-runtime) is spared."""
        return os.path.isdir(os.path.join(self.root, cid))

    def state(self, cid: str) -> dict[str, Any] | None:
        if not self.has_state(cid):
            return None
        proc = self.run("state", cid, check=False)
        if proc.returncode != 0:
            return None
        try:
            out: dict[str, Any] = json.loads(proc.stdout)
            return out
        except ValueError:
            return None

    def kill(self, cid: str, sig: int, all_processes: bool = False) -> None:
        self.run("kill", *(["--all"] if all_processes else []), cid, str(sig))

    def delete(self, cid: str) -> None:
        """`delete --force`, its outcome not checked; nothing when the runtime holds no state
        (an exit's cleanup deleted it already, unless that failed)."""
        proc = self.delete_started(cid)
        if proc is not None:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()  # as subprocess.run's timeout does
                proc.wait()
                raise

    def start_after_stdin(self, cid: str) -> subprocess.Popen[bytes] | None:
        """pallet-runtime only (its `start --after-stdin`): the start process launched ahead,
        while conmon runs `create`, so that its interpreter's start-up (~9 ms, most of a start)
        is off the critical path; `start_now` lets it go, `start_given_up` ends it. None for
        other runtimes: their start is run when needed (`run("start", ...)`)."""
        ours = os.path.basename(self.argv[0]) == "pallet-runtime"
        if not ours and self.argv[-2:] != ["-m", "pallet.runtime.cli"]:
            return None
        return subprocess.Popen([*self.base(), "start", "--after-stdin", cid], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start_now(self, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
        """Tell a `start_after_stdin` process to start; raises as run("start") does."""
        try:
            _out, err = proc.communicate(b"go\n", timeout=timeout)  # a gone process: its status says why
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError_(f"{self.name} start: timed out after {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise self._error("start", proc.returncode, err)

    @staticmethod
    def start_given_up(proc: subprocess.Popen[bytes] | None) -> None:
        """End a `start_after_stdin` process that will not be needed (EOF: it starts nothing)."""
        if proc is None:
            return
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            proc.communicate(timeout=10)

    def delete_started(self, cid: str) -> subprocess.Popen[bytes] | None:
        """`delete --force` started, not waited for (its outcome is not checked either, as in
        delete()): the caller does other cleanup meanwhile and waits for it before it uses the
        runtime again; None when there is nothing to delete."""
        if not self.has_state(cid):
            return None
        return subprocess.Popen([*self.base(), "delete", "--force", cid], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def pause(self, cid: str) -> None:
        self.run("pause", cid)

    def resume(self, cid: str) -> None:
        self.run("resume", cid)

    def update(self, cid: str, resources: Mapping[str, Any]) -> None:
        self.run("update", "-r", "-", cid, input=json.dumps(resources).encode())

    def stats(self, cid: str) -> dict[str, Any]:
        proc = self.run("events", "--stats", cid)
        out: dict[str, Any] = json.loads(proc.stdout)
        return out

    def ps(self, cid: str, ps_args: Sequence[str]) -> tuple[list[str], list[list[str]]]:
        """(titles, rows) of `ps` restricted to the container's processes."""
        args = list(ps_args) or ["-ef"]
        proc = self.run("ps", cid, "--", *args)
        lines = proc.stdout.decode("utf-8", "replace").splitlines()
        if not lines:
            return [], []
        titles = lines[0].split()
        rows = [line.split(None, len(titles) - 1) for line in lines[1:] if line.strip()]
        return titles, rows
