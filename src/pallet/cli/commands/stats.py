"""`pallet stats`: a live table of containers' resource use, as `docker stats`.

Figures are computed as the docker CLI does (cli/command/container/stats_helpers.go):
CPU % = Δcpu_usage.total_usage / Δsystem_cpu_usage * online_cpus * 100 against precpu_stats;
memory use = usage less inactive file pages (`total_inactive_file` on cgroup v1,
`inactive_file` on v2), MEM % against the limit; NET I/O the sum of rx/tx bytes over the
interfaces; BLOCK I/O the sum of Read/Write io_service_bytes; PIDS pids_stats.current. Sizes as
go-units: memory in binary units ("1.5MiB"), network and block IO in decimal ones ("1.23kB").

Without --no-stream each container is followed by its own stats stream (stream=true) in a thread
and the table is redrawn every half second (cursor home + clear, as the CLI); --no-stream asks once
per container (stream=false: the daemon waits for a second sample so CPU % is meaningful).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping

from pallet.errors import InvalidArgument, NotFound, PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Any

    from pallet.cli.main import Context

HEADERS = {"Container": "CONTAINER", "Name": "NAME", "ID": "CONTAINER ID", "CPUPerc": "CPU %",
           "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
           "PIDs": "PIDS"}
DEFAULT = ["ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs"]


def _size(value: float, base: float, units: tuple[str, ...], precision: int) -> str:
    i = 0
    while value >= base and i < len(units) - 1:
        value /= base
        i += 1
    return f"{value:.{precision}g}{units[i]}"


def bytes_size(v: float) -> str:
    """go-units BytesSize: binary units, 4 significant digits."""
    return _size(v, 1024.0, ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"), 4)


def human_size(v: float) -> str:
    """go-units HumanSizeWithPrecision(v, 3): decimal units."""
    return _size(v, 1000.0, ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"), 3)


def cpu_percent(s: Mapping[str, Any]) -> float:
    cur, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    cpu_delta = float((cur.get("cpu_usage") or {}).get("total_usage") or 0) - \
        float((pre.get("cpu_usage") or {}).get("total_usage") or 0)
    sys_delta = float(cur.get("system_cpu_usage") or 0) - float(pre.get("system_cpu_usage") or 0)
    cpus = float(cur.get("online_cpus") or len((cur.get("cpu_usage") or {}).get("percpu_usage") or []))
    if sys_delta > 0 and cpu_delta > 0:
        return cpu_delta / sys_delta * cpus * 100.0
    return 0.0


def mem_usage(mem: Mapping[str, Any]) -> float:
    usage = int(mem.get("usage") or 0)
    stats = mem.get("stats") or {}
    if "total_inactive_file" in stats and stats["total_inactive_file"] < usage:
        return float(usage - stats["total_inactive_file"])
    if int(stats.get("inactive_file") or 0) < usage:
        return float(usage - int(stats.get("inactive_file") or 0))
    return float(usage)


def row(s: Mapping[str, Any], container: str, *, no_trunc: bool = False) -> dict[str, str]:
    """One table row from a stats answer; `container` is what the user named it by."""
    mem = s.get("memory_stats") or {}
    used, limit = mem_usage(mem), float(mem.get("limit") or 0)
    rx = sum(int(n.get("rx_bytes") or 0) for n in (s.get("networks") or {}).values())
    tx = sum(int(n.get("tx_bytes") or 0) for n in (s.get("networks") or {}).values())
    read = write = 0
    for e in (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(e.get("op") or " ")[:1].lower()
        if op == "r":
            read += int(e.get("value") or 0)
        elif op == "w":
            write += int(e.get("value") or 0)
    cid = str(s.get("id") or "")
    return {
        "Container": container, "Name": str(s.get("name") or "").lstrip("/"),
        "ID": cid if no_trunc else cid[:12],
        "CPUPerc": f"{cpu_percent(s):.2f}%",
        "MemUsage": f"{bytes_size(used)} / {bytes_size(limit)}",
        "MemPerc": f"{(used / limit * 100.0) if limit else 0.0:.2f}%",
        "NetIO": f"{human_size(rx)} / {human_size(tx)}",
        "BlockIO": f"{human_size(read)} / {human_size(write)}",
        "PIDs": str(int((s.get("pids_stats") or {}).get("current") or 0)),
    }


def render_rows(fmt: str | None, rows: list[dict[str, str]]) -> str:
    from pallet.cli.format import align, render

    try:
        if fmt is None or fmt.strip() == "table":
            return align([[HEADERS[f] for f in DEFAULT], *([r[f] for f in DEFAULT] for r in rows)])
        return render(fmt, DEFAULT, HEADERS, rows)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from exc


class _Follower(threading.Thread):
    """Reads one container's stats stream; `latest` is the newest row."""

    def __init__(self, client: Any, ref: str, no_trunc: bool) -> None:
        super().__init__(daemon=True, name=f"stats-{ref}")
        self.client, self.ref, self.no_trunc = client, ref, no_trunc
        self.latest: dict[str, str] | None = None
        self.gone = False
        self.error: str = ""

    def run(self) -> None:
        import json

        from pallet.cli.commands.container import path

        try:
            resp = self.client.request("GET", path(self.ref, "/stats"), params={"stream": True})
            for line in resp.iter_lines():
                self.latest = row(json.loads(line), self.ref, no_trunc=self.no_trunc)
        except (PalletError, OSError, ValueError) as exc:
            self.error = str(exc)
        self.gone = True


