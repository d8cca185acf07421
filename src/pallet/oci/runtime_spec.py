"""Validation of an OCI runtime config.json, before anything is created.

The runtime keeps the config as the parsed JSON dict (the spec's own vocabulary, no second
model to keep in sync); this module checks it once and names the offending field, e.g.
``linux.namespaces[2].type: unknown namespace type 'foo'``. Subsystems that own a section
(cgroups for linux.resources, seccomp, capabilities) validate that section themselves.
Spec: ../shared/specs/oci-runtime/config.md and config-linux.md (v1.2).
"""

from __future__ import annotations

from pallet.errors import InvalidArgument, NotSupported

TYPE_CHECKING = False  # typing itself costs ~2 ms of start-up; mypy still reads the block below

if TYPE_CHECKING:
    from typing import Any

OCI_VERSION = "1.2.0"

# Namespace type -> (clone flag, /proc/<pid>/ns/<file>); flags from include/uapi/linux/sched.h.
NAMESPACES: dict[str, tuple[int, str]] = {
    "pid": (0x20000000, "pid"),
    "network": (0x40000000, "net"),
    "mount": (0x00020000, "mnt"),
    "ipc": (0x08000000, "ipc"),
    "uts": (0x04000000, "uts"),
    "user": (0x10000000, "user"),
    "cgroup": (0x02000000, "cgroup"),
    "time": (0x00000080, "time"),
}

CLOCKS = ("monotonic", "boottime")
# Container ids: [A-Za-z0-9][A-Za-z0-9_.+-]* (runc's). Checked with str methods, not `re`:
# every pallet-runtime command checks an id, and `re` costs ~4 ms of start-up (enum, functools).
_ID_FIRST = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_ID_CHARS = _ID_FIRST + "_.+-"


def check_id(container_id: str) -> None:
    """Container ids become directory names: refuse anything that could escape --root."""
    if (not isinstance(container_id, str) or not container_id or container_id[0] not in _ID_FIRST
            or container_id.strip(_ID_CHARS) or len(container_id) > 1024):
        raise InvalidArgument(f"invalid container id {container_id!r}: use letters, digits and _.+-")


def _type(where: str, value: Any, kind: type | tuple[type, ...], name: str) -> None:
    if isinstance(value, bool) and kind is int:
        raise InvalidArgument(f"{where}: expected {name}, got boolean")
    if not isinstance(value, kind):
        raise InvalidArgument(f"{where}: expected {name}, got {type(value).__name__}")


def _str_list(where: str, value: Any) -> None:
    _type(where, value, list, "an array of strings")
    for i, item in enumerate(value):
        _type(f"{where}[{i}]", item, str, "a string")


def _id_mappings(where: str, value: Any) -> None:
    _type(where, value, list, "an array")
    for i, m in enumerate(value):
        w = f"{where}[{i}]"
        _type(w, m, dict, "an object")
        for key in ("containerID", "hostID", "size"):
            if key not in m:
                raise InvalidArgument(f"{w}.{key}: required")
            _type(f"{w}.{key}", m[key], int, "an integer")
            if m[key] < 0:
                raise InvalidArgument(f"{w}.{key}: must not be negative")


