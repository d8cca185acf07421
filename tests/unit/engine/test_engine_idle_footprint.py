"""What an idle container costs palletd: a slotted record, a condition only once someone waits,
and a conmon started without locale variables (issue 4, docs/design/engine.md)."""

from __future__ import annotations

import threading
import time

from pallet.engine import conmon
from pallet.engine.containers import Container
from pallet.engine.state import Status


def _container() -> Container:
    return Container(id="c" * 64, name="x", created="2024-01-01T00:00:00Z", image="sha256:" + "1" * 64,
                     image_ref="busybox", config={}, host_config={}, runtime="pallet-runtime")


def test_a_container_nobody_waits_on_has_no_condition_and_no_dict():
    c = _container()
    assert not hasattr(c, "__dict__")  # slots: no per-instance dict
    with c.lock:
        c.notify_all()  # no waiter: nothing is made
    assert c._cond is None
    rec = Container.from_record(c.to_record())
    assert rec._cond is None and rec.id == c.id


def test_the_condition_made_on_first_wait_wakes_the_waiter():
    c = _container()
    c.state.set(Status.RUNNING)
    woke: list[Status] = []

    def waiter() -> None:
        with c.lock:
            assert c.cond.wait_for(lambda: not c.state.status.is_active, 10)
            woke.append(c.state.status)

    t = threading.Thread(target=waiter)
    t.start()
    deadline = time.monotonic() + 10
    while c._cond is None and time.monotonic() < deadline:  # the waiter made it, under the lock
        time.sleep(0.01)
    with c.lock:
        cond = c.cond
        c.state.set(Status.EXITED)
        c.notify_all()
    t.join(10)
    assert woke == [Status.EXITED]
    assert c.cond is cond  # one condition for the container's life


def test_conmon_gets_no_locale_variables(monkeypatch):
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("LC_CTYPE", "C.UTF-8")
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.setenv("SECRET_TOKEN", "x")
    env = conmon._env()
    assert env == {"PATH": "/usr/bin:/bin", "TZ": "UTC", **({"PYTHONPATH": env["PYTHONPATH"]}
                                                          if "PYTHONPATH" in env else {})}


def test_conmon_gets_a_default_path(monkeypatch):
    monkeypatch.delenv("PATH", raising=False)
    assert conmon._env()["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
