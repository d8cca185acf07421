"""`pallet compose`: multi-container applications, with docker compose's commands and flags.

Thin: parses the command line, loads the project (pallet.compose.loader) and calls
pallet.compose.project. PyYAML and the compose package are imported only when this verb runs,
so `pallet --help` stays light. `exec` and `run` hand the terminal work to the `exec` verb and
to `run`'s attach/start/wait, as docker compose reuses the docker CLI's.
"""

from __future__ import annotations

import argparse
import os
import sys

from pallet.cli.commands.container import HelpFormatter
from pallet.errors import InvalidArgument, NotFound, NotSupported, PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Any

    from pallet.cli.main import Context
    from pallet.compose.project import Compose

COMMANDS = {
    "build": "Build or rebuild services",
    "config": "Parse, resolve and render the compose file in canonical format",
    "down": "Stop and remove containers, networks",
    "exec": "Execute a command in a running container",
    "images": "List images used by the created containers",
    "logs": "View output from containers",
    "port": "Print the public port for a port binding",
    "ps": "List containers",
    "pull": "Pull service images",
    "push": "Push service images",
    "restart": "Restart service containers",
    "rm": "Removes stopped service containers",
    "run": "Run a one-off command on a service",
    "start": "Start services",
    "stop": "Stop services",
    "top": "Display the running processes",
    "up": "Create and start containers",
}


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Define and run multi-container applications",
                                formatter_class=HelpFormatter)
    p.add_argument("-f", "--file", action="append", default=[], help="Compose configuration files")
    p.add_argument("-p", "--project-name", help="Project name")
    p.add_argument("--project-directory", help="Alternate working directory (default: the first file's)")
    p.add_argument("--env-file", action="append", default=[], help="Alternate environment file(s)")
    p.add_argument("--profile", action="append", default=[], help="Profile(s) to enable")
    p.add_argument("--ansi", choices=("never", "always", "auto"), default="auto",
                   help="Control when to print ANSI control characters")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND")
    sub.required = True

    def cmd(name: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=COMMANDS[name], description=COMMANDS[name])

    up = cmd("up")
    up.add_argument("-d", "--detach", action="store_true", help="Run containers in the background")
    up.add_argument("--build", action="store_true", help="Build images before starting containers")
    up.add_argument("--no-build", action="store_true", help="Don't build an image, even if it's missing")
    up.add_argument("--force-recreate", action="store_true", help="Recreate containers even if "
                    "their configuration hasn't changed")
    up.add_argument("--no-recreate", action="store_true", help="Don't recreate existing containers")
    up.add_argument("--no-deps", action="store_true", help="Don't start linked services")
    up.add_argument("--no-start", action="store_true", help="Don't start the services after creating them")
    up.add_argument("--scale", action="append", default=[], metavar="SERVICE=NUM",
                    help="Scale SERVICE to NUM instances")
    up.add_argument("--wait", action="store_true", help="Wait for services to be running|healthy")
    up.add_argument("--wait-timeout", type=float, default=300.0, help="Seconds to wait (default 300)")
    up.add_argument("--remove-orphans", action="store_true", help="Remove containers for services "
                    "not defined in the Compose file")
    up.add_argument("--no-color", action="store_true", help="Produce monochrome output")
    up.add_argument("--no-log-prefix", action="store_true", help="Don't print prefix in logs")
    up.add_argument("-t", "--timeout", type=int, help="Shutdown timeout in seconds")
    up.add_argument("targets", nargs="*", metavar="SERVICE")

    down = cmd("down")
    down.add_argument("-v", "--volumes", action="store_true", help="Remove named volumes declared in "
                      "the volumes section and anonymous volumes attached to containers")
    down.add_argument("--rmi", choices=("local", "all"), help="Remove images used by services")
    down.add_argument("--remove-orphans", action="store_true", help="Remove containers for services "
                      "not defined in the Compose file")
    down.add_argument("-t", "--timeout", type=int, help="Shutdown timeout in seconds")

    ps = cmd("ps")
    ps.add_argument("-a", "--all", action="store_true", help="Show all stopped containers")
    ps.add_argument("-q", "--quiet", action="store_true", help="Only display IDs")
    ps.add_argument("--services", action="store_true", help="Display services")
    ps.add_argument("--format", default="table", help="table or json")
    ps.add_argument("targets", nargs="*", metavar="SERVICE")

    logs = cmd("logs")
    logs.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    logs.add_argument("-n", "--tail", default="all", help="Number of lines to show from the end")
    logs.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    logs.add_argument("--no-color", action="store_true", help="Produce monochrome output")
    logs.add_argument("--no-log-prefix", action="store_true", help="Don't print prefix in logs")
    logs.add_argument("targets", nargs="*", metavar="SERVICE")

    ex = cmd("exec")
    ex.add_argument("-d", "--detach", action="store_true", help="Detached mode")
    ex.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true",
                    help="Disable pseudo-TTY allocation")
    ex.add_argument("-e", "--env", action="append", default=[], help="Set environment variables")
    ex.add_argument("-u", "--user", help="Run the command as this user")
    ex.add_argument("-w", "--workdir", help="Path to workdir directory for this command")
    ex.add_argument("--privileged", action="store_true", help="Give extended privileges to the process")
    ex.add_argument("--index", type=int, default=1, help="Index of the container if there are several")
    ex.add_argument("service", metavar="SERVICE")
    ex.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")

    run = cmd("run")
    run.add_argument("-d", "--detach", action="store_true", help="Run container in background")
    run.add_argument("--rm", action="store_true", help="Automatically remove the container when it exits")
    run.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true",
                     help="Disable pseudo-TTY allocation")
    run.add_argument("-e", "--env", action="append", default=[], help="Set environment variables")
    run.add_argument("--entrypoint", help="Override the entrypoint of the image")
    run.add_argument("--name", help="Assign a name to the container")
    run.add_argument("-u", "--user", help="Run as specified username or uid")
    run.add_argument("-w", "--workdir", help="Working directory inside the container")
    run.add_argument("--no-deps", action="store_true", help="Don't start linked services")
    run.add_argument("--service-ports", action="store_true", help="Publish the service's ports")
    run.add_argument("--build", action="store_true", help="Build image before starting container")
    run.add_argument("service", metavar="SERVICE")
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")

    b = cmd("build")
    b.add_argument("--no-cache", action="store_true", help="Do not use cache when building the image")
    b.add_argument("--pull", action="store_true", help="Always attempt to pull a newer version of the image")
    b.add_argument("-q", "--quiet", action="store_true", help="Don't print anything to STDOUT")
    b.add_argument("targets", nargs="*", metavar="SERVICE")

    for name in ("pull", "push"):
        x = cmd(name)
        x.add_argument("--ignore-pull-failures" if name == "pull" else "--ignore-push-failures",
                       dest="ignore", action="store_true", help="Carry on when an image fails")
        x.add_argument("-q", "--quiet", action="store_true", help="Print no progress")
        x.add_argument("targets", nargs="*", metavar="SERVICE")

    for name in ("start", "stop", "restart"):
        x = cmd(name)
        if name != "start":
            x.add_argument("-t", "--timeout", type=int, help="Specify a shutdown timeout in seconds")
        x.add_argument("targets", nargs="*", metavar="SERVICE")

    rm = cmd("rm")
    rm.add_argument("-f", "--force", action="store_true", help="Don't ask to confirm removal")
    rm.add_argument("-s", "--stop", action="store_true",
                    help="Stop the containers, if required, before removing")
    rm.add_argument("-v", "--volumes", action="store_true",
                    help="Remove any anonymous volumes attached to containers")
    rm.add_argument("targets", nargs="*", metavar="SERVICE")

    cfg = cmd("config")
    cfg.add_argument("-q", "--quiet", action="store_true", help="Only validate the configuration")
    cfg.add_argument("--services", action="store_true", help="Print the service names, one per line")
    cfg.add_argument("--volumes", action="store_true", help="Print the volume names, one per line")
    cfg.add_argument("--networks", action="store_true", help="Print the network names, one per line")
    cfg.add_argument("--profiles", action="store_true", help="Print the profile names, one per line")
    cfg.add_argument("--hash", help='Print the service config hash, one per line ("*" for all)')
    cfg.add_argument("--format", choices=("yaml", "json"), default="yaml", help="Format the output")
    cfg.add_argument("targets", nargs="*", metavar="SERVICE")

    top = cmd("top")
    top.add_argument("targets", nargs="*", metavar="SERVICE")

    im = cmd("images")
    im.add_argument("-q", "--quiet", action="store_true", help="Only display IDs")
    im.add_argument("targets", nargs="*", metavar="SERVICE")

    port = cmd("port")
    port.add_argument("--protocol", default="tcp", choices=("tcp", "udp", "sctp"), help="tcp or udp")
    port.add_argument("--index", type=int, default=1, help="Index of the container if there are several")
    port.add_argument("service", metavar="SERVICE")
    port.add_argument("private_port", metavar="PRIVATE_PORT")
    return p


