"""From Docker's ContainerConfig + HostConfig and an image config to an OCI runtime spec.

Pure functions (no file system but what the caller passes in), table-tested in
tests/unit/engine/test_bundle.py. `validate_create` checks a create request and fills Docker's
defaults; `build_spec` turns the validated request into config.json for the runtime.

What is mapped, following moby's daemon/oci_linux.go:
- process: Entrypoint/Cmd (the request's Entrypoint drops the image's Cmd), Env over the
  image's, WorkingDir, User (numeric, or a name looked up through the caller's `lookup_user`),
  Tty, Ulimits, CapAdd/CapDrop ("ALL" too), SecurityOpt no-new-privileges, Init (catatonit).
  noNewPrivileges is off unless asked for, as in Docker (setuid programs in images work).
- linux.resources: Memory, MemorySwap (Docker's total memory+swap; 0 with Memory = twice
  Memory), MemoryReservation, OomKillDisable, NanoCpus (as quota/period 100 ms), CpuShares,
  CpuQuota, CpuPeriod, CpusetCpus/Mems, PidsLimit, BlkioWeight, Devices.
- mounts: Binds "src:dst[:opts]" (an absolute host path, or a volume name), Mounts of type bind,
  volume and tmpfs, Config.Volumes (the image's and the request's: anonymous volumes), Tmpfs,
  ShmSize, /etc/hostname, /etc/hosts, /etc/resolv.conf. Volumes are the engine's: `volume_requests`
  says which a container needs, and `build_spec` gets their host directories by destination.
- Privileged: every capability, no seccomp filter, no masked or read-only paths, /sys and
  cgroups writable, every device allowed in the devices cgroup; host device nodes are not
  populated in /dev (use Devices for those).
- NetworkMode: "host" drops the network namespace; every other mode keeps it, and the engine
  (pallet.engine.networking) points it at the namespace the network driver made.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from pallet.errors import InvalidArgument, NotSupported

CATATONIT = "/usr/bin/catatonit"
INIT_PATH = "/sbin/docker-init"
DEFAULT_SHM = 64 * 1024 * 1024
MIN_MEMORY = 6 * 1024 * 1024  # Docker's linuxMinMemory
CPU_PERIOD = 100_000
NETWORK_NONE_MODES = ("", "none", "default", "bridge")

ALL_CAPS = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
    "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)

ULIMITS = {
    "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
    "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE",
    "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS",
    "rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING",
    "stack": "RLIMIT_STACK", "as": "RLIMIT_AS",
}

_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # Docker's local volume names
_BIND_OPTS = {"ro", "rw", "z", "Z", "nocopy", "rprivate", "private", "rshared", "shared", "rslave", "slave"}

UserLookup = Callable[[str], tuple[int, int, list[int]]]


def _caps(names: list[str] | None, what: str) -> list[str]:
    out = []
    for n in names or []:
        up = str(n).upper()
        if up == "ALL":
            out.append("ALL")
            continue
        cap = up if up.startswith("CAP_") else "CAP_" + up
        if cap not in ALL_CAPS:
            raise InvalidArgument(f"HostConfig.{what}: unknown capability {n!r}")
        out.append(cap)
    return out


def is_volume_source(src: str) -> bool:
    """A Binds source that names a volume (not an absolute host path)."""
    return not os.path.isabs(src)


def parse_bind(spec: str) -> dict[str, Any]:
    """One HostConfig.Binds entry "src:dst[:opts]" as an OCI mount. A source that is not an
    absolute path names a volume: the mount's source is then that name (build_spec swaps in
    the volume's directory)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise InvalidArgument(f"invalid bind mount spec {spec!r}: want src:dst[:options]")
    src, dst = parts[0], parts[1]
    opts = parts[2].split(",") if len(parts) == 3 and parts[2] else []
    if is_volume_source(src) and not _VOLUME_NAME.match(src):
        raise InvalidArgument(f'invalid bind mount {spec!r}: "{src}" includes invalid characters for a local '
                              'volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended '
                              "to pass a host directory, use absolute path")
    if not os.path.isabs(dst) or os.path.normpath(dst) == "/":
        raise InvalidArgument(f"invalid bind mount {spec!r}: the destination must be an absolute path, not /")
    for o in opts:
        if o not in _BIND_OPTS:
            raise InvalidArgument(f"invalid bind mount {spec!r}: unknown option {o!r}")
    options = ["rbind", "ro" if "ro" in opts else "rw"]
    options += [o for o in opts if o in ("rprivate", "private", "rshared", "shared", "rslave", "slave")] or \
        ["rprivate"]
    return {"destination": os.path.normpath(dst), "type": "bind",
            "source": src if is_volume_source(src) else os.path.normpath(src), "options": options}


