"""`pallet logs`: a container's output (follow, tail, timestamps, since/until), as `docker logs`:
raw for a TTY container, otherwise the multiplexed frames split to stdout and stderr."""

from __future__ import annotations

import sys
import time

from pallet.errors import InvalidArgument, PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from pallet.cli.args import Parser
    from pallet.cli.main import Context



def timestamp(value: str, now: float | None = None) -> str:
    """docker's GetTimestamp: a Go duration (`10m`, `1h30m`: before now), a unix time
    (`1700000000[.5]`), or an RFC 3339 / date (`2024-05-07`, `2024-05-07T20:33:45Z`)."""
    # Only --since/--until get here: `re` and `datetime` load here, not at start-up (~7 ms).
    import re
    from datetime import UTC, datetime

    from pallet.units import go_duration_ns

    now = time.time() if now is None else now
    v = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", v):
        return v
    try:
        return f"{now - go_duration_ns(v) / 1e9:.9f}"
    except ValueError:
        pass  # not a duration: a date

    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"invalid value for --since/--until: {value!r} "
                              "(want a duration like 10m, a unix time or an RFC 3339 date)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return f"{dt.timestamp():.9f}"


def build_parser(prog: str = "pallet logs") -> Parser:
    """The parser of `pallet logs` (argparse's calls; pallet.cli.args reads the common command lines)."""
    from pallet.cli.commands.container import parser

    p = parser(prog, "Fetch the logs of a container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("-n", "--tail", default="all", help='Number of lines to show from the end (default "all")')
    p.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    p.add_argument("--since", help="Show logs since timestamp or relative (e.g. 42m for 42 minutes)")
    p.add_argument("--until", help="Show logs before a timestamp or relative (e.g. 42m for 42 minutes)")
    p.add_argument("--details", action="store_true", help="Show extra details provided to logs")
    return p


def main(ctx: Context, argv: list[str], prog: str = "pallet logs") -> int:
    from pallet.cli.commands.container import error_line, path

    args = build_parser(prog).parse_args(argv)
    client = ctx.client()
    try:
        info = client.get_json(path(args.container, "/json"))
        resp = client.request("GET", path(info["Id"], "/logs"), params={
            "stdout": True, "stderr": True, "follow": args.follow or None, "tail": args.tail,
            "timestamps": args.timestamps or None, "details": args.details or None,
            "since": timestamp(args.since) if args.since else None,
            "until": timestamp(args.until) if args.until else None})
        out, err = sys.stdout.buffer, sys.stderr.buffer
        raw = resp.content_type != "application/vnd.docker.multiplexed-stream"
        if (info.get("Config") or {}).get("Tty") and raw:
            for chunk in resp.iter_chunks():
                out.write(chunk)
                out.flush()
        else:
            for stream, data in resp.iter_frames():
                dest = err if stream == 2 else out
                dest.write(data)
                dest.flush()
    except PalletError as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
    return 0
