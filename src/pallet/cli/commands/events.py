"""`pallet events`: the daemon's events, live or from its history, as `docker events`.

Default output is the docker CLI's line (cli/command/system/events.go printOutput):

    2024-05-07T20:33:45.123456789Z container start 3c0ffee... (image=busybox, name=web)

a time in RFC 3339 with nanoseconds (local zone; UTC here), type, action, actor id, then the
attributes sorted by key. `--format` takes a Go template over the message (`{{.Type}}`,
`{{.Action}}`, `{{.Actor.ID}}`, `{{.Actor.Attributes.name}}`, `{{json .}}`) or `json`.
`--since`/`--until` take Docker's timestamps (a duration such as 10m, a unix time, RFC 3339);
with `--until` the command ends when that time passes.
"""

from __future__ import annotations

import sys
import time

from pallet.errors import InvalidArgument, PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Any

    from pallet.cli.main import Context


def line(msg: dict[str, Any]) -> str:
    ns = int(msg.get("timeNano") or int(msg.get("time") or 0) * 10**9)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"
    actor = msg.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    text = f"{stamp} {msg.get('Type', '')} {msg.get('Action', '')} {actor.get('ID', '')}"
    if attrs:
        text += " (" + ", ".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + ")"
    return text


def main(ctx: Context, argv: list[str], prog: str = "pallet events") -> int:
    import json

    from pallet.cli.commands.container import error_line, parser
    from pallet.cli.commands.images import filters_param
    from pallet.cli.commands.logs import timestamp

    p = parser(prog, "Get real time events from the server")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="KEY=VALUE",
                   help="Filter output based on conditions provided")
    p.add_argument("--format", help="'json' or a Go template")
    p.add_argument("--since", help="Show all events created since timestamp")
    p.add_argument("--until", help="Stream events until this timestamp")
    args = p.parse_args(argv)
    client = ctx.client()
    client.timeout = None  # the stream may stay quiet for hours
    try:
        params = {"since": timestamp(args.since) if args.since else None,
                  "until": timestamp(args.until) if args.until else None,
                  "filters": json.dumps(filters_param(args.filter)) if args.filter else None}
        resp = client.request("GET", "/events", params=params)
        fmt = args.format
        for raw in resp.iter_lines():
            msg = json.loads(raw)
            if fmt is None:
                out = line(msg)
            elif fmt.strip() == "json":
                out = json.dumps(msg)
            else:
                from pallet.cli.main import render_template

                try:
                    out = render_template(fmt, msg)
                except ValueError as exc:
                    raise InvalidArgument(str(exc)) from exc
            sys.stdout.write(out + "\n")
            sys.stdout.flush()
    except PalletError as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