def tmpfs_mount(dst: str, opts: str = "") -> dict[str, Any]:
    if not os.path.isabs(dst) or os.path.normpath(dst) == "/":
        raise InvalidArgument(f"invalid tmpfs destination {dst!r}: it must be an absolute path, not /")
    given = [o for o in (opts or "").split(",") if o]
    base = [o for o in ("noexec", "nosuid", "nodev") if o not in given and o.removeprefix("no") not in given]
    return {"destination": os.path.normpath(dst), "type": "tmpfs", "source": "tmpfs", "options": base + given}


def _mount_from_api(m: Mapping[str, Any]) -> dict[str, Any]:
    """A HostConfig.Mounts entry (the --mount form) of type bind, volume or tmpfs. A volume's
    source is its name ("" for an anonymous one), as parse_bind's."""
    typ, src, dst = m.get("Type", "volume"), m.get("Source", ""), m.get("Target", "")
    if typ == "bind":
        if not os.path.isabs(src or ""):
            raise InvalidArgument(f"Mounts: bind source {src!r} must be an absolute path")
        if not os.path.exists(src):
            raise InvalidArgument(f"Mounts: bind source path does not exist: {src}")
        opts = "ro" if m.get("ReadOnly") else "rw"
        prop = (m.get("BindOptions") or {}).get("Propagation") or "rprivate"
        return parse_bind(f"{src}:{dst}:{opts},{prop}")
    if typ == "tmpfs":
        t = m.get("TmpfsOptions") or {}
        topts: list[str] = []
        if t.get("SizeBytes"):
            topts.append(f"size={int(t['SizeBytes'])}")
        if t.get("Mode"):
            topts.append(f"mode={int(t['Mode']):o}")
        if m.get("ReadOnly"):
            topts.append("ro")
        return tmpfs_mount(dst, ",".join(topts))
    if typ == "volume":
        if src and not _VOLUME_NAME.match(src):
            raise InvalidArgument(f"Mounts: invalid volume name {src!r}")
        driver = ((m.get("VolumeOptions") or {}).get("DriverConfig") or {}).get("Name") or "local"
        if driver != "local":
            raise NotSupported(f"Mounts: volume driver {driver!r} is not supported (local is)")
        if not os.path.isabs(dst or "") or os.path.normpath(dst) == "/":
            raise InvalidArgument(f"Mounts: invalid volume target {dst!r}: want an absolute path, not /")
        return {"destination": os.path.normpath(dst), "type": "bind", "source": src or "",
                "options": ["rbind", "ro" if m.get("ReadOnly") else "rw", "rprivate"]}
    raise NotSupported(f"Mounts: type {typ!r} is not supported yet (bind, volume and tmpfs are)")


