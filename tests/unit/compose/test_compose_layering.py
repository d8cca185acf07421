"""The compose package reaches the daemon only through the API client (DESIGN.md: compose ->
api client), and the `compose` verb loads neither PyYAML nor the package until it runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src" / "pallet"
# pallet.build.context is the client half of build contexts (standard library only), which the
# `pallet build` verb uses too; pallet.units (sizes, Go durations) imports nothing.
ALLOWED = ("pallet", "pallet.errors", "pallet.units", "pallet.api.client", "pallet.build.context")


def test_compose_imports_only_the_api_client():
    offenders = []
    for path in (SRC / "compose").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] == "pallet"
                          and not n.startswith("pallet.compose") and n not in ALLOWED]
    assert offenders == []


def test_cli_help_does_not_load_compose_or_yaml():
    code = ("import sys, io, contextlib, pallet.cli.main as m\n"
            "with contextlib.redirect_stdout(io.StringIO()): m.main(['--help'])\n"
            "print(sorted(x for x in sys.modules\n"
            "             if x.split('.')[0] == 'yaml' or x.startswith('pallet.compose')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