def _env_pairs(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        k, eq, x = v.partition("=")
        if not eq:
            x = os.environ.get(k, "")
        out[k] = x
    return out


def main(ctx: Context, argv: list[str], prog: str = "pallet compose") -> int:
    args = _parser(prog).parse_args(argv)
    from pallet.compose import loader

    project: loader.Project | None
    try:
        project = loader.load(loader.Options(
            files=tuple(args.file), project_name=args.project_name,
            project_directory=args.project_directory, env_files=tuple(args.env_file),
            profiles=tuple(args.profile)))
    except PalletError as exc:
        project = None
        if isinstance(exc, NotFound) and args.project_name and args.verb in _WITHOUT_FILE and not args.file:
            try:
                project = loader.by_name(args.project_name)
            except PalletError as name_exc:
                exc = name_exc
        if project is None:
            # docker compose's exit statuses: 14 no compose file, 15 an invalid one.
            print(f"pallet compose: {exc}", file=sys.stderr)
            if isinstance(exc, NotFound):
                return 14
            return 15 if isinstance(exc, InvalidArgument | NotSupported) else 1
    assert project is not None
    named = list(getattr(args, "targets", None) or [])
    if getattr(args, "service", None):
        named.append(args.service)
    try:
        loader.enable_services(project, named)
        if args.verb == "config":
            return _config(project, args)
        from pallet.compose.project import Compose

        compose = Compose(ctx.client(), project)
        return int(_COMMANDS[args.verb](ctx, compose, args) or 0)
    except PalletError as exc:
        from pallet.cli.commands.container import error_line

        print(error_line(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _color(args: argparse.Namespace) -> bool:
    if getattr(args, "no_color", False) or args.ansi == "never":
        return False
    return args.ansi == "always" or (sys.stdout.isatty() and not os.environ.get("NO_COLOR"))


def _config(project: Any, args: argparse.Namespace) -> int:
    from pallet.compose import convert

    if args.quiet:
        return 0
    if args.services:
        print("\n".join(project.services))
        return 0
    if args.volumes:
        print("\n".join(project.volumes))
        return 0
    if args.networks:
        print("\n".join(project.networks))
        return 0
    if args.profiles:
        every = [*project.services.values(), *project.disabled.values()]
        names = {p for s in every for p in s.get("profiles") or []}
        print("\n".join(sorted(names)))
        return 0
    if args.hash:
        wanted = list(project.services) if args.hash == "*" else args.hash.split(",")
        for s in wanted:
            print(f"{s} {convert.config_hash(project.service(s))}")
        return 0
    model = project.to_dict()
    if args.targets:
        model["services"] = {k: v for k, v in model["services"].items() if k in args.targets}
    if args.format == "json":
        import json

        print(json.dumps(model, indent=2))
        return 0
    import yaml

    sys.stdout.write(yaml.safe_dump(model, sort_keys=False, default_flow_style=False, allow_unicode=True))
    return 0


def _up(ctx: Context, c: Compose, args: argparse.Namespace) -> int:
    scale = {}
    for item in args.scale:
        svc, eq, n = item.partition("=")
        if not eq or not n.isdigit():
            raise InvalidArgument(f"--scale {item!r}: want SERVICE=NUM")
        scale[svc] = int(n)
    if args.detach and args.no_start:
        raise InvalidArgument("--detach and --no-start cannot be combined")
    started = c.up(args.targets, build=args.build, no_build=args.no_build,
                   force_recreate=args.force_recreate, no_recreate=args.no_recreate,
                   no_deps=args.no_deps, scale=scale, remove_orphans=args.remove_orphans,
                   no_start=args.no_start, wait=args.wait, wait_timeout=args.wait_timeout)
    if args.detach or args.no_start or args.wait:
        return 0
    # Attached: follow every container's output until they all stop; Ctrl-C stops the project
    # (docker compose: "Gracefully stopping... (press Ctrl+C again to force)").
    import signal
    import threading

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGINT and SIGTERM both stop the project, as Ctrl-C does for docker compose (set
    # explicitly: a shell that starts a job in the background leaves SIGINT ignored).
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    names = {x["Name"] for x in started}
    group = [x for x in c.containers() if c.name_of(x) in names]
    try:
        c.logs(follow=True, color=_color(args), prefix=not args.no_log_prefix, containers=group,
               tail="all", stop=threading.Event())
    except KeyboardInterrupt:
        print("Gracefully stopping... (press Ctrl+C again to force)", file=sys.stderr)
        c.stop(args.targets or None, timeout=args.timeout)
        return 130
    return 0


def _down(ctx: Context, c: Compose, args: argparse.Namespace) -> int:
    c.down(volumes=args.volumes, rmi=args.rmi, remove_orphans=args.remove_orphans, timeout=args.timeout)
    return 0


def _ps(ctx: Context, c: Compose, args: argparse.Namespace) -> int:
    from pallet.cli.commands.ps import row
    from pallet.cli.format import align

    group = c.containers(args.targets or None, all=args.all)
    if args.services:
        print("\n".join(dict.fromkeys(c.service_of(x) for x in group)))
        return 0
    if args.quiet:
        print("\n".join(x["Id"] for x in group))
        return 0
    if args.format == "json":
        import json

        out = []
        for x in group:
            r = row(x, no_trunc=True)
            out.append({"ID": x["Id"], "Name": c.name_of(x), "Image": r["Image"],
                        "Command": x.get("Command", ""),
                        "Project": c.project.name, "Service": c.service_of(x), "Created": x.get("Created"),
                        "State": x.get("State"), "Status": x.get("Status"), "Labels": r["Labels"],
                        "Ports": r["Ports"], "Publishers": [
                            {"URL": p.get("IP", ""), "TargetPort": p.get("PrivatePort"),
                             "PublishedPort": p.get("PublicPort", 0), "Protocol": p.get("Type", "tcp")}
                            for p in x.get("Ports") or []]})
        # One object per line, as docker compose prints since 2.21.
        sys.stdout.write("".join(json.dumps(o) + "\n" for o in out))
        return 0
    if args.format != "table":
        raise InvalidArgument(f"--format {args.format!r}: want table or json")
    rows = [["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"]]
    for x in group:
        r = row(x)
        rows.append([c.name_of(x), r["Image"], r["Command"], c.service_of(x), r["RunningFor"],
                     r["Status"], r["Ports"]])
    sys.stdout.write(align(rows))
    return 0


def _logs(ctx: Context, c: Compose, args: argparse.Namespace) -> int:
    c.logs(args.targets, follow=args.follow, tail=args.tail, timestamps=args.timestamps,
           color=_color(args), prefix=not args.no_log_prefix)
    return 0


def _exec(ctx: Context, c: Compose, args: argparse.Namespace) -> int:
    from pallet.cli.commands import exec as exec_verb

    if not args.command:
        raise InvalidArgument("exec needs a COMMAND")
    target = c.container_for(args.service, args.index)
    argv = []
    if args.detach:
        argv.append("-d")
    else:
        argv.append("-i")
        if not args.no_tty and sys.stdin.isatty():  # docker compose: -t unless -T or no terminal
            argv.append("-t")
    for e in args.env:
        argv += ["-e", e]
    if args.user:
        argv += ["-u", args.user]
    if args.workdir:
        argv += ["-w", args.workdir]
    if args.privileged:
        argv.append("--privileged")
    return int(exec_verb.main(ctx, [*argv, target["Id"], *args.command], prog="pallet compose exec") or 0)


def _run(ctx: Context, c: Compose, args: argparse.Namespace) -> int:
    import shlex

    from pallet.cli.commands import run as run_verb

    tty = not args.no_tty and sys.stdin.isatty() and not args.detach
    entrypoint = shlex.split(args.entrypoint) if args.entrypoint is not None else None
    created = c.create_oneoff(args.service, command=args.command or None, entrypoint=entrypoint,
                              env=_env_pairs(args.env), name=args.name, tty=tty,
                              stdin_open=not args.detach, user=args.user, workdir=args.workdir,
                              no_deps=args.no_deps, service_ports=args.service_ports, build=args.build)
    client = ctx.client()
    if args.detach:
        client.request("POST", f"/containers/{created['Id']}/start").read()
        print(created["Name"])
        return 0
    try:
        status = run_verb.attach_start_wait(client, created["Id"], tty=tty, stdin=True, auto_remove=False,
                                            detach_keys=None, prog="pallet compose run")
    finally:
        if args.rm:
            try:
                client.request("DELETE", f"/containers/{created['Id']}",
                               params={"force": True, "v": True}).read()
            except PalletError:
                pass
    return status


def _build(ctx: Context, c: Compose, args: argparse.Namespace) -> int:
    c.build(args.targets or None, no_cache=args.no_cache, pull=args.pull, quiet=args.quiet)
    return 0


def _pull(ctx: Context, c: Compose, args: argparse.Namespace) -> int:
    c.pull(args.targets or None, ignore_failures=args.ignore)
    return 0


def _push(ctx: Context, c: Compose, args: argparse.Namespace) -> int:
    c.push(args.targets or None, ignore_failures=args.ignore)
    return 0


def _start(ctx: Context, c: Compose, args: argparse.Namespace) -> int:
    c.start(args.targets or None)
    return 0


def _stop(ctx: Context, c: Compose, args: argparse.Namespace) -> int:
    c.stop(args.targets or None, timeout=args.timeout)
    return 0


def _restart(ctx: Context, c: Compose, args: argparse.Namespace) -> int:
    c.restart(args.targets or None, timeout=args.timeout)
    return 0


def _rm(ctx: Context, c: Compose, args: argparse.Namespace) -> int:
    def confirm(names: list[str]) -> bool:
        print(f"Going to remove {', '.join(names)}", file=sys.stderr)
        if args.force:
            return True
        sys.stderr.write("Are you sure? [yN] ")
        sys.stderr.flush()
        answer = sys.stdin.readline().strip().lower()
        return answer in ("y", "yes")

    c.rm(args.targets or None, stop=args.stop, volumes=args.volumes, confirm=confirm)
    return 0


def _top(ctx: Context, c: Compose, args: argparse.Namespace) -> int:
    from pallet.cli.format import align

    for i, (name, body) in enumerate(c.top(args.targets or None)):
        if i:
            print()
        print(name)
        sys.stdout.write(align([body.get("Titles") or [], *(body.get("Processes") or [])]))
    return 0


def _images(ctx: Context, c: Compose, args: argparse.Namespace) -> int:
    from pallet.cli.format import align, short_id
    from pallet.units import human_size

    rows = c.images(args.targets or None)
    if args.quiet:
        print("\n".join(dict.fromkeys(r["Id"] for r in rows)))
        return 0
    table = [["CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE"]]
    table += [[r["Container"], r["Repository"], r["Tag"], short_id(r["Id"]), human_size(r["Size"])]
              for r in rows]
    sys.stdout.write(align(table))
    return 0


def _port(ctx: Context, c: Compose, args: argparse.Namespace) -> int:
    for line in c.port(args.service, args.private_port, protocol=args.protocol, index=args.index):
        print(line)
    return 0


# What works with `-p NAME` and no compose file (docker compose allows these too).
_WITHOUT_FILE = frozenset({"down", "ps", "logs", "top", "images"})

_COMMANDS = {"up": _up, "down": _down, "ps": _ps, "logs": _logs, "exec": _exec, "run": _run,
             "build": _build, "pull": _pull, "push": _push, "start": _start, "stop": _stop,
             "restart": _restart, "rm": _rm, "top": _top, "images": _images, "port": _port}
