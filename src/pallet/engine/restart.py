"""Restart policies: no, on-failure[:max-retries], always, unless-stopped, with Docker's back-off.

The engine calls in at four points (moby daemon/monitor.go handleContainerExit,
restartmanager/restartmanager.go, daemon/kill.go, daemon/start.go, daemon/daemon.go restore):

- `on_exit_locked(c)` when a container's process exited: `should_restart` decides; a restart is
  counted in RestartCount, the container shows `restarting` ("Restarting (1) 2 seconds ago") and
  a timer starts it again after the back-off: 100 ms, doubled after each restart up to 1 min, and
  back to 100 ms when the container had run for 10 s or more (restartmanager.go's constants).
- `user_stop(c, cancel)` before a stop or kill asked through the API: the container is marked
  manually stopped (moby HasBeenManuallyStopped, persisted) and, when the signal is one that ends
  it (SIGKILL or its stop signal: moby ExitOnNext), the coming exit is not restarted, whatever the
  policy: a user's `stop`/`kill` wins over `always` until the container is started by hand or the
  daemon restarts. `user_start(c)` (API start/restart) clears both and the back-off, and resets
  RestartCount to 0 as dockerd's start does.
- `abort_locked(c)` when a restarting container is stopped, killed or force-removed: the pending
  restart is cancelled and the container is left exited.
- `resume_on_boot()` once the engine has loaded its records (daemon start, host reboot): every
  container that was started once, is not running, and whose policy says so with a fresh back-off
  is started: `always` (even if stopped by hand: Docker's documented "restarted when the daemon
  restarts"), `unless-stopped` unless stopped by hand, `on-failure` after a non-zero exit with
  retries left. Containers that kept running across the restart are watched again by the engine
  and get their policy on their next exit.

On disk, version 1: `<data-root>/containers/<id>/restart.json` = {"version": 1,
"manually_stopped": bool}, written atomically; absent means false.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any

from pallet.errors import InvalidArgument, PalletError

log = logging.getLogger("pallet.engine.restart")

RECORD_VERSION = 1
DEFAULT_TIMEOUT = 0.1     # restartmanager.go defaultTimeout (100 ms)
MAX_TIMEOUT = 60.0        # maxRestartTimeout (1 min)
BACKOFF_MULTIPLIER = 2
RESET_AFTER = 10.0        # a run of 10 s or more resets the back-off
POLICIES = ("no", "always", "unless-stopped", "on-failure")


@dataclass(frozen=True)
class Policy:
    name: str = "no"
    max_retries: int = 0

    @classmethod
    def of(cls, host_config: dict[str, Any]) -> Policy:
        rp = host_config.get("RestartPolicy") or {}
        return cls(rp.get("Name") or "no", int(rp.get("MaximumRetryCount") or 0))


def validate(policy: Any) -> dict[str, Any]:
    """A HostConfig.RestartPolicy checked as dockerd's validateRestartPolicy; returns it with
    Docker's defaults. InvalidArgument for an unknown name or a count on another policy."""
    if policy is None:
        return {"Name": "no", "MaximumRetryCount": 0}
    if not isinstance(policy, dict):
        raise InvalidArgument("HostConfig.RestartPolicy: expected an object")
    name = policy.get("Name") or "no"
    count = policy.get("MaximumRetryCount") or 0
    if name not in POLICIES:
        raise InvalidArgument(f"invalid restart policy: unknown policy '{name}'; use one of "
                              "'no', 'always', 'on-failure', or 'unless-stopped'")
    if not isinstance(count, int) or isinstance(count, bool):
        raise InvalidArgument("invalid restart policy: maximum retry count must be an integer")
    if count < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise InvalidArgument(f"invalid restart policy: maximum retry count can only be used with "
                              f"'on-failure', not '{name}'")
    return {"Name": name, "MaximumRetryCount": count}


def next_timeout(previous: float, ran_for: float) -> float:
    """The back-off before the next restart (restartmanager.go ShouldRestart)."""
    if ran_for >= RESET_AFTER:
        previous = 0.0
    if previous == 0.0:
        t = DEFAULT_TIMEOUT
    elif previous < MAX_TIMEOUT:
        t = previous * BACKOFF_MULTIPLIER
    else:
        t = previous
    return min(t, MAX_TIMEOUT)


def should_restart(policy: Policy, exit_code: int, manually_stopped: bool, restart_count: int) -> bool:
    """restartmanager.go's decision, back-off aside."""
    if policy.name == "always":
        return True
    if policy.name == "unless-stopped":
        return not manually_stopped
    retries_left = policy.max_retries == 0 or restart_count < policy.max_retries
    return policy.name == "on-failure" and retries_left and exit_code != 0


@dataclass
class _Backoff:
    timeout: float = 0.0
    canceled: bool = False
    token: int = 0
    timer: threading.Timer | None = None