def volume_requests(image_config: Mapping[str, Any], cfg: Mapping[str, Any],
                    hc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The volumes a validated (cfg, hc) needs, in mount order: {"Name" ("" = a new anonymous
    one), "Destination", "RW"}. Named Binds, Mounts of type volume, then Config.Volumes (the
    image's and the request's) whose destination no Binds/Mounts/Tmpfs entry covers."""
    out: list[dict[str, Any]] = []
    taken: set[str] = set()
    user = [parse_bind(b) for b in hc.get("Binds") or []]
    user += [_mount_from_api(m) for m in hc.get("Mounts") or []]
    for m in user:
        taken.add(m["destination"])
        if m["type"] == "bind" and is_volume_source(m["source"]):
            out.append({"Name": m["source"], "Destination": m["destination"], "RW": "ro" not in m["options"]})
    taken |= {os.path.normpath(d) for d in (hc.get("Tmpfs") or {})}
    for vols in (image_config.get("Volumes"), cfg.get("Volumes")):
        for dst in vols or {}:
            if not isinstance(dst, str) or not os.path.isabs(dst) or os.path.normpath(dst) == "/":
                raise InvalidArgument(f"Config.Volumes: invalid destination {dst!r}")
            dst = os.path.normpath(dst)
            if dst not in taken:
                taken.add(dst)
                out.append({"Name": "", "Destination": dst, "RW": True})
    return out


def _int(hc: Mapping[str, Any], key: str) -> int:
    v = hc.get(key)
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int):
        raise InvalidArgument(f"HostConfig.{key}: want an integer, got {v!r}")
    return v


def validate_create(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Config, HostConfig) of a create request, checked, with Docker's defaults filled in.
    Nothing here touches the host but the existence check of bind sources."""
    if not isinstance(config, Mapping):
        raise InvalidArgument("the create request must be a JSON object")
    cfg = copy.deepcopy({k: v for k, v in config.items() if k != "HostConfig"})
    hc = copy.deepcopy(dict(config.get("HostConfig") or {}))
    if not cfg.get("Image") or not isinstance(cfg["Image"], str):
        raise InvalidArgument("Config.Image: an image is required")
    for key in ("Cmd", "Entrypoint"):
        v = cfg.get(key)
        if isinstance(v, str):
            cfg[key] = ["/bin/sh", "-c", v] if key == "Entrypoint" else [v]
        elif v is not None and not (isinstance(v, list) and all(isinstance(a, str) for a in v)):
            raise InvalidArgument(f"Config.{key}: want a list of strings")
    for e in cfg.get("Env") or []:
        if not isinstance(e, str) or not e or e.startswith("="):
            raise InvalidArgument(f"Config.Env: invalid entry {e!r}")
    if cfg.get("StopSignal"):
        from pallet.engine.runtimes import signal_number

        signal_number(cfg["StopSignal"])
    if cfg.get("StopTimeout") is not None and not isinstance(cfg["StopTimeout"], int):
        raise InvalidArgument("Config.StopTimeout: want an integer")
    labels = cfg.get("Labels") or {}
    if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
        raise InvalidArgument("Config.Labels: want a map of strings")
    for key in ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuQuota",
                "CpuPeriod", "BlkioWeight", "ShmSize"):
        _int(hc, key)
    mem = _int(hc, "Memory")
    if 0 < mem < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    swap = _int(hc, "MemorySwap")
    if mem and swap > 0 and swap < mem:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    if swap > 0 and not mem:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
    if _int(hc, "NanoCpus") and (_int(hc, "CpuQuota") or _int(hc, "CpuPeriod")):
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if _int(hc, "NanoCpus") < 0:
        raise InvalidArgument("HostConfig.NanoCpus: must not be negative")
    if _int(hc, "ShmSize") < 0:
        raise InvalidArgument("HostConfig.ShmSize: must not be negative")
    for b in hc.get("Binds") or []:
        if not isinstance(b, str):
            raise InvalidArgument(f"HostConfig.Binds: invalid entry {b!r}")
        parse_bind(b)
    for m in hc.get("Mounts") or []:
        _mount_from_api(m)
    for dst, opts in (hc.get("Tmpfs") or {}).items():
        tmpfs_mount(dst, opts)
    _caps(hc.get("CapAdd"), "CapAdd")
    _caps(hc.get("CapDrop"), "CapDrop")
    mode = hc.get("NetworkMode") or "default"
    if not isinstance(mode, str) or not re.match(r"^(container:.+|[a-zA-Z0-9][a-zA-Z0-9_.-]*)$", mode):
        # default, bridge, host, none, container:<id>, or a network's name or id (engine/networking.py
        # resolves it)
        raise InvalidArgument(f"HostConfig.NetworkMode {mode!r}: invalid network mode")
    hc["NetworkMode"] = mode
    for key in ("PidMode", "IpcMode", "UTSMode", "CgroupnsMode"):
        if (hc.get(key) or "") not in ("", "private", "shareable"):
            raise NotSupported(f"HostConfig.{key} {hc[key]!r} is not supported yet")
    from pallet.engine import sysinit, userns  # UsernsMode: host/auto (engine/userns.py); Systemd

    userns.parse_mode(hc.get("UsernsMode"))
    sysinit.validate(hc)
    for opt in hc.get("SecurityOpt") or []:
        _security_opt(opt)
    for u in hc.get("Ulimits") or []:
        if u.get("Name") not in ULIMITS:
            raise InvalidArgument(f"HostConfig.Ulimits: unknown limit {u.get('Name')!r}")
        if int(u.get("Soft", 0)) > int(u.get("Hard", 0)):
            raise InvalidArgument(f"HostConfig.Ulimits: {u['Name']} soft limit is above the hard limit")
    for key in (hc.get("Sysctls") or {}):
        _check_sysctl(key, mode)
    log = hc.get("LogConfig") or {}
    ltype = log.get("Type") or "json-file"
    if ltype not in ("json-file", "none"):
        raise NotSupported(f"HostConfig.LogConfig.Type {ltype!r} is not supported (json-file, none)")
    lopts = dict(log.get("Config") or {})
    from pallet.engine.logs import DEFAULT_MAX_FILES, DEFAULT_MAX_SIZE, parse_size

    for k in lopts:
        if k not in ("max-size", "max-file", "compress", "labels", "env", "tag"):
            raise InvalidArgument(f"HostConfig.LogConfig.Config: unknown option {k!r} for json-file")
    try:
        parse_size(lopts.get("max-size", DEFAULT_MAX_SIZE))
        files = int(lopts.get("max-file", DEFAULT_MAX_FILES))
    except ValueError as exc:
        raise InvalidArgument(f"HostConfig.LogConfig.Config: {exc}") from None
    if files < 1:
        raise InvalidArgument("HostConfig.LogConfig.Config: max-file must be at least 1")
    hc["LogConfig"] = {"Type": ltype, "Config": lopts}
    if hc.get("Init") and not os.path.exists(CATATONIT):
        raise NotSupported(f"HostConfig.Init needs an init binary ({CATATONIT}, Debian's catatonit)")
    from pallet.engine.restart import validate as validate_restart_policy

    hc["RestartPolicy"] = validate_restart_policy(hc.get("RestartPolicy"))
    if hc.get("AutoRemove") and (hc.get("RestartPolicy") or {}).get("Name") not in (None, "", "no"):
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
    hc.setdefault("ShmSize", DEFAULT_SHM)
    if not hc["ShmSize"]:
        hc["ShmSize"] = DEFAULT_SHM
    if mem and not swap:
        hc["MemorySwap"] = 2 * mem  # Docker: swap defaults to the memory limit again
    return cfg, hc