def validate_config(config: Any) -> None:
    """Raise InvalidArgument (or NotSupported) naming the first bad field of a config.json."""
    _type("config.json", config, dict, "an object")
    if "ociVersion" not in config:
        raise InvalidArgument("ociVersion: required")
    _type("ociVersion", config["ociVersion"], str, "a string")
    if not config["ociVersion"].startswith("1."):
        raise NotSupported(f"ociVersion: {config['ociVersion']} is not supported (1.x is)")

    root = config.get("root")
    if root is None:
        raise InvalidArgument("root: required on Linux")
    _type("root", root, dict, "an object")
    _type("root.path", root.get("path"), str, "a string")
    if "readonly" in root:
        _type("root.readonly", root["readonly"], bool, "a boolean")

    if "hostname" in config:
        _type("hostname", config["hostname"], str, "a string")
    if "domainname" in config:
        _type("domainname", config["domainname"], str, "a string")

    for i, m in enumerate(config.get("mounts") or []):
        w = f"mounts[{i}]"
        _type(w, m, dict, "an object")
        _type(f"{w}.destination", m.get("destination"), str, "a string")
        # A relative destination is deprecated but allowed: relative to "/" (config.md, "Mounts").
        if not m["destination"]:
            raise InvalidArgument(f"{w}.destination: must not be empty")
        if "options" in m:
            _str_list(f"{w}.options", m["options"])
        binds = {"bind", "rbind"} & set(m.get("options") or [])
        if not m.get("type") and not binds:
            raise InvalidArgument(f"{w}.type: required unless options has bind or rbind")
        for key in ("uidMappings", "gidMappings"):
            if key in m:
                _id_mappings(f"{w}.{key}", m[key])

    process = config.get("process")
    if process is not None:
        validate_process(process, "process")

    linux = config.get("linux") or {}
    _type("linux", linux, dict, "an object")
    _validate_linux(linux, config)
    hooks = config.get("hooks") or {}
    _type("hooks", hooks, dict, "an object")
    for kind, entries in hooks.items():
        if kind not in ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
                        "poststop"):
            raise InvalidArgument(f"hooks.{kind}: unknown hook kind")
        _type(f"hooks.{kind}", entries, list, "an array")
        for i, h in enumerate(entries):
            _type(f"hooks.{kind}[{i}]", h, dict, "an object")
            _type(f"hooks.{kind}[{i}].path", h.get("path"), str, "a string")
            if not h["path"].startswith("/"):
                raise InvalidArgument(f"hooks.{kind}[{i}].path: must be absolute")
            if "timeout" in h:
                _type(f"hooks.{kind}[{i}].timeout", h["timeout"], int, "an integer")
                if h["timeout"] <= 0:
                    raise InvalidArgument(f"hooks.{kind}[{i}].timeout: must be greater than zero")


def validate_process(process: Any, where: str = "process") -> None:
    _type(where, process, dict, "an object")
    if "args" not in process and "commandLine" not in process:
        raise InvalidArgument(f"{where}.args: required")
    _str_list(f"{where}.args", process.get("args", []))
    if not process.get("args"):
        raise InvalidArgument(f"{where}.args: must name a program")
    if "env" in process:
        _str_list(f"{where}.env", process["env"])
    _type(f"{where}.cwd", process.get("cwd", "/"), str, "a string")
    if not process.get("cwd", "/").startswith("/"):
        raise InvalidArgument(f"{where}.cwd: must be an absolute path")
    user = process.get("user", {})
    _type(f"{where}.user", user, dict, "an object")
    for key in ("uid", "gid", "umask"):
        if key in user:
            _type(f"{where}.user.{key}", user[key], int, "an integer")
    if "additionalGids" in user:
        _type(f"{where}.user.additionalGids", user["additionalGids"], list, "an array")
    for key in ("terminal", "noNewPrivileges"):
        if key in process:
            _type(f"{where}.{key}", process[key], bool, "a boolean")
    if "oomScoreAdj" in process:
        _type(f"{where}.oomScoreAdj", process["oomScoreAdj"], int, "an integer")
        if not -1000 <= process["oomScoreAdj"] <= 1000:
            raise InvalidArgument(f"{where}.oomScoreAdj: must be within -1000..1000")
    for i, r in enumerate(process.get("rlimits") or []):
        w = f"{where}.rlimits[{i}]"
        _type(w, r, dict, "an object")
        _type(f"{w}.type", r.get("type"), str, "a string")
        if not r["type"].startswith("RLIMIT_"):
            raise InvalidArgument(f"{w}.type: unknown rlimit {r['type']!r}")
        for key in ("soft", "hard"):
            _type(f"{w}.{key}", r.get(key), int, "an integer")
        if r["soft"] > r["hard"]:
            raise InvalidArgument(f"{w}: soft limit {r['soft']} is above the hard limit {r['hard']}")
    if "consoleSize" in process:
        _type(f"{where}.consoleSize", process["consoleSize"], dict, "an object")


