"""`pallet info`: the daemon's system-wide information, laid out like `docker info`."""

from __future__ import annotations

import argparse
import sys

from pallet.cli.commands.container import HelpFormatter
from pallet.errors import PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Any

    from pallet.cli.main import Context


def _bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.4g}{unit}"
        value /= 1024
    return f"{n}B"


def render(client: dict[str, Any], s: dict[str, Any] | None) -> str:
    lines = ["Client:", f" Version:    {client['Version']}", f" Host:       {client['Host']}"]
    if s is None:
        return "\n".join(lines) + "\n"
    runtimes = " ".join(s.get("Runtimes") or {})
    lines += [
        "",
        "Server:",
        f" Containers: {s.get('Containers', 0)}",
        f"  Running: {s.get('ContainersRunning', 0)}",
        f"  Paused: {s.get('ContainersPaused', 0)}",
        f"  Stopped: {s.get('ContainersStopped', 0)}",
        f" Images: {s.get('Images', 0)}",
        f" Server Version: {s.get('ServerVersion', '')}",
        f" Storage Driver: {s.get('Driver', '')}",
        *[f"  {k}: {v}" for k, v in s.get("DriverStatus") or []],
        f" Logging Driver: {s.get('LoggingDriver', '')}",
        f" Cgroup Driver: {s.get('CgroupDriver', '')}",
        f" Cgroup Version: {s.get('CgroupVersion', '')}",
        f" Runtimes: {runtimes}",
        f" Default Runtime: {s.get('DefaultRuntime', '')}",
        " Security Options:",
        *[f"  {opt}" for opt in s.get("SecurityOptions") or []],
        f" Kernel Version: {s.get('KernelVersion', '')}",
        f" Operating System: {s.get('OperatingSystem', '')}",
        f" OSType: {s.get('OSType', '')}",
        f" Architecture: {s.get('Architecture', '')}",
        f" CPUs: {s.get('NCPU', 0)}",
        f" Total Memory: {_bytes(int(s.get('MemTotal') or 0))}",
        f" Name: {s.get('Name', '')}",
        f" ID: {s.get('ID', '')}",
        f" Pallet Root Dir: {s.get('DockerRootDir', '')}",
        f" Debug Mode: {str(bool(s.get('Debug'))).lower()}",
        f" Live Restore Enabled: {str(bool(s.get('LiveRestoreEnabled'))).lower()}",
    ]
    if s.get("Labels"):
        lines += [" Labels:", *[f"  {label}" for label in s["Labels"]]]
    out = "\n".join(lines) + "\n"
    for w in s.get("Warnings") or []:
        out += w + "\n"
    return out


def main(ctx: Context, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pallet info", description="Display system-wide information",
                                formatter_class=HelpFormatter)
    p.add_argument("-f", "--format", help="Format the output using the given Go template ('{{json .}}')")
    args = p.parse_args(argv)
    from pallet import __version__

    client = ctx.client()
    client_data = {"Version": __version__, "Host": client.host}
    server: dict[str, Any] | None = None
    error: PalletError | None = None
    try:
        server = client.info()
    except PalletError as exc:
        error = exc
    if args.format:
        from pallet.cli.main import render_template

        data = {**(server or {}), "ClientInfo": client_data}
        if error is not None and server is None:
            print(f"Error: {error}", file=sys.stderr)
            return 1
        try:
            sys.stdout.write(render_template(args.format, data) + "\n")
        except ValueError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(render(client_data, server))
    if error is not None:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    return 0