def log_options(hc: Mapping[str, Any]) -> tuple[str, int, int]:
    """(type, max size, max files) of a validated HostConfig.LogConfig."""
    from pallet.engine.logs import DEFAULT_MAX_FILES, DEFAULT_MAX_SIZE, parse_size

    log = hc.get("LogConfig") or {}
    opts = log.get("Config") or {}
    return (log.get("Type") or "json-file", parse_size(opts.get("max-size", DEFAULT_MAX_SIZE)),
            int(opts.get("max-file", DEFAULT_MAX_FILES)))


def _security_opt(opt: str) -> tuple[str, str]:
    key, sep, value = opt.partition("=")
    if not sep:
        key, sep, value = opt.partition(":")
    if key == "no-new-privileges":
        if value not in ("", "true", "false"):
            raise InvalidArgument(f"invalid --security-opt {opt!r}")
        return key, value or "true"
    if key == "seccomp":
        if value == "unconfined":
            return key, value
        if value.lstrip().startswith("{"):
            return key, value  # a profile, inlined by the client
        raise InvalidArgument(f"--security-opt seccomp: want 'unconfined' or a JSON profile, got {value!r}")
    if key == "systempaths" and value == "unconfined":
        return key, value
    if key in ("apparmor", "label"):
        return key, value  # accepted and ignored: this host has neither AppArmor nor SELinux here
    raise InvalidArgument(f"invalid --security-opt {opt!r}")


