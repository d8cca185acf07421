"""`pallet run`: create a container, attach to it, start it and wait for it, as `docker run`.

Also the flag parsing `pallet create` shares: Docker's run flags to a ContainerCreateRequest
(Config + HostConfig, v1.50.yaml). Exit status as the docker CLI's (cli/command/container/run.go):
125 when the daemon refuses the container, 126/127 when the process cannot be started
(permission denied / not found), otherwise the container's own status.
"""

from __future__ import annotations

import os
import sys

from pallet.cli.args import REMAINDER, Parser
from pallet.errors import InvalidArgument, NotFound, PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from pallet.api.client import Client
    from pallet.cli.args import Namespace
    from pallet.cli.main import Context

def ram_in_bytes(value: str) -> int:
    """A byte size as the docker CLI reads it (`64m`, `1.5g`; pallet.units.ram_in_bytes)."""
    from pallet import units

    try:
        return units.ram_in_bytes(value)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def _memory(value: str) -> int:
    return -1 if value.strip() == "-1" else ram_in_bytes(value)


def nano_cpus(value: str) -> int:
    try:
        cpus = float(value)
    except ValueError:
        raise InvalidArgument(f"invalid argument {value!r} for --cpus: want a number such as 0.5") from None
    return round(cpus * 1e9)


