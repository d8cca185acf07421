"""`pallet exec`: run a command in a running container, as `docker exec`: create the exec
instance, start it on a hijacked connection (or detached with -d), exit with its exit code."""

from __future__ import annotations

import os
import sys

from pallet.api.client import quote
from pallet.errors import PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Any

    from pallet.cli.args import Namespace, Parser
    from pallet.cli.main import Context


def build_parser(prog: str = "pallet exec") -> Parser:
    from pallet.cli.args import REMAINDER
    from pallet.cli.commands.container import parser

    p = parser(prog, "Execute a command in a running container",
               usage=f"{prog} [OPTIONS] CONTAINER COMMAND [ARG...]")
    p.add_argument("-d", "--detach", action="store_true", help="Detached mode: run command in the background")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    p.add_argument("-e", "--env", action="append", default=[], help="Set environment variables")
    p.add_argument("--env-file", action="append", default=[], help="Read in a file of environment variables")
    p.add_argument("-w", "--workdir", help="Working directory inside the container")
    p.add_argument("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
    p.add_argument("--privileged", action="store_true", help="Give extended privileges to the command")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs=REMAINDER, metavar="COMMAND [ARG...]")
    return p


def exec_config(args: Namespace) -> dict[str, Any]:
    """The ExecConfig body (POST /containers/{id}/exec) for parsed flags."""
    from pallet.cli.commands.run import env_list

    cfg: dict[str, Any] = {
        "AttachStdin": args.interactive and not args.detach,
        "AttachStdout": not args.detach, "AttachStderr": not args.detach,
        "Tty": args.tty, "Cmd": list(args.command)}
    env = env_list(args.env, args.env_file)
    if env:
        cfg["Env"] = env
    if args.workdir:
        cfg["WorkingDir"] = args.workdir
    if args.user:
        cfg["User"] = args.user
    if args.privileged:
        cfg["Privileged"] = True
    if args.detach_keys:
        cfg["DetachKeys"] = args.detach_keys
    return cfg


def main(ctx: Context, argv: list[str], prog: str = "pallet exec") -> int:
    from pallet.cli.commands import attach
    from pallet.cli.commands.container import error_line, path

    args = build_parser(prog).parse_args(argv)
    if not args.command:
        print(f"{prog}: requires at least 2 arguments\nSee '{prog} --help'.", file=sys.stderr)
        return 1
    if args.tty and args.interactive and not os.isatty(0):
        print("the input device is not a TTY", file=sys.stderr)
        return 1
    client = ctx.client()
    cfg = exec_config(args)
    try:
        exec_id = client.post_json(path(args.container, "/exec"), cfg)["Id"]
        start = {"Detach": args.detach, "Tty": args.tty}
        if args.detach:
            client.request("POST", f"/exec/{quote(exec_id, '/')}/start", body=start).read()
            return 0
        h = client.hijack("POST", f"/exec/{quote(exec_id, '/')}/start", body=start)
        if args.tty:
            attach.follow_resize(client, f"/exec/{quote(exec_id, '/')}/resize")
        stdin = bool(cfg["AttachStdin"])
        keys = b""
        if stdin and args.tty and os.isatty(0):
            keys = attach.parse_detach_keys(args.detach_keys or attach.DEFAULT_DETACH_KEYS)
        with attach.RawTerminal(0, enabled=args.tty and stdin):
            if not attach.pump(h, tty=args.tty, stdin=stdin, detach_keys=keys):
                return 0
        info = client.get_json(f"/exec/{quote(exec_id, '/')}/json")
    except PalletError as exc:
        msg = error_line(exc)
        print(msg, file=sys.stderr)
        from pallet.cli.commands.run import start_error_status

        status = start_error_status(msg)
        return status if status != 125 else (126 if "exec failed" in msg else 1)
    code = info.get("ExitCode")
    return int(code) if code is not None else 0