def _check_sysctl(key: str, network_mode: str) -> None:
    ipc = key.startswith("fs.mqueue.") or key in (
        "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
        "kernel.shmmni", "kernel.shm_rmid_forced")
    if ipc or key in ("kernel.domainname", "kernel.hostname"):
        return
    if key.startswith("net."):
        if network_mode == "host":
            raise InvalidArgument(f"sysctl {key!r} is not allowed in the host network namespace")
        return
    raise InvalidArgument(f"sysctl {key!r} is not allowed: it is not namespaced")


def _seccomp_from_docker(profile: dict[str, Any]) -> dict[str, Any]:
    """A Docker seccomp profile (defaultAction, syscalls[{names, action, args}]) as linux.seccomp."""
    out: dict[str, Any] = {"defaultAction": profile.get("defaultAction", "SCMP_ACT_ERRNO")}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    arches = profile.get("architectures") or [a["architecture"] for a in profile.get("archMap") or []]
    if arches:
        out["architectures"] = arches
    out["syscalls"] = [{k: v for k, v in s.items() if k in ("names", "action", "args", "errnoRet")}
                       for s in profile.get("syscalls") or [] if s.get("names")]
    return out


def command_of(image_config: Mapping[str, Any], cfg: Mapping[str, Any]) -> list[str]:
    """Docker's rule: the request's Entrypoint replaces the image's and drops its Cmd."""
    if cfg.get("Entrypoint") is not None:
        entry = [a for a in cfg["Entrypoint"]] if cfg["Entrypoint"] != [""] else []
        cmd = list(cfg.get("Cmd") or [])
    else:
        entry = list(image_config.get("Entrypoint") or [])
        cmd = list(cfg["Cmd"]) if cfg.get("Cmd") else list(image_config.get("Cmd") or [])
    argv = entry + cmd
    if not argv:
        raise InvalidArgument("no command specified")
    return argv


def merged_env(image_config: Mapping[str, Any], cfg: Mapping[str, Any]) -> list[str]:
    from pallet.runtime.spec import DEFAULT_ENV

    env: dict[str, str] = {}
    for e in [*DEFAULT_ENV[:1], *(image_config.get("Env") or []), *(cfg.get("Env") or [])]:
        env[e.split("=", 1)[0]] = e
    if cfg.get("Tty") and "TERM" not in env:
        env["TERM"] = "TERM=xterm"
    return list(env.values())


def numeric_user(user: str) -> tuple[int, int, list[int]] | None:
    uid, _, gid = user.partition(":")
    if uid.isdigit() and (not gid or gid.isdigit()):
        return int(uid), int(gid or 0), []
    return None


