"""Healthchecks: a probe run in the container every interval, and the status Docker derives.

The check is the image's HEALTHCHECK (image config `Healthcheck`) overridden field by field by
the container's Config.Healthcheck, as dockerd merges them (daemon/commit.go merge): Test
["NONE"] disables it; ["CMD", arg...] runs the arguments; ["CMD-SHELL", "cmd"] runs
`/bin/sh -c cmd`; an empty Test inherits the image's. Durations are nanoseconds; zero means
dockerd's defaults (daemon/health.go): Interval 30 s, Timeout 30 s, StartPeriod 0,
StartInterval 5 s, Retries 3.

Each running container with a check has one thread (`_Prober`): it waits one interval (the
StartInterval while the container is starting and inside its StartPeriod), runs the probe
through the engine's own exec path (so exec_create/exec_start/exec_die events appear, as with
dockerd), and records the result (daemon/health.go handleProbeResult): exit 0 -> healthy and
the failing streak is reset; anything else adds to the streak (not while still starting inside
the start period) and `Retries` failures in a row -> unhealthy. A status change emits
`health_status: <status>`. A probe that outlives Timeout is killed (SIGKILL to its process)
and recorded as exit -1 "Health check exceeded timeout (30s)": it stalls only its own thread.
The log keeps the last 5 results (maxLogEntries), output cut at 4096 bytes (maxOutputLen).

On disk, version 1: `<data-root>/containers/<id>/health.json` =
{"version": 1, "Status": "starting|healthy|unhealthy", "FailingStreak": n,
 "Log": [{"Start", "End", "ExitCode", "Output"}]} (Docker's Health object), rewritten atomically
after each probe; it survives a daemon restart and the prober resumes for a running container.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from typing import Any

from pallet.errors import InvalidArgument, PalletError

log = logging.getLogger("pallet.engine.health")

RECORD_VERSION = 1
SECOND = 10**9
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_PERIOD = 0
DEFAULT_START_INTERVAL = 5 * SECOND
DEFAULT_RETRIES = 3
MIN_DURATION = 1_000_000  # 1 ms: dockerd refuses shorter intervals and timeouts
MAX_LOG_ENTRIES = 5
MAX_OUTPUT = 4096

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"


def validate(hc: Any) -> None:
    """Config.Healthcheck as dockerd's validateHealthCheck: InvalidArgument for a bad field."""
    if hc is None:
        return
    if not isinstance(hc, dict):
        raise InvalidArgument("Config.Healthcheck: expected an object")
    test = hc.get("Test")
    if test is not None and (not isinstance(test, list) or not all(isinstance(t, str) for t in test)):
        raise InvalidArgument("Config.Healthcheck.Test: expected a list of strings")
    if test and test[0] not in ("NONE", "CMD", "CMD-SHELL"):
        raise InvalidArgument(f"Config.Healthcheck.Test: unknown type {test[0]!r} (NONE, CMD, CMD-SHELL)")
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        v = hc.get(key) or 0
        if not isinstance(v, int) or v < 0:
            raise InvalidArgument(f"Config.Healthcheck.{key}: must be a non-negative duration in ns")
        if 0 < v < MIN_DURATION:
            raise InvalidArgument(f"Config.Healthcheck.{key}: must be at least 1ms")
    retries = hc.get("Retries") or 0
    if not isinstance(retries, int) or retries < 0:
        raise InvalidArgument("Config.Healthcheck.Retries: must not be negative")


