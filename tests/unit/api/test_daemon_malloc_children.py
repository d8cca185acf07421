"""palletd's own malloc tunable is not its children's (pallet/daemon/malloc.py forget_tuned)."""

from __future__ import annotations

import os
import subprocess
import sys

from pallet.daemon.malloc import TUNABLES, forget_tuned


def test_our_tunable_is_dropped_from_the_environment(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", TUNABLES)
    forget_tuned()
    assert "GLIBC_TUNABLES" not in os.environ


def test_a_users_tunable_stays(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=8")
    forget_tuned()
    assert os.environ["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=8"


def test_palletd_tuned_children_see_no_tunable_while_it_keeps_its_own():
    # The re-exec then forget, as palletd's main() does: the process runs tuned (its
    # /proc/PID/environ, what glibc read, has the tunable) and a child it starts has none.
    code = ("import os, subprocess, sys; from pallet.daemon.malloc import forget_tuned, reexec_tuned; "
            "reexec_tuned(); forget_tuned(); "
            "own = open(f'/proc/{os.getpid()}/environ', 'rb').read(); "
            "probe = 'import os; print(os.environ.get(\"GLIBC_TUNABLES\"))'; "
            "child = subprocess.run([sys.executable, '-c', probe], "
            "capture_output=True, text=True).stdout.strip(); "
            "print(b'GLIBC_TUNABLES=' in own, child)")
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert out == ["True", "None"]