def build_spec(image_config: Mapping[str, Any], cfg: Mapping[str, Any], hc: Mapping[str, Any], *,
               cid: str, rootfs: str, cgroup_parent: str, hostname: str = "",
               files: Mapping[str, str] | None = None, lookup_user: UserLookup | None = None,
               host_hostname: str = "", volumes: Mapping[str, str] | None = None) -> dict[str, Any]:
    """config.json for a validated (cfg, hc) of an image; `files` maps /etc/hostname, /etc/hosts,
    /etc/resolv.conf to host files to bind; `lookup_user` resolves a user name in the rootfs;
    `volumes` maps the destination of every volume of `volume_requests` to its host directory."""
    from pallet.runtime.spec import default_spec

    argv = command_of(image_config, cfg)
    tty = bool(cfg.get("Tty"))
    spec = default_spec(args=argv, terminal=tty, rootfs=rootfs)
    proc = spec["process"]
    linux = spec["linux"]
    proc["env"] = merged_env(image_config, cfg)
    proc["cwd"] = cfg.get("WorkingDir") or image_config.get("WorkingDir") or "/"
    if not os.path.isabs(proc["cwd"]):
        raise InvalidArgument(f"Config.WorkingDir {proc['cwd']!r}: must be an absolute path")
    user = cfg.get("User") or image_config.get("User") or ""
    if user:
        found = numeric_user(user)
        if found is None:
            if lookup_user is None:
                raise InvalidArgument(f"Config.User {user!r}: only numeric uid[:gid] can be resolved here")
            found = lookup_user(user)
        uid, gid, groups = found
        proc["user"] = {"uid": uid, "gid": gid, **({"additionalGids": groups} if groups else {})}
    proc["noNewPrivileges"] = False
    spec["root"]["readonly"] = bool(hc.get("ReadonlyRootfs"))
    net_mode = hc.get("NetworkMode") or "default"
    if net_mode == "host":
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
        spec["hostname"] = cfg.get("Hostname") or host_hostname or "localhost"
    else:
        spec["hostname"] = cfg.get("Hostname") or hostname or cid[:12]
    if cfg.get("Domainname"):
        spec["domainname"] = cfg["Domainname"]
    linux["cgroupsPath"] = f"{cgroup_parent.rstrip('/')}/{cid}"

    # capabilities
    privileged = bool(hc.get("Privileged"))
    caps = set(proc["capabilities"]["bounding"])
    if privileged:
        caps = set(ALL_CAPS)
    add, drop = _caps(hc.get("CapAdd"), "CapAdd"), _caps(hc.get("CapDrop"), "CapDrop")
    if "ALL" in drop:
        caps = set()
    caps -= set(drop)
    caps |= set(ALL_CAPS) if "ALL" in add else set(add) - {"ALL"}
    proc["capabilities"] = {k: sorted(caps) for k in ("bounding", "effective", "permitted")}

    # security options
    seccomp_default = linux.get("seccomp")
    for opt in hc.get("SecurityOpt") or []:
        key, value = _security_opt(opt)
        if key == "no-new-privileges":
            proc["noNewPrivileges"] = value == "true"
        elif key == "seccomp":
            if value == "unconfined":
                linux.pop("seccomp", None)
            else:
                import json

                linux["seccomp"] = _seccomp_from_docker(json.loads(value))
        elif key == "systempaths":
            linux["maskedPaths"], linux["readonlyPaths"] = [], []
    if privileged:
        linux.pop("seccomp", None)
        linux["maskedPaths"], linux["readonlyPaths"] = [], []
    if linux.get("seccomp") is seccomp_default and add:
        # Docker's default profile opens syscalls by capability (CAP_SYS_ADMIN: mount...).
        from pallet.runtime.profiles import default_seccomp

        linux["seccomp"] = default_seccomp(sorted(caps))

    # rlimits
    rl = {r["type"]: r for r in proc.get("rlimits") or []}
    for u in hc.get("Ulimits") or []:
        name = ULIMITS[u["Name"]]
        rl[name] = {"type": name, "soft": int(u.get("Soft", 0)), "hard": int(u.get("Hard", 0))}
    proc["rlimits"] = list(rl.values())
    if tty:
        # HostConfig.ConsoleSize [height, width] (API 1.42+: the docker CLI sends the terminal's
        # size at create, so the shell starts with the right one); 24x80 otherwise.
        size = hc.get("ConsoleSize") or [0, 0]
        height, width = (int(size[0]), int(size[1])) if len(size) == 2 else (0, 0)
        proc["consoleSize"] = {"height": height or 24, "width": width or 80}

    # resources
    res: dict[str, Any] = {}
    devices_rules: list[dict[str, Any]] = [{"allow": True, "access": "rwm"}] if privileged else \
        list(linux["resources"]["devices"])
    mem: dict[str, Any] = {}
    if hc.get("Memory"):
        mem["limit"] = int(hc["Memory"])
    if hc.get("MemorySwap"):
        mem["swap"] = int(hc["MemorySwap"])
    if hc.get("MemoryReservation"):
        mem["reservation"] = int(hc["MemoryReservation"])
    if hc.get("OomKillDisable"):
        mem["disableOOMKiller"] = True
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    if hc.get("NanoCpus"):
        cpu["period"] = CPU_PERIOD
        cpu["quota"] = int(hc["NanoCpus"]) * CPU_PERIOD // 10**9
    if hc.get("CpuShares"):
        cpu["shares"] = int(hc["CpuShares"])
    if hc.get("CpuQuota"):
        cpu["quota"] = int(hc["CpuQuota"])
    if hc.get("CpuPeriod"):
        cpu["period"] = int(hc["CpuPeriod"])
    if hc.get("CpusetCpus"):
        cpu["cpus"] = str(hc["CpusetCpus"])
    if hc.get("CpusetMems"):
        cpu["mems"] = str(hc["CpusetMems"])
    if cpu:
        res["cpu"] = cpu
    pids = hc.get("PidsLimit")
    if pids and pids > 0:
        res["pids"] = {"limit": int(pids)}
    if hc.get("BlkioWeight"):
        res["blockIO"] = {"weight": int(hc["BlkioWeight"])}
    devices: list[dict[str, Any]] = []
    for d in hc.get("Devices") or []:
        devices.append(device_entry(d))
        devices_rules.append({"allow": True, "type": devices[-1]["type"], "major": devices[-1]["major"],
                              "minor": devices[-1]["minor"],
                              "access": d.get("CgroupPermissions") or "rwm"})
    if devices:
        linux["devices"] = devices
    res["devices"] = devices_rules
    linux["resources"] = res
    if hc.get("Sysctls"):
        linux["sysctl"] = {str(k): str(v) for k, v in hc["Sysctls"].items()}

    # mounts
    mounts: list[dict[str, Any]] = []
    for m in spec["mounts"]:
        if m["destination"] == "/dev/shm":
            m = {**m, "options": [o for o in m["options"] if not o.startswith("size=")]
                 + [f"size={int(hc.get('ShmSize') or DEFAULT_SHM)}"]}
        if privileged and m["type"] in ("sysfs", "cgroup"):
            m = {**m, "options": [o for o in m["options"] if o != "ro"] + ["rw"]}
        mounts.append(m)
    vols = dict(volumes or {})
    user_mounts = [parse_bind(b) for b in hc.get("Binds") or []]
    user_mounts += [_mount_from_api(m) for m in hc.get("Mounts") or []]
    for i, m in enumerate(user_mounts):
        if m["type"] == "bind" and is_volume_source(m["source"]):
            if m["destination"] not in vols:
                raise InvalidArgument(f"no volume for the mount at {m['destination']}")
            user_mounts[i] = {**m, "source": vols[m["destination"]]}
    user_mounts += [tmpfs_mount(d, o) for d, o in (hc.get("Tmpfs") or {}).items()]
    taken = {m["destination"] for m in user_mounts}
    if len(taken) != len(user_mounts):
        raise InvalidArgument("Duplicate mount point: two mounts share a destination")
    for dst, src in vols.items():
        if dst not in taken:  # Config.Volumes: anonymous volumes
            taken.add(dst)
            user_mounts.append({"destination": dst, "type": "bind", "source": src,
                                "options": ["rbind", "rw", "rprivate"]})
    mounts = [m for m in mounts if m["destination"] not in taken]
    for dst, src in (files or {}).items():
        if dst not in taken:
            mounts.append({"destination": dst, "type": "bind", "source": src,
                           "options": ["rbind", "rprivate", "ro" if hc.get("ReadonlyRootfs") else "rw"]})
    mounts += user_mounts
    if hc.get("Init"):
        mounts.append({"destination": INIT_PATH, "type": "bind", "source": CATATONIT,
                       "options": ["rbind", "ro", "rprivate"]})
        proc["args"] = [INIT_PATH, "--", *argv]
    spec["mounts"] = mounts
    spec["annotations"] = {"org.opencontainers.image.stopSignal": str(cfg.get("StopSignal") or "SIGTERM")}
    return spec