def _validate_linux(linux: dict, config: dict) -> None:
    seen: set[str] = set()
    for i, ns in enumerate(linux.get("namespaces") or []):
        w = f"linux.namespaces[{i}]"
        _type(w, ns, dict, "an object")
        t = ns.get("type")
        if t not in NAMESPACES:
            raise InvalidArgument(f"{w}.type: unknown namespace type {t!r}")
        if t in seen:
            raise InvalidArgument(f"{w}.type: namespace {t!r} listed twice")
        seen.add(t)
        if "path" in ns:
            _type(f"{w}.path", ns["path"], str, "a string")
    for key in ("hostname", "domainname"):
        if config.get(key) and "uts" not in seen:
            raise InvalidArgument(f"{key}: setting it needs a uts namespace (linux.namespaces)")
    for key in ("uidMappings", "gidMappings"):
        if key in linux:
            _id_mappings(f"linux.{key}", linux[key])
            if "user" not in seen:
                raise InvalidArgument(f"linux.{key}: mappings need a user namespace")
    if "user" in seen:
        user_ns = next(n for n in linux["namespaces"] if n["type"] == "user")
        if "path" not in user_ns and not (linux.get("uidMappings") and linux.get("gidMappings")):
            raise InvalidArgument("linux.uidMappings: a new user namespace needs uidMappings and gidMappings")
    offsets = linux.get("timeOffsets")
    if offsets is not None:
        _type("linux.timeOffsets", offsets, dict, "an object")
        if "time" not in seen:
            raise InvalidArgument("linux.timeOffsets: offsets need a time namespace")
        for clock, off in offsets.items():
            if clock not in CLOCKS:
                raise InvalidArgument(f"linux.timeOffsets.{clock}: unknown clock (monotonic, boottime)")
            _type(f"linux.timeOffsets.{clock}", off, dict, "an object")
    for i, d in enumerate(linux.get("devices") or []):
        w = f"linux.devices[{i}]"
        _type(w, d, dict, "an object")
        _type(f"{w}.path", d.get("path"), str, "a string")
        if d.get("type") not in ("c", "b", "u", "p"):
            raise InvalidArgument(f"{w}.type: must be one of c, b, u, p")
        if d["type"] != "p":
            for key in ("major", "minor"):
                _type(f"{w}.{key}", d.get(key), int, "an integer")
    for key in ("maskedPaths", "readonlyPaths"):
        if key in linux:
            _str_list(f"linux.{key}", linux[key])
    if "sysctl" in linux:
        _type("linux.sysctl", linux["sysctl"], dict, "an object")
        for k, v in linux["sysctl"].items():
            _type(f"linux.sysctl.{k}", v, str, "a string")
    prop = linux.get("rootfsPropagation")
    if prop is not None and prop not in ("shared", "slave", "private", "unbindable", "rshared", "rslave",
                                         "rprivate", "runbindable"):
        raise InvalidArgument(f"linux.rootfsPropagation: unknown propagation {prop!r}")
    if "cgroupsPath" in linux:
        _type("linux.cgroupsPath", linux["cgroupsPath"], str, "a string")
    for key in ("intelRdt", "personality"):
        if linux.get(key):
            raise NotSupported(f"linux.{key}: not supported by pallet-runtime")


def namespace_flags(linux: dict, new_only: bool = True) -> int:
    """The clone flags of the namespaces the container creates (those without a path)."""
    flags = 0
    for ns in linux.get("namespaces") or []:
        if not new_only or "path" not in ns:
            flags |= NAMESPACES[ns["type"]][0]
    return flags
