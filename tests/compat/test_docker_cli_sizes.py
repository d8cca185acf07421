"""pallet.units.ram_in_bytes against the real docker CLI: `docker create -m VALUE` parses the
flag before it connects, so with no daemon a value the CLI takes fails on the connection and
one it refuses fails on the flag. Every value is asked of the CLI, none assumed."""

from __future__ import annotations

import os
import random
import shutil
import subprocess

import pytest

from pallet.units import ram_in_bytes

FIXED = ["32", "32b", "32k", "32KiB", "32 mb", "1.5g", "1gib", ".5m", "5.", "1e3", "+5", "1_0", "1Gi",
         "32bm", "7ib", "1..2", "0x10", "-1", "hello", "5 b", "32  m", "1mk", "2PB", "1kibb", "9t"]


def _random_values(n: int) -> list[str]:
    rng = random.Random(20261128)
    pieces = ["1", "23", ".", "5", " ", "k", "m", "g", "t", "p", "i", "b", "B", "K", "x", "e", "_", "+"]
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) for _ in range(n)]


def docker_takes(value: str, sock: str) -> bool:
    r = subprocess.run(["docker", "create", "-m", value, "x"], capture_output=True, text=True, timeout=30,
                       env={**{k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")},
                            "DOCKER_HOST": f"unix://{sock}"})
    out = r.stdout + r.stderr
    if "for \"-m, --memory\" flag" in out:
        return False
    assert "Cannot connect" in out or "no such file" in out.lower(), out
    return True


def test_sizes_read_as_the_docker_cli_reads_them(tmp_path):
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not on PATH")
    sock = str(tmp_path / "none.sock")  # nothing listens: the CLI must stop at the flag or the socket
    for value in [*FIXED, *_random_values(40)]:
        try:
            ram_in_bytes(value)
            ours = True
        except ValueError:
            ours = False
        assert ours == docker_takes(value, sock), value