def device_entry(d: Mapping[str, Any]) -> dict[str, Any]:
    """A HostConfig.Devices entry as linux.devices (the host node's type and numbers)."""
    import stat

    host = d.get("PathOnHost") or ""
    inside = d.get("PathInContainer") or host
    try:
        st = os.stat(host)
    except OSError as exc:
        raise InvalidArgument(f"HostConfig.Devices: {host!r}: {exc.strerror}") from None
    if stat.S_ISCHR(st.st_mode):
        typ = "c"
    elif stat.S_ISBLK(st.st_mode):
        typ = "b"
    else:
        raise InvalidArgument(f"HostConfig.Devices: {host!r} is not a device")
    return {"path": inside, "type": typ, "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
            "fileMode": st.st_mode & 0o777, "uid": 0, "gid": 0}


def resources_update(update: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A /containers/{id}/update body as (linux.resources for `runtime update`, the HostConfig keys
    to store)."""
    allowed = ("Memory", "MemorySwap", "MemoryReservation", "NanoCpus", "CpuShares", "CpuQuota", "CpuPeriod",
               "CpusetCpus", "CpusetMems", "PidsLimit", "BlkioWeight", "RestartPolicy")
    stored = {k: v for k, v in update.items() if k in allowed and v not in (None, "")}
    unknown = [k for k, v in update.items() if k not in allowed and v not in (None, "", 0, [], {})]
    if unknown:
        raise InvalidArgument(f"update: unsupported fields {', '.join(sorted(unknown))}")
    if (stored.get("RestartPolicy") or {}).get("Name"):  # dockerd: an empty Name keeps the policy
        from pallet.engine.restart import validate as validate_restart_policy

        stored["RestartPolicy"] = validate_restart_policy(stored["RestartPolicy"])
    else:
        stored.pop("RestartPolicy", None)
    if stored.get("Memory") and 0 < stored["Memory"] < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if stored.get("NanoCpus") and (stored.get("CpuQuota") or stored.get("CpuPeriod")):
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    res: dict[str, Any] = {}
    mem = {k2: int(stored[k]) for k, k2 in (("Memory", "limit"), ("MemorySwap", "swap"),
                                           ("MemoryReservation", "reservation")) if stored.get(k)}
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    if stored.get("NanoCpus"):
        cpu.update(period=CPU_PERIOD, quota=int(stored["NanoCpus"]) * CPU_PERIOD // 10**9)
    for k, k2 in (("CpuShares", "shares"), ("CpuQuota", "quota"), ("CpuPeriod", "period")):
        if stored.get(k):
            cpu[k2] = int(stored[k])
    for k, k2 in (("CpusetCpus", "cpus"), ("CpusetMems", "mems")):
        if stored.get(k):
            cpu[k2] = str(stored[k])
    if cpu:
        res["cpu"] = cpu
    if stored.get("PidsLimit"):
        res["pids"] = {"limit": int(stored["PidsLimit"])}
    if stored.get("BlkioWeight"):
        res["blockIO"] = {"weight": int(stored["BlkioWeight"])}
    return res, stored
