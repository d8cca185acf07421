"""pallet.units.ram_in_bytes: go-units RAMInBytes (v0.5) as Docker reads every byte size.

The accepted and refused values below were checked against the real docker CLI (`docker create
-m VALUE`, which parses the flag before it connects); tests/compat/test_docker_cli_sizes.py asks
the CLI itself on every run where it is installed."""

from __future__ import annotations

import pytest

from pallet.units import ram_in_bytes
from pallet_testlib import python_output

KiB, MiB, GiB, TiB, PiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40, 1 << 50


@pytest.mark.parametrize(("text", "size"), [
    ("32", 32), ("32b", 32), ("32B", 32), ("32k", 32 * KiB), ("32K", 32 * KiB), ("32kb", 32 * KiB),
    ("32Kb", 32 * KiB), ("32Kib", 32 * KiB), ("32KIB", 32 * KiB), ("32Mb", 32 * MiB), ("32Gb", 32 * GiB),
    ("32Tb", 32 * TiB), ("32Pb", 32 * PiB), ("32PB", 32 * PiB), ("32P", 32 * PiB), ("32.3", 32),
    ("32 mb", 32 * MiB), ("5 b", 5), ("1.5g", 3 * GiB // 2), ("1gib", GiB), ("512MiB", 512 * MiB),
    (".5m", MiB // 2), ("5.", 5), ("1e3", 1000), ("+5", 5), ("1_0", 10), ("0", 0),
    (" 64m ", 64 * MiB),  # surrounding whitespace: dropped (go-units refuses it)
])
def test_accepted(text, size):
    assert ram_in_bytes(text) == size


@pytest.mark.parametrize(("text", "why"), [
    ("", "invalid size"), ("hello", "invalid size"), ("m", "invalid size"), ("-1", "invalid size"),
    ("-32", "invalid size"), ("32m b", "invalid size"), ("32  m", "invalid size"), ("1..2", "invalid size"),
    ("0x10", "invalid size"), ("inf", "invalid size"), ("nan", "invalid size"), ("1e999", "invalid size"),
    ("1e18p", "invalid size"), ("1__0", "invalid size"), ("5\u0661k", "invalid size"),
    ("32bm", "invalid suffix: 'bm'"), ("1x", "invalid suffix: 'x'"), ("1Gi", "invalid suffix: 'Gi'"),
    ("7ib", "invalid suffix: 'ib'"), ("1mk", "invalid suffix: 'mk'"), ("1kbb", "invalid suffix"),
    ("1kibb", "invalid suffix"),
])
def test_refused(text, why):
    with pytest.raises(ValueError, match=why):
        ram_in_bytes(text)


def test_no_regular_expressions_on_the_cli_path():

    code = ("import sys; sys.modules.pop('re', None); import pallet.units as u; u.ram_in_bytes('64m'); "
            "print('re' in sys.modules)")
    assert python_output(code) == "False"
