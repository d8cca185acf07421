"""`pallet version`: the client's and the daemon's versions, laid out like `docker version`."""

from __future__ import annotations

import os
import sys

from pallet.errors import PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Any

    from pallet.cli.main import Context

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}


def client_section() -> dict[str, Any]:
    from pallet import __version__
    from pallet.api import API_VERSION

    machine = os.uname().machine  # not platform.machine(): importing platform costs ~2 ms
    py = ".".join(map(str, sys.version_info[:3]))
    return {"Version": __version__, "ApiVersion": API_VERSION, "DefaultAPIVersion": API_VERSION,
            "PythonVersion": f"python{py}",
            "Os": "linux", "Arch": _GOARCH.get(machine, machine)}


def _row(indent: str, label: str, value: Any, width: int) -> str:
    return f"{indent}{label + ':':<{width}}{value}"


def render(data: dict[str, Any]) -> str:
    c = data["Client"]
    lines = ["Client:",
             _row(" ", "Version", c["Version"], 19),
             _row(" ", "API version", c["ApiVersion"], 19),
             _row(" ", "Python version", c["PythonVersion"], 19),
             _row(" ", "OS/Arch", f"{c['Os']}/{c['Arch']}", 19)]
    s = data.get("Server")
    if s:
        lines += ["", f"Server: {s.get('Platform', {}).get('Name', '')}".rstrip()]
        for comp in s.get("Components") or []:
            d = comp.get("Details") or {}
            lines.append(f" {comp['Name']}:")
            if comp["Name"] == "Engine":
                lines += [_row("  ", "Version", comp["Version"], 18),
                          _row("  ", "API version", f"{d.get('ApiVersion', '')} (minimum version "
                                                    f"{d.get('MinAPIVersion', '')})", 18),
                          _row("  ", "Python version", d.get("GoVersion", ""), 18),
                          _row("  ", "Git commit", d.get("GitCommit", ""), 18),
                          _row("  ", "Built", d.get("BuildTime", ""), 18),
                          _row("  ", "OS/Arch", f"{d.get('Os', '')}/{d.get('Arch', '')}", 18),
                          _row("  ", "Experimental", d.get("Experimental", "false"), 18)]
            else:
                lines.append(_row("  ", "Version", comp["Version"], 18))
                lines += [_row("  ", k, v, 18) for k, v in d.items()]
    return "\n".join(lines) + "\n"


def main(ctx: Context, argv: list[str]) -> int:
    from pallet.cli.commands.container import parser

    p = parser("pallet version", "Show the Pallet version information")
    p.add_argument("-f", "--format", help="Format the output using the given Go template ('{{json .}}')")
    args = p.parse_args(argv)
    data: dict[str, Any] = {"Client": client_section(), "Server": None}
    error: PalletError | None = None
    try:
        data["Server"] = ctx.client().version()
    except PalletError as exc:
        error = exc
    if args.format:
        from pallet.cli.main import render_template

        try:
            text = render_template(args.format, data)
        except ValueError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 1
        sys.stdout.write(text + "\n")
    else:
        sys.stdout.write(render(data))
    if error is not None:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    return 0