def main(ctx: Context, argv: list[str], prog: str = "pallet stats") -> int:
    from pallet.cli.commands.container import error_line, parser, path

    p = parser(prog, "Display a live stream of container(s) resource usage statistics")
    p.add_argument("containers", nargs="*", metavar="CONTAINER")
    p.add_argument("-a", "--all", action="store_true",
                   help="Show all containers (default shows just running)")
    p.add_argument("--format", help="'table', 'table TEMPLATE', 'json' or a Go template")
    p.add_argument("--no-stream", action="store_true",
                   help="Disable streaming stats and only pull the first result")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate output")
    args = p.parse_args(argv)
    client = ctx.client()

    def listed() -> list[str]:
        items = client.get_json("/containers/json", params={"all": args.all or None}) or []
        return [c["Id"][:12] for c in reversed(items)]

    try:
        refs = list(args.containers) or listed()
        if args.no_stream:
            rows, failed = [], 0
            for ref in refs:
                try:
                    s = client.get_json(path(ref, "/stats"), params={"stream": False})
                except PalletError as exc:
                    if not args.containers and isinstance(exc, NotFound):
                        continue  # removed since the listing
                    print(error_line(exc), file=sys.stderr)
                    failed = 1
                    continue
                rows.append(row(s, ref, no_trunc=args.no_trunc))
            sys.stdout.write(render_rows(args.format, rows))
            return failed
        return _live(ctx, args, refs, listed)
    except PalletError as exc:
        print(error_line(exc), file=sys.stderr)
        return 1


def _live(ctx: Context, args: Any, refs: list[str], listed: Any) -> int:
    client = ctx.client()
    client.timeout = None  # a stream may stay quiet for long
    followers: dict[str, _Follower] = {}
    last_list = time.monotonic()
    try:
        while True:
            for ref in refs:
                if ref not in followers:
                    followers[ref] = _Follower(client, ref, args.no_trunc)
                    followers[ref].start()
            time.sleep(0.5)
            if args.containers:
                errors = [f for f in followers.values() if f.gone and f.error and f.latest is None]
                if errors and len(errors) == len(followers):
                    print(f"Error response from daemon: {errors[0].error}", file=sys.stderr)
                    return 1
            elif time.monotonic() - last_list > 2:
                refs, last_list = listed(), time.monotonic()
                for ref in [r for r, f in followers.items() if f.gone or r not in refs]:
                    followers.pop(ref)
            rows = [f.latest for r, f in followers.items() if f.latest is not None and (r in refs)]
            out = render_rows(args.format, rows)
            sys.stdout.write("\033[2J\033[H" + out if sys.stdout.isatty() else out)
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 0