def merged(image_hc: Mapping[str, Any] | None,
           container_hc: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The effective check (None when there is none or Test is NONE)."""
    out = dict(image_hc or {})
    for k, v in (container_hc or {}).items():
        if k == "Test":
            if v:
                out[k] = list(v)
        elif v:
            out[k] = v
    test = out.get("Test") or []
    if not test or test[0] == "NONE":
        return None
    return out


def probe_argv(test: list[str]) -> list[str]:
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    if test[0] == "CMD":
        return list(test[1:])
    raise InvalidArgument(f"unknown healthcheck type {test[0]!r}")


def _dur(hc: Mapping[str, Any], key: str, default: int) -> float:
    return float(hc.get(key) or default) / SECOND


class HealthState:
    """Docker's Health object of one container."""

    def __init__(self, status: str = STARTING, failing_streak: int = 0,
                 entries: list[dict[str, Any]] | None = None) -> None:
        self.status, self.failing_streak, self.log = status, failing_streak, list(entries or [])

    def to_docker(self) -> dict[str, Any]:
        return {"Status": self.status, "FailingStreak": self.failing_streak, "Log": list(self.log)}

    def record(self, result: dict[str, Any], *, retries: int, in_start_period: bool) -> str | None:
        """handleProbeResult; returns the new status when it changed."""
        old = self.status
        self.log = [*self.log, result][-MAX_LOG_ENTRIES:]
        if result["ExitCode"] == 0:
            self.failing_streak = 0
            self.status = HEALTHY
        elif not (self.status == STARTING and in_start_period):
            self.failing_streak += 1
            if self.failing_streak >= retries:
                self.status = UNHEALTHY
        return self.status if self.status != old else None


class HealthChecks:
    """The probers of one Engine; `*_locked` methods expect the container's lock held."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._guard = threading.Lock()
        self._states: dict[str, HealthState] = {}
        self._probers: dict[str, _Prober] = {}

    def config(self, c: Any) -> dict[str, Any] | None:
        image_hc = None
        with contextlib.suppress(PalletError, AttributeError):
            image_hc = (self.engine.images.get(c.image).config.config or {}).get("Healthcheck")
        return merged(image_hc, c.config.get("Healthcheck"))

    def _path(self, cid: str) -> str:
        return os.path.join(self.engine.containers_dir, cid, "health.json")

    def state(self, cid: str) -> HealthState | None:
        with self._guard:
            st = self._states.get(cid)
        if st is not None:
            return st
        try:
            with open(self._path(cid)) as f:
                d = json.load(f)
        except (OSError, ValueError):
            return None
        if d.get("version") != RECORD_VERSION:
            return None
        st = HealthState(d.get("Status", STARTING), int(d.get("FailingStreak", 0)), d.get("Log") or [])
        with self._guard:
            return self._states.setdefault(cid, st)

    def _save(self, cid: str, st: HealthState) -> None:
        path = self._path(cid)
        tmp = f"{path}.tmp"
        with contextlib.suppress(OSError):
            with open(tmp, "w") as f:
                json.dump({"version": RECORD_VERSION, **st.to_docker()}, f)
            os.replace(tmp, path)

    def start_locked(self, c: Any) -> None:
        """The container runs (started, or found running at engine start): (re)start its prober
        with the status `starting` and the streak reset, the log kept (dockerd's initHealthMonitor)."""
        self.stop_locked(c)
        hc = self.config(c)
        if hc is None:
            return
        st = self.state(c.id) or HealthState()
        st.status, st.failing_streak = STARTING, 0
        with self._guard:
            self._states[c.id] = st
        self._save(c.id, st)
        p = _Prober(self, c, hc)
        with self._guard:
            self._probers[c.id] = p
        p.start()

    def resume_locked(self, c: Any) -> None:
        """Engine start with the container still running: keep its status, restart the prober."""
        hc = self.config(c)
        if hc is None:
            return
        st = self.state(c.id) or HealthState()
        with self._guard:
            self._states[c.id] = st
        p = _Prober(self, c, hc)
        with self._guard:
            self._probers[c.id] = p
        p.start()

    def stop_locked(self, c: Any) -> None:
        with self._guard:
            p = self._probers.pop(c.id, None)
        if p is not None:
            p.stop.set()

    def forget(self, cid: str) -> None:
        with self._guard:
            p = self._probers.pop(cid, None)
            self._states.pop(cid, None)
        if p is not None:
            p.stop.set()

    def inspect_state(self, c: Any, state: dict[str, Any]) -> dict[str, Any]:
        """ContainerState with `Health` once a check has run its monitor (dockerd: from the first
        start of a container with a check; omitted otherwise). The state exists only then, so
        inspect does not look up the image."""
        st = self.state(c.id)
        if st is not None:
            state["Health"] = st.to_docker()
        return state

    def status_text(self, c: Any, text: str) -> str:
        """ContainerSummary.Status with the health, as dockerd's State.String: "Up 3 minutes
        (healthy)", "Up 2 seconds (health: starting)"."""
        if not text.startswith("Up ") or text.endswith("(Paused)"):
            return text
        st = self._states.get(c.id)
        if st is None:
            return text
        return f"{text} ({'health: starting' if st.status == STARTING else st.status})"

    @staticmethod
    def filter_values(values: list[str] | None) -> set[str]:
        """`ps --filter health=...` values, checked as dockerd (starting, healthy, unhealthy, none)."""
        allowed = {STARTING, HEALTHY, UNHEALTHY, "none"}
        for v in values or []:
            if v not in allowed:
                raise InvalidArgument(f"Unrecognised filter value for health: {v}")
        return set(values or [])

    def status_of(self, c: Any) -> str:
        """The container's health status for filtering; "none" without a check."""
        st = self.state(c.id)
        return st.status if st is not None else "none"

    def close(self) -> None:
        with self._guard:
            probers, self._probers = list(self._probers.values()), {}
        for p in probers:
            p.stop.set()

    def record(self, c: Any, result: dict[str, Any], hc: Mapping[str, Any], started: float) -> None:
        from pallet.engine.state import Status

        with c.lock:
            if c.removed or c.state.status is not Status.RUNNING:
                return
            st = self.state(c.id) or HealthState()
            in_start = time.time() - started < _dur(hc, "StartPeriod", DEFAULT_START_PERIOD)
            changed = st.record(result, retries=int(hc.get("Retries") or DEFAULT_RETRIES),
                                in_start_period=in_start)
            self._save(c.id, st)
            if changed is not None:
                self.engine._event(c, f"health_status: {changed}")


class _Prober(threading.Thread):
    def __init__(self, checks: HealthChecks, c: Any, hc: Mapping[str, Any]) -> None:
        super().__init__(name=f"pallet-health-{c.id[:12]}", daemon=True)
        self.checks, self.c, self.hc = checks, c, dict(hc)
        self.stop = threading.Event()
        from pallet.engine.logs import parse_time

        try:
            self.started = parse_time(c.state.started_at) / 1e9
        except (ValueError, IndexError):
            self.started = time.time()

    def interval(self) -> float:
        interval = _dur(self.hc, "Interval", DEFAULT_INTERVAL)
        if time.time() - self.started >= _dur(self.hc, "StartPeriod", DEFAULT_START_PERIOD):
            return interval
        st = self.checks.state(self.c.id)
        if st is not None and st.status == STARTING:
            return _dur(self.hc, "StartInterval", DEFAULT_START_INTERVAL)
        return interval

    def run(self) -> None:
        while not self.stop.wait(self.interval()):
            try:
                result = self.probe()
            except PalletError as exc:  # the container stopped meanwhile, or exec refused
                if self.stop.is_set():
                    return
                log.debug("health probe of %s: %s", self.c.id[:12], exc)
                continue
            if self.stop.is_set():
                return
            self.checks.record(self.c, result, self.hc, self.started)

    def probe(self) -> dict[str, Any]:
        from pallet.engine.logs import rfc3339nano

        engine = self.checks.engine
        timeout = _dur(self.hc, "Timeout", DEFAULT_TIMEOUT)
        argv = probe_argv(list(self.hc["Test"]))
        start = rfc3339nano(time.time_ns())
        eid = engine.exec_create(self.c.id, {"Cmd": argv, "AttachStdout": True, "AttachStderr": True})
        try:
            session = engine.exec_start(eid)
            assert session is not None
            try:
                out, err = session.proc.communicate(timeout=timeout)
                code = session.wait()
                text = (out or b"") + (err or b"")
            except subprocess.TimeoutExpired:
                _kill_exec(engine, self.c.id, eid, session.proc)
                with contextlib.suppress(subprocess.TimeoutExpired, OSError, ValueError):
                    session.proc.communicate(timeout=5)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    session.wait(5)
                code = -1
                text = f"Health check exceeded timeout ({_go_duration(timeout)})".encode()
            finally:
                session.close()
        finally:
            engine.exec_remove(eid)
        return {"Start": start, "End": rfc3339nano(time.time_ns()), "ExitCode": code,
                "Output": text[:MAX_OUTPUT].decode("utf-8", "replace")}


def _kill_exec(engine: Any, cid: str, eid: str, proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the probe's process (its host pid is in the runtime's --pid-file), then the runtime
    process waiting for it."""
    pidfile = os.path.join(engine.exec_root, "containers", cid, f"exec-{eid[:12]}.pid")
    with contextlib.suppress(OSError, ValueError), open(pidfile) as f:
        pid = int(f.read().strip() or 0)
        if pid > 0:
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()


def _go_duration(seconds: float) -> str:
    """Go's time.Duration String for whole and fractional seconds: 30s, 1.5s, 2m0s, 500ms."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    m, s = divmod(seconds, 60)
    s_text = f"{s:g}s"
    if m >= 60:
        h, m = divmod(m, 60)
        return f"{int(h)}h{int(m)}m{s_text}"
    return f"{int(m)}m{s_text}" if m else s_text