class RestartManager:
    """The restart decisions of one Engine (see the module docstring). Methods named `*_locked`
    expect the container's lock held."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._guard = threading.Lock()
        self._state: dict[str, _Backoff] = {}
        self._closed = False

    def _b(self, cid: str) -> _Backoff:
        with self._guard:
            return self._state.setdefault(cid, _Backoff())

    # --- the manual-stop flag, persisted ------------------------------------------------------------
    def _path(self, cid: str) -> str:
        return os.path.join(self.engine.containers_dir, cid, "restart.json")

    def manually_stopped(self, cid: str) -> bool:
        try:
            with open(self._path(cid)) as f:
                d = json.load(f)
        except (OSError, ValueError):
            return False
        return d.get("version") == RECORD_VERSION and bool(d.get("manually_stopped"))

    def _set_manual(self, cid: str, value: bool) -> None:
        if self.manually_stopped(cid) == value:
            return
        path = self._path(cid)
        if not os.path.isdir(os.path.dirname(path)):
            return
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump({"version": RECORD_VERSION, "manually_stopped": value}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    # --- hooks --------------------------------------------------------------------------------------
    def user_stop(self, c: Any, cancel: bool = True) -> None:
        self._set_manual(c.id, True)
        if cancel:
            self._b(c.id).canceled = True

    def user_kill_locked(self, c: Any, sig: int) -> bool:
        """A kill asked through the API: marks the container stopped by hand and, for SIGKILL or
        its stop signal, cancels the restart of the coming exit (moby killWithSignal). True when
        the container was only waiting to be restarted (nothing to signal: it is exited now)."""
        from pallet.engine.runtimes import signal_number

        stop_sig = signal_number(c.config.get("StopSignal") or "SIGTERM")
        self.user_stop(c, cancel=sig in (9, stop_sig))
        return self.abort_locked(c)

    def user_start(self, c: Any, reset_count: bool = True) -> None:
        self._set_manual(c.id, False)
        b = self._b(c.id)
        self._cancel_timer(b)
        b.timeout, b.canceled = 0.0, False
        if reset_count:
            c.restart_count = 0

    def abort_locked(self, c: Any) -> bool:
        """Cancel a pending restart; True when the container was restarting (it is exited now)."""
        from pallet.engine.state import Status

        b = self._b(c.id)
        self._cancel_timer(b)
        if c.state.status is not Status.RESTARTING:
            return False
        c.state.set(Status.EXITED)
        self.engine._save(c)
        c.notify_all()
        return True

    def forget(self, cid: str) -> None:
        with self._guard:
            b = self._state.pop(cid, None)
        if b is not None:
            self._cancel_timer(b)

    def on_exit_locked(self, c: Any) -> bool:
        """The container exited (its record says so already): schedule a restart if its policy
        wants one. True when one is scheduled."""
        from pallet.engine.state import Status

        policy = Policy.of(c.host_config)
        if policy.name == "no" or self._closed:
            return False
        b = self._b(c.id)
        if b.canceled:
            return False
        ran = _seconds_between(c.state.started_at, c.state.finished_at)
        if not should_restart(policy, c.state.exit_code, self.manually_stopped(c.id), c.restart_count):
            return False
        b.timeout = next_timeout(b.timeout, ran)
        c.restart_count += 1
        c.state.set(Status.RESTARTING)
        self.engine._save(c)
        self._schedule(c.id, b, b.timeout)
        return True

    def _schedule(self, cid: str, b: _Backoff, delay: float) -> None:
        self._cancel_timer(b)
        b.token += 1
        t = threading.Timer(delay, self._fire, (cid, b.token))
        t.daemon = True
        t.name = f"pallet-restart-{cid[:12]}"
        b.timer = t
        t.start()

    @staticmethod
    def _cancel_timer(b: _Backoff) -> None:
        if b.timer is not None:
            b.timer.cancel()
            b.timer = None
        b.token += 1

    def _fire(self, cid: str, token: int) -> None:
        from pallet.engine.state import Status

        if self._closed:
            return
        try:
            c = self.engine.get(cid)
        except PalletError:
            return
        with c.lock:
            b = self._b(cid)
            if c.removed or b.token != token or c.state.status is not Status.RESTARTING:
                return
            b.timer = None
            c.state.set(Status.EXITED)
            try:
                self.engine._start_locked(c)
            except Exception as exc:  # as dockerd: the container stays exited, the error is kept
                log.error("restarting container %s: %s", cid[:12], exc)
                c.state.error = str(exc)
                self.engine._save(c)
            c.notify_all()

    def resume_on_boot(self) -> list[str]:
        """Start what the policies bring back at engine start (see the module docstring);
        returns the ids started."""
        from pallet.engine.state import ZERO_TIME, Status

        started = []
        for c in list(self.engine._containers.values()):
            policy = Policy.of(c.host_config)
            if policy.name == "no":
                continue
            with c.lock:
                if c.removed or c.state.status is not Status.EXITED or c.state.started_at == ZERO_TIME:
                    continue
                if not should_restart(policy, c.state.exit_code, self.manually_stopped(c.id) and
                                      policy.name != "always", 0 if policy.name != "on-failure"
                                      else c.restart_count):
                    continue
                try:
                    self.engine._start_locked(c)
                except Exception as exc:
                    log.error("starting container %s at daemon start: %s", c.id[:12], exc)
                    with contextlib.suppress(OSError):
                        c.state.error = str(exc)
                        self.engine._save(c)
                    continue
                started.append(c.id)
        return started

    def close(self) -> None:
        self._closed = True
        with self._guard:
            items = list(self._state.values())
        for b in items:
            self._cancel_timer(b)


def _seconds_between(start: str, end: str) -> float:
    from pallet.engine.logs import parse_time

    try:
        return max(0.0, (parse_time(end) - parse_time(start)) / 1e9)
    except (ValueError, IndexError):
        return 0.0
