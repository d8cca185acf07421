"""palletd runs on two malloc arenas, no tcache (pallet/daemon/malloc.py): re-executed once, same pid."""

from __future__ import annotations

from palletd_support import palletd

from pallet.api.client import Client
from pallet.daemon.malloc import TUNABLES


def _environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        raw = f.read()
    # glibc 2.36 ends each tunable's value in the process's original environment block with a
    # NUL where the ':' was (elf/dl-tunables.c parse_tunables, `value[len] = '\0'`; the process's
    # own environ gets an intact copy): /proc/PID/environ shows "a=1\0b=2" for "a=1:b=2".
    raw = raw.replace(b"\0glibc.", b":glibc.")
    items = [kv.decode().partition("=") for kv in raw.split(b"\0") if kv]
    return {k: v for k, _, v in items}


def test_palletd_reexecs_with_the_tunable_and_keeps_its_pid(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    with palletd() as d:
        # The pid we spawned is the daemon that serves: execve kept it.
        assert _environ(d.proc.pid).get("GLIBC_TUNABLES") == TUNABLES
        assert (d.root / "exec" / "palletd.pid").read_text().strip() == str(d.proc.pid)
        assert Client(d.host).ping().get("Api-Version") == "1.50"  # and it serves


def test_a_users_glibc_tunables_wins(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")
    with palletd() as d:
        assert _environ(d.proc.pid)["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=4"