def env_list(values: list[str], files: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """-e and --env-file as the docker CLI reads them: `NAME` alone takes the local value."""
    e = os.environ if environ is None else environ
    out: list[str] = []
    for f in files:
        try:
            with open(f, encoding="utf-8") as fh:
                lines = [ln.strip() for ln in fh]
        except OSError as exc:
            raise InvalidArgument(f"open {f}: {exc.strerror}") from exc
        out += [ln for ln in lines if ln and not ln.startswith("#")]
    out += values
    return [v if "=" in v or v not in e else f"{v}={e[v]}" for v in out]


def key_values(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        k, _, val = v.partition("=")
        if not k:
            raise InvalidArgument(f"invalid {what} {v!r}: want KEY=VALUE")
        out[k] = val
    return out


def ulimits(values: list[str]) -> list[dict[str, Any]]:
    out = []
    for v in values:
        name, sep, limits = v.partition("=")
        soft, _, hard = limits.partition(":")
        try:
            s = int(soft)
            out.append({"Name": name, "Soft": s, "Hard": int(hard) if hard else s})
        except ValueError:
            raise InvalidArgument(f"invalid ulimit {v!r}: want NAME=SOFT[:HARD]") from None
        if not sep or not name:
            raise InvalidArgument(f"invalid ulimit {v!r}: want NAME=SOFT[:HARD]")
    return out


def security_opts(values: list[str]) -> list[str]:
    """seccomp=FILE is sent as the profile's contents (docker CLI parseSecurityOpts)."""
    out = []
    for v in values:
        key, sep, value = v.partition("=")
        if not sep:
            key, sep, value = v.partition(":")
        if key == "seccomp" and value not in ("unconfined", "builtin", ""):
            try:
                with open(value, encoding="utf-8") as fh:
                    import json

                    v = "seccomp=" + json.dumps(json.load(fh), separators=(",", ":"))
            except (OSError, ValueError) as exc:
                raise InvalidArgument(f"opening seccomp profile ({value}) failed: {exc}") from exc
        out.append(v)
    return out


def restart_policy(value: str) -> dict[str, Any]:
    name, _, count = value.partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise InvalidArgument(f"invalid restart policy {name!r}: "
                              "want no, always, on-failure[:N] or unless-stopped")
    policy: dict[str, Any] = {"Name": name}
    if count:
        if name != "on-failure":
            raise InvalidArgument(f"invalid restart policy {value!r}: only on-failure takes a count")
        policy["MaximumRetryCount"] = int(count)
    return policy


def go_duration_ns(value: str, flag: str) -> int:
    """A Go duration ("30s", "1m30s", "500ms", "0") in nanoseconds, as the docker CLI's flags."""
    from pallet.units import go_duration_ns as parse

    try:
        return parse(value)
    except ValueError:
        raise InvalidArgument(f'invalid argument "{value}" for "{flag}" flag: '
                              f'time: invalid duration "{value}"') from None


def healthcheck(args: Namespace) -> dict[str, Any] | None:
    """Config.Healthcheck from the --health-* flags (cli/command/container/opts.go)."""
    durations = {key: go_duration_ns(getattr(args, flag), "--" + flag.replace("_", "-"))
                 for flag, key in (("health_interval", "Interval"), ("health_timeout", "Timeout"),
                                   ("health_start_period", "StartPeriod"),
                                   ("health_start_interval", "StartInterval"))
                 if getattr(args, flag) is not None}
    have = bool(args.health_cmd or any(durations.values()) or args.health_retries)
    if args.no_healthcheck:
        if have:
            raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    if not have:
        return None
    if args.health_retries is not None and args.health_retries < 0:
        raise InvalidArgument("--health-retries cannot be negative")
    hc: dict[str, Any] = {"Test": ["CMD-SHELL", args.health_cmd] if args.health_cmd else None}
    hc.update({k: durations.get(k, 0) for k in ("Interval", "Timeout", "StartPeriod", "StartInterval")})
    hc["Retries"] = args.health_retries or 0
    return hc


def devices(values: list[str]) -> list[dict[str, str]]:
    out = []
    for v in values:
        parts = v.split(":")
        src = parts[0]
        dst = parts[1] if len(parts) > 1 and parts[1].startswith("/") else src
        perms = parts[-1] if len(parts) > 1 and not parts[-1].startswith("/") else "rwm"
        out.append({"PathOnHost": src, "PathInContainer": dst, "CgroupPermissions": perms})
    return out


def mounts(values: list[str]) -> list[dict[str, Any]]:
    """--mount type=bind|volume|tmpfs,source=..,target=..[,readonly][,tmpfs-size=..]."""
    out = []
    for v in values:
        m: dict[str, Any] = {"Type": "volume"}
        for field in v.split(","):
            k, sep, val = field.partition("=")
            k = k.strip().lower()
            if k == "type":
                m["Type"] = val
            elif k in ("source", "src"):
                m["Source"] = val
            elif k in ("target", "destination", "dst"):
                m["Target"] = val
            elif k in ("readonly", "ro"):
                m["ReadOnly"] = (not sep) or val in ("1", "true")
            elif k == "bind-propagation":
                m.setdefault("BindOptions", {})["Propagation"] = val
            elif k == "volume-nocopy":
                m.setdefault("VolumeOptions", {})["NoCopy"] = (not sep) or val in ("1", "true")
            elif k == "tmpfs-size":
                m.setdefault("TmpfsOptions", {})["SizeBytes"] = ram_in_bytes(val)
            elif k == "tmpfs-mode":
                m.setdefault("TmpfsOptions", {})["Mode"] = int(val, 8)
            else:
                raise InvalidArgument(f"invalid --mount field {k!r} in {v!r}")
        if "Target" not in m:
            raise InvalidArgument(f"invalid --mount {v!r}: target is required")
        out.append(m)
    return out


def ports(values: list[str], exposed: list[str]) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    """-p [IP:][HOST:]CONTAINER[/PROTO] and --expose as ExposedPorts and PortBindings."""
    exp: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for e in exposed:
        port, _, proto = e.partition("/")
        exp[f"{port}/{proto or 'tcp'}"] = {}
    for v in values:
        spec, _, proto = v.partition("/")
        parts = spec.rsplit(":", 2)
        cport = parts[-1]
        hport = parts[-2] if len(parts) >= 2 else ""
        hip = parts[-3] if len(parts) == 3 else ""
        if "-" in cport:
            # docker CLI (nat.ParsePortSpec): a container range maps onto an equal host range,
            # or every port of it onto one host range (the daemon picks a free port in it)
            lo, _, hi = cport.partition("-")
            cports = [str(n) for n in range(int(lo), int(hi) + 1)]
            hlo, _, hhi = hport.partition("-")
            if hport and hhi and int(hhi) - int(hlo) == len(cports) - 1:
                hports = [str(int(hlo) + i) for i in range(len(cports))]
            else:
                hports = [hport] * len(cports)
        else:
            cports, hports = [cport], [hport]
        for cp, hp in zip(cports, hports):
            key = f"{cp}/{proto or 'tcp'}"
            exp[key] = {}
            bindings.setdefault(key, []).append({"HostIp": hip.strip("[]"), "HostPort": hp})
    return exp, bindings


def add_create_flags(p: argparse.ArgumentParser | Parser) -> None:
    """Docker's `create`/`run` flags (the subset Pallet maps; see the issue)."""
    a = p.add_argument
    lst: dict[str, Any] = {"action": "append", "default": []}
    a("--help", action="help", help="Print usage")
    a("--name", help="Assign a name to the container")
    a("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    a("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    a("-a", "--attach", **lst, choices=["stdin", "stdout", "stderr", "STDIN", "STDOUT", "STDERR"],
      help="Attach to STDIN, STDOUT or STDERR")
    a("-e", "--env", **lst, help="Set environment variables")
    a("--env-file", **lst, help="Read in a file of environment variables")
    a("-w", "--workdir", help="Working directory inside the container")
    a("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
    a("-h", "--hostname", help="Container host name")
    a("--domainname", help="Container NIS domain name")
    a("--entrypoint", help="Overwrite the default ENTRYPOINT of the image")
    a("-l", "--label", **lst, help="Set meta data on a container")
    a("-v", "--volume", **lst, help="Bind mount a volume (HOST:CONTAINER[:OPTS]) or an anonymous volume")
    a("--mount", **lst, help="Attach a filesystem mount to the container")
    a("--tmpfs", **lst, help="Mount a tmpfs directory (PATH[:OPTIONS])")
    a("--read-only", action="store_true", help="Mount the container's root filesystem as read only")
    a("-m", "--memory", help="Memory limit")
    a("--memory-swap", help="Swap limit equal to memory plus swap: '-1' to enable unlimited swap")
    a("--memory-reservation", help="Memory soft limit")
    a("--oom-kill-disable", action="store_true", help="Disable OOM Killer")
    a("--cpus", help="Number of CPUs")
    a("-c", "--cpu-shares", type=int, help="CPU shares (relative weight)")
    a("--cpu-period", type=int, help="Limit CPU CFS (Completely Fair Scheduler) period")
    a("--cpu-quota", type=int, help="Limit CPU CFS (Completely Fair Scheduler) quota")
    a("--cpuset-cpus", help="CPUs in which to allow execution (0-3, 0,1)")
    a("--cpuset-mems", help="MEMs in which to allow execution (0-3, 0,1)")
    a("--blkio-weight", type=int, help="Block IO (relative weight), between 10 and 1000, or 0 to disable")
    a("--pids-limit", type=int, help="Tune container pids limit (set -1 for unlimited)")
    a("--shm-size", help="Size of /dev/shm")
    a("--device", **lst, help="Add a host device to the container")
    a("--device-cgroup-rule", **lst, help="Add a rule to the cgroup allowed devices list")
    a("--cap-add", **lst, help="Add Linux capabilities")
    a("--cap-drop", **lst, help="Drop Linux capabilities")
    a("--privileged", action="store_true", help="Give extended privileges to this container")
    a("--security-opt", **lst, help="Security Options")
    a("--ulimit", **lst, help="Ulimit options")
    a("--sysctl", **lst, help="Sysctl options")
    a("--group-add", **lst, help="Add additional groups to join")
    a("--init", action="store_true", help="Run an init inside the container that forwards signals and reaps")
    a("--network", "--net", help="Connect a container to a network (bridge, host, none, container:<id>, "
      "or a network's name)")
    a("--network-alias", "--net-alias", **lst, help="Add network-scoped alias for the container")
    a("--ip", help="IPv4 address (e.g., 172.30.100.104)")
    a("--ip6", help="IPv6 address (e.g., 2001:db8::33)")
    a("--mac-address", help="Container MAC address (e.g., 92:d0:c6:0a:29:33)")
    a("--link", **lst, help="Add link to another container")
    a("--dns-search", **lst, help="Set custom DNS search domains")
    a("--dns-option", "--dns-opt", **lst, help="Set DNS options")
    a("-P", "--publish-all", action="store_true", help="Publish all exposed ports to random ports")
    a("-p", "--publish", **lst, help="Publish a container's port(s) to the host")
    a("--expose", **lst, help="Expose a port or a range of ports")
    a("--add-host", **lst, help="Add a custom host-to-IP mapping (host:ip)")
    a("--dns", **lst, help="Set custom DNS servers")
    a("--restart", help="Restart policy to apply when a container exits (default \"no\")")
    a("--health-cmd", help="Command to run to check health")
    a("--health-interval", help="Time between running the check (ms|s|m|h) (default 0s)")
    a("--health-timeout", help="Maximum time to allow one check to run (ms|s|m|h) (default 0s)")
    a("--health-retries", type=int, help="Consecutive failures needed to report unhealthy")
    a("--health-start-period", help="Start period for the container to initialize before starting "
      "health-retries countdown (ms|s|m|h) (default 0s)")
    a("--health-start-interval", help="Time between running the check during the start period "
      "(ms|s|m|h) (default 0s)")
    a("--no-healthcheck", action="store_true", help="Disable any container-specified HEALTHCHECK")
    a("--stop-signal", help="Signal to stop the container")
    a("--stop-timeout", type=int, help="Timeout (in seconds) to stop a container")
    a("--runtime", help="Runtime to use for this container")
    a("--log-driver", help="Logging driver for the container")
    a("--log-opt", **lst, help="Log driver options")
    a("--ipc", help="IPC mode to use")
    a("--pid", help="PID namespace to use")
    a("--uts", help="UTS namespace to use")
    a("--userns", help="User namespace to use (host, auto, auto:size=N)")
    a("--systemd", choices=("true", "false", "always"),
      help="Run the container in systemd mode (podman's flag; default true: when the command is an init)")
    a("--cgroupns", help="Cgroup namespace to use (host|private)")
    a("--cgroup-parent", help="Optional parent cgroup for the container")
    a("--platform", help="Set platform if server is multi-platform capable")
    a("--rm", action="store_true", help="Automatically remove the container when it exits")
    a("image", metavar="IMAGE")
    a("command", nargs=REMAINDER, metavar="COMMAND [ARG...]")


def build_parser(prog: str = "pallet run", *, run: bool = True) -> Parser:
    """The parser of `run` (and `create`, run=False): argparse's calls, read by pallet.cli.args's
    fast path; help and errors come from argparse with pallet's HelpFormatter."""
    desc = "Create and run a new container from an image" if run else "Create a new container"
    p = Parser(prog=prog, description=desc, add_help=False,
               usage=f"{prog} [OPTIONS] IMAGE [COMMAND] [ARG...]")
    if run:
        p.add_argument("-d", "--detach", action="store_true",
                       help="Run container in background and print container ID")
        p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
        p.add_argument("--sig-proxy", default="true", choices=["true", "false"],
                       help="Proxy received signals to the process (default true)")
    add_create_flags(p)
    return p


def create_request(args: Namespace, *, detach: bool = True) -> dict[str, Any]:
    """The ContainerCreateRequest body for parsed `run`/`create` flags (only what was set)."""
    attach = {s.lower() for s in args.attach}
    cfg: dict[str, Any] = {"Image": args.image}
    if detach:
        cfg.update(AttachStdin=False, AttachStdout=False, AttachStderr=False)
    else:  # docker run: stdout and stderr unless -a says otherwise; stdin with -i
        cfg.update(AttachStdin=args.interactive or "stdin" in attach,
                   AttachStdout="stdout" in attach if attach else True,
                   AttachStderr="stderr" in attach if attach else True)
    cfg.update(Tty=args.tty, OpenStdin=args.interactive,
               StdinOnce=args.interactive and not detach)
    if args.command:
        cfg["Cmd"] = args.command
    env = env_list(args.env, args.env_file)
    if env:
        cfg["Env"] = env
    if args.entrypoint is not None:
        cfg["Entrypoint"] = [args.entrypoint] if args.entrypoint else [""]
    for flag, key in (("workdir", "WorkingDir"), ("user", "User"), ("hostname", "Hostname"),
                      ("domainname", "Domainname"), ("stop_signal", "StopSignal"),
                      ("stop_timeout", "StopTimeout")):
        if getattr(args, flag) is not None:
            cfg[key] = getattr(args, flag)
    if args.label:
        cfg["Labels"] = key_values(args.label, "label")
    health = healthcheck(args)
    if health is not None:
        cfg["Healthcheck"] = health
    hc: dict[str, Any] = {}
    binds: list[str] = []
    volumes: dict[str, Any] = {}
    for v in args.volume:
        if ":" in v:
            binds.append(v)
        else:  # an anonymous volume
            volumes[v] = {}
    if binds:
        hc["Binds"] = binds
    if volumes:
        cfg["Volumes"] = volumes
    if args.mount:
        hc["Mounts"] = mounts(args.mount)
    if args.tmpfs:
        hc["Tmpfs"] = {t.partition(":")[0]: t.partition(":")[2] for t in args.tmpfs}
    exposed, bindings = ports(args.publish, args.expose)
    if exposed:
        cfg["ExposedPorts"] = exposed
    if bindings:
        hc["PortBindings"] = bindings
    if args.read_only:
        hc["ReadonlyRootfs"] = True
    if args.memory is not None:
        hc["Memory"] = ram_in_bytes(args.memory)
    if args.memory_swap is not None:
        hc["MemorySwap"] = _memory(args.memory_swap)
    if args.memory_reservation is not None:
        hc["MemoryReservation"] = ram_in_bytes(args.memory_reservation)
    if args.oom_kill_disable:
        hc["OomKillDisable"] = True
    if args.cpus is not None:
        hc["NanoCpus"] = nano_cpus(args.cpus)
    for flag, key in (("cpu_shares", "CpuShares"), ("cpu_period", "CpuPeriod"), ("cpu_quota", "CpuQuota"),
                      ("cpuset_cpus", "CpusetCpus"), ("cpuset_mems", "CpusetMems"),
                      ("blkio_weight", "BlkioWeight"), ("pids_limit", "PidsLimit"),
                      ("runtime", "Runtime"), ("ipc", "IpcMode"), ("pid", "PidMode"), ("uts", "UTSMode"),
                      ("userns", "UsernsMode"), ("cgroupns", "CgroupnsMode"),
                      ("cgroup_parent", "CgroupParent"), ("network", "NetworkMode")):
        if getattr(args, flag) is not None:
            hc[key] = getattr(args, flag)
    if args.shm_size is not None:
        hc["ShmSize"] = ram_in_bytes(args.shm_size)
    if args.device:
        hc["Devices"] = devices(args.device)
    for flag, key in (("device_cgroup_rule", "DeviceCgroupRules"), ("cap_add", "CapAdd"),
                      ("cap_drop", "CapDrop"), ("group_add", "GroupAdd"), ("add_host", "ExtraHosts"),
                      ("dns", "Dns"), ("dns_search", "DnsSearch"), ("dns_option", "DnsOptions")):
        if getattr(args, flag):
            hc[key] = list(getattr(args, flag))
    if args.publish_all:
        hc["PublishAllPorts"] = True
    if args.link:
        hc["Links"] = list(args.link)
    if args.mac_address:
        # the docker CLI sends both: Config.MacAddress for daemons before API 1.44, and the
        # endpoint's MacAddress below (the daemon checks they agree)
        cfg["MacAddress"] = args.mac_address
    if args.network_alias or args.ip or args.ip6 or args.mac_address:
        # NetworkingConfig for the --network network (the docker CLI: aliases and --ip only on
        # a user-defined network; the daemon says so otherwise)
        ep: dict[str, Any] = {}
        if args.network_alias:
            ep["Aliases"] = list(args.network_alias)
        if args.ip or args.ip6:
            ep["IPAMConfig"] = {k: v for k, v in (("IPv4Address", args.ip), ("IPv6Address", args.ip6)) if v}
        if args.mac_address:
            ep["MacAddress"] = args.mac_address
        cfg["NetworkingConfig"] = {"EndpointsConfig": {args.network or "default": ep}}
    if args.privileged:
        hc["Privileged"] = True
    if args.security_opt:
        hc["SecurityOpt"] = security_opts(args.security_opt)
    if args.ulimit:
        hc["Ulimits"] = ulimits(args.ulimit)
    if args.sysctl:
        hc["Sysctls"] = key_values(args.sysctl, "sysctl")
    if args.init:
        hc["Init"] = True
    if args.systemd is not None:
        hc["Systemd"] = args.systemd  # a Pallet extension of HostConfig (engine/sysinit.py)
    if args.restart is not None:
        hc["RestartPolicy"] = restart_policy(args.restart)
    if args.log_driver is not None or args.log_opt:
        hc["LogConfig"] = {"Type": args.log_driver or "", "Config": key_values(args.log_opt, "log-opt")}
    if args.rm:
        hc["AutoRemove"] = True
    if args.tty:
        # The terminal's size at create, as the docker CLI sends it (HostConfig.ConsoleSize).
        try:
            size = os.get_terminal_size(1)
            hc["ConsoleSize"] = [size.lines, size.columns]
        except OSError:
            pass
    cfg["HostConfig"] = hc
    return cfg


def _pull(client: Client, image: str) -> None:
    """What `docker run` does for a missing image: pull it, progress on stderr (pallet pull's
    display, with the stored registry login)."""
    from pallet.cli.commands.login import auth_header
    from pallet.cli.commands.pull import show_progress

    if "@" in image:
        repo, tag = image.split("@", 1)
    else:
        slash, colon = image.rfind("/"), image.rfind(":")
        repo, tag = (image[:colon], image[colon + 1:]) if colon > slash else (image, "latest")
    resp = client.request("POST", "/images/create", params={"fromImage": repo, "tag": tag},
                          headers=auth_header(image))
    show_progress(resp.iter_json(), sys.stderr)


def create(client: Client, args: Namespace, body: dict[str, Any], *,
           meanwhile: Callable[[], object] | None = None) -> str:
    """POST /containers/create (pulling a missing image as docker does); prints the daemon's
    warnings; returns the id. `meanwhile` runs while the daemon creates the container."""
    params = {"name": args.name, "platform": args.platform}
    try:
        pending = client.send("POST", "/containers/create", body=body, params=params)
        if meanwhile is not None:
            meanwhile()
        result = pending.response().json()
    except NotFound as exc:
        if "image" not in str(exc).lower():
            raise
        print(f"Unable to find image '{_tagged(args.image)}' locally", file=sys.stderr)
        _pull(client, args.image)
        result = client.post_json("/containers/create", body, params=params)
    for w in result.get("Warnings") or []:
        print(f"WARNING: {w}", file=sys.stderr)
    return str(result["Id"])


def _tagged(image: str) -> str:
    """The reference with `:latest` when it names no tag or digest, as the docker CLI prints it
    (reference.TagNameOnly)."""
    return image if "@" in image or ":" in image.rsplit("/", 1)[-1] else image + ":latest"


def start_error_status(message: str) -> int:
    """cli/command/container/run.go runStartContainerErr."""
    if any(s in message for s in ("executable file not found", "no such file or directory",
                                  "system cannot find the file specified")):
        return 127
    if "permission denied" in message or "is a directory" in message:
        return 126
    return 125


def report(prog: str, exc: BaseException) -> None:
    from pallet.cli.commands.container import error_line

    verb = prog.split()[-1]
    print(f"pallet: {error_line(exc)}\nSee '{prog} --help'." if verb in ("run", "create")
          else error_line(exc), file=sys.stderr)


def _proxy_signals(client: Client, cid: str) -> None:
    """--sig-proxy: signals the CLI gets go to the container (docker's ForwardAllSignals).
    Through `_signal`, the C module: `signal.py` builds its enums at import (~0.8 ms)."""
    import _signal

    from pallet.cli.commands.container import path

    names = {getattr(_signal, name): name for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT",
                                                         "SIGUSR1", "SIGUSR2")}

    def forward(signum: int, _frame: object) -> None:
        try:
            client.request("POST", path(cid, "/kill"), params={"signal": names[signum]}).read()
        except PalletError:
            pass

    for sig in names:
        _signal.signal(sig, forward)


def _import_foreground() -> None:
    """Load what the foreground part needs (the stream pump, select, signals: ~2-3 ms) while the
    daemon creates the container, instead of after its answer."""
    import _signal  # noqa: F401
    import select  # noqa: F401

    from pallet.cli.commands import attach  # noqa: F401


def attach_start_wait(client: Client, cid: str, *, tty: bool, stdin: bool, auto_remove: bool,
                      detach_keys: str | None, sig_proxy: bool = True, prog: str = "pallet run",
                      outputs: bool = True) -> int:
    """docker run's foreground part: wait registered first (next-exit, or removed with --rm),
    attach, start, proxy the streams, then the container's status."""
    from pallet.cli.commands import attach
    from pallet.cli.commands.container import path

    waiter = client.send("POST", path(cid, "/wait"),
                         params={"condition": "removed" if auto_remove else "next-exit"})
    h = None
    if stdin or outputs:
        # While the daemon arms the wait: the two requests overlap instead of taking a round
        # trip each (the docker CLI too runs its attach and its wait side by side).
        h = client.hijack("POST", path(cid, "/attach"), params={
            "stream": True, "stdin": stdin, "stdout": outputs, "stderr": outputs, "detachKeys": detach_keys})
    waiter.answered(1.0)  # dockerd answers the headers once the wait is registered
    try:
        client.request("POST", path(cid, "/start")).read()
    except PalletError as exc:
        if h is not None:
            h.close()
        report(prog, exc)
        waiter.close()
        return start_error_status(str(exc))
    if tty:
        attach.follow_resize(client, path(cid, "/resize"))
    elif sig_proxy:
        _proxy_signals(client, cid)
    if h is not None:
        keys = b""
        if stdin and tty and os.isatty(0):
            keys = attach.parse_detach_keys(detach_keys or attach.DEFAULT_DETACH_KEYS)
        with attach.RawTerminal(0, enabled=tty and stdin):
            finished = attach.pump(h, tty=tty, stdin=stdin, detach_keys=keys)
        if not finished:
            waiter.close()
            return 0
    try:
        result = waiter.response().json() or {}
    except PalletError as exc:
        report(prog, exc)
        return 125
    if (result.get("Error") or {}).get("Message"):
        print(f"pallet: Error response from daemon: {result['Error']['Message']}", file=sys.stderr)
        return 125
    return int(result.get("StatusCode") or 0)


def main(ctx: Context, argv: list[str], prog: str = "pallet run") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.tty and args.interactive and not os.isatty(0):
        print("the input device is not a TTY", file=sys.stderr)
        return 1
    try:
        body = create_request(args, detach=args.detach)
    except InvalidArgument as exc:
        print(f"pallet: {exc}\nSee '{prog} --help'.", file=sys.stderr)
        return 125
    client = ctx.client()
    try:
        cid = create(client, args, body, meanwhile=None if args.detach else _import_foreground)
    except PalletError as exc:
        report(prog, exc)
        return 125
    if args.detach:
        from pallet.cli.commands.container import path

        try:
            client.request("POST", path(cid, "/start")).read()
        except PalletError as exc:
            report(prog, exc)
            return start_error_status(str(exc))
        print(cid)
        return 0
    return attach_start_wait(client, cid, tty=args.tty, stdin=bool(body["AttachStdin"]),
                             auto_remove=args.rm, detach_keys=args.detach_keys,
                             sig_proxy=args.sig_proxy == "true", prog=prog,
                             outputs=bool(body["AttachStdout"] or body["AttachStderr"]))
