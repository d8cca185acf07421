"""Architecture as a test (STYLE.md §11): ctypes only in pallet/syscalls/, pyroute2 only in
pallet/network/netlink.py, and the CLI entry point imports no server stack."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "pallet"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_ctypes_only_in_syscalls():
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if "ctypes" in _imports(p) and p.relative_to(SRC).parts[0] != "syscalls"]
    assert offenders == []


def test_pyroute2_only_in_netlink():
    allowed = SRC / "network" / "netlink.py"
    offenders = [str(p.relative_to(SRC)) for p in SRC.rglob("*.py")
                 if "pyroute2" in _imports(p) and p != allowed]
    assert offenders == []


def test_runtime_and_cli_do_not_load_ctypes_at_import():
    code = ("import sys, pallet.cli.main, pallet.runtime.cli, pallet.syscalls; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ctypes','aiohttp','asyncio')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
