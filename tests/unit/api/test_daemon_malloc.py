"""palletd's malloc tunable (pallet/daemon/malloc.py): the environment it sets, and the re-exec."""

from __future__ import annotations

import os
import subprocess
import sys

from pallet.daemon.malloc import TUNABLES, tuned_environ


def test_tuned_environ_adds_the_tunable_and_keeps_the_rest():
    env = tuned_environ({"PATH": "/bin", "NOTIFY_SOCKET": "/run/systemd/notify"})
    assert env == {"PATH": "/bin", "NOTIFY_SOCKET": "/run/systemd/notify", "GLIBC_TUNABLES": TUNABLES}
    assert TUNABLES == "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0"


def test_a_set_glibc_tunables_is_left_alone():
    # Set by the first pass (which ends the re-exec) or by the user (whose choice wins).
    assert tuned_environ({"GLIBC_TUNABLES": TUNABLES}) is None
    assert tuned_environ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=8"}) is None


def test_reexec_keeps_the_pid_and_sets_the_tunable_once():
    code = ("import os; from pallet.daemon.malloc import reexec_tuned; "
            "print(os.getpid(), os.environ.get('GLIBC_TUNABLES'), flush=True); reexec_tuned(); "
            "print('returned', flush=True)")
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout.split("\n")
    first, second, last = out[0].split(), out[1].split(), out[2]
    assert first[0] == second[0]  # execve: the same process
    assert (first[1], second[1], last) == ("None", TUNABLES, "returned")
    assert len([line for line in out if line]) == 3  # one re-exec, not a loop
