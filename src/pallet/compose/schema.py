"""Validation of a Compose file as loaded from YAML (after interpolation), before normalisation.

Written by hand rather than with `jsonschema` and a schema of our own: the official
compose-spec JSON schema is not available offline, a schema we wrote would be as much code as
these checks, and jsonschema's messages ("'x' is not of type 'object'") name the failing value
but not the key path the way Compose users know it. Each error reads

    compose.yaml: services.web.ports[0]: must be a string or a number

(file, key path, reason), as docker compose's "validating compose.yaml: services.web.ports.0
..." does. Keys of the Compose Specification that Pallet does not implement are refused with
NotSupported rather than ignored, so a security or resource setting is never silently lost;
keys starting with `x-` (extensions) are allowed where the specification allows them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pallet.compose.merge import Override, Reset
from pallet.errors import InvalidArgument, NotSupported

Check = Callable[[Any, str], None]


class ValidationError(InvalidArgument):
    """An invalid Compose file; the message holds the key path and the reason."""


def _fail(path: str, reason: str) -> ValidationError:
    return ValidationError(f"{path}: {reason}")


def _untag(value: Any) -> Any:
    return value.value if isinstance(value, Override) else value


def _string(v: Any, path: str) -> None:
    if not isinstance(v, str):
        raise _fail(path, f"must be a string, not {_kind(v)}")


def _scalar(v: Any, path: str) -> None:
    if v is not None and (isinstance(v, dict | list)):
        raise _fail(path, f"must be a string, number, boolean or null, not {_kind(v)}")


def _str_or_number(v: Any, path: str) -> None:
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise _fail(path, f"must be a string or a number, not {_kind(v)}")


def _integer(v: Any, path: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        if isinstance(v, str) and re.fullmatch(r"-?\d+", v):
            return
        raise _fail(path, f"must be an integer, not {_kind(v)}")


def _boolean(v: Any, path: str) -> None:
    if not isinstance(v, bool) and v not in ("true", "false", "True", "False"):
        raise _fail(path, f"must be a boolean, not {_kind(v)}")


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: f"the string {v!r}",
            list: "a list", dict: "a mapping"}.get(type(v), type(v).__name__)


def _list_of(item: Check, unique: bool = False) -> Check:
    def check(v: Any, path: str) -> None:
        if not isinstance(v, list):
            raise _fail(path, f"must be a list, not {_kind(v)}")
        for i, x in enumerate(v):
            item(_untag(x), f"{path}[{i}]")
        if unique:
            seen = [x for x in v if isinstance(x, str | int | float)]
            dups = sorted({str(x) for x in seen if seen.count(x) > 1})
            if dups:
                raise _fail(path, f"items must be unique, {', '.join(dups)} appears more than once")
    return check


def _str_or_list(v: Any, path: str) -> None:
    if isinstance(v, str):
        return
    _list_of(_string)(v, path)


def _list_or_dict(v: Any, path: str) -> None:
    """`KEY=VALUE` strings, or a mapping of scalars (environment, labels, sysctls...)."""
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                raise _fail(f"{path}.{k}", "keys must be strings")
            _scalar(_untag(x), f"{path}.{k}")
        return
    if isinstance(v, list):
        _list_of(_string, unique=True)(v, path)
        return
    raise _fail(path, f"must be a list or a mapping, not {_kind(v)}")


def _duration(v: Any, path: str) -> None:
    from pallet.compose.units import duration_ns

    try:
        duration_ns(v)
    except ValueError as exc:
        raise _fail(path, str(exc)) from None


def _size(v: Any, path: str) -> None:
    from pallet.compose.units import ram_in_bytes

    try:
        ram_in_bytes(v)
    except ValueError as exc:
        raise _fail(path, str(exc)) from None


def _cpus(v: Any, path: str) -> None:
    try:
        if isinstance(v, bool) or float(v) <= 0:
            raise ValueError
    except (TypeError, ValueError):
        raise _fail(path, f"must be a positive number of CPUs, not {_kind(v)}") from None


def _mapping(fields: dict[str, Check], *, required: tuple[str, ...] = (), extensions: bool = True,
             unsupported: frozenset[str] = frozenset()) -> Check:
    def check(v: Any, path: str) -> None:
        if not isinstance(v, dict):
            raise _fail(path, f"must be a mapping, not {_kind(v)}")
        for key, value in v.items():
            where = f"{path}.{key}" if path else str(key)
            if not isinstance(key, str):
                raise _fail(where, "keys must be strings")
            if extensions and key.startswith("x-"):
                continue
            if key in unsupported:
                raise NotSupported(f"{where}: not supported by pallet compose")
            if key not in fields:
                raise _fail(path or "(top level)", f"additional property {key!r} is not allowed")
            if isinstance(value, Reset):
                continue
            fields[key](_untag(value), where)
        for key in required:
            if key not in v:
                raise _fail(path, f"{key!r} is required")
    return check


def _one_of(*checks: Check, reason: str) -> Check:
    def check(v: Any, path: str) -> None:
        for c in checks:
            try:
                c(v, path)
                return
            except ValidationError:
                continue
        raise _fail(path, reason)
    return check


def _enum(*values: str) -> Check:
    def check(v: Any, path: str) -> None:
        if v not in values:
            raise _fail(path, f"must be one of {', '.join(values)}, not {_kind(v)}")
    return check


def _restart(v: Any, path: str) -> None:
    if not isinstance(v, str) or not re.fullmatch(r"no|always|unless-stopped|on-failure(:\d+)?", v):
        raise _fail(path, f"must be no, always, unless-stopped or on-failure[:max-retries], not {_kind(v)}")


def _anything(v: Any, path: str) -> None:
    return None


def _command(v: Any, path: str) -> None:
    if v is None or isinstance(v, str):
        return
    if not isinstance(v, list):
        raise _fail(path, f"must be a string or a list of strings, not {_kind(v)}")
    _list_of(_string)(v, path)


_BUILD = _one_of(_string, _mapping({
    "context": _string, "dockerfile": _string, "args": _list_or_dict, "target": _string,
    "labels": _list_or_dict, "cache_from": _list_of(_string), "network": _string,
    "no_cache": _boolean, "pull": _boolean, "tags": _list_of(_string), "shm_size": _size,
    "extra_hosts": _list_or_dict, "platforms": _list_of(_string),
}, unsupported=frozenset({"secrets", "ssh", "cache_to", "additional_contexts", "isolation",
                          "privileged", "ulimits", "dockerfile_inline", "entitlements"})),
    reason="must be a string (the context) or a mapping with context, dockerfile, args, target")

_PORT_LONG = _mapping({"target": _integer, "published": _str_or_number, "host_ip": _string,
                       "protocol": _enum("tcp", "udp", "sctp"), "mode": _enum("host", "ingress"),
                       "name": _string, "app_protocol": _string}, required=("target",))
_PORTS = _list_of(_one_of(_str_or_number, _PORT_LONG,
                          reason="must be a string, a number, or a mapping with target (and "
                                 "published, host_ip, protocol)"))

_VOLUME_LONG = _mapping({
    "type": _enum("volume", "bind", "tmpfs"), "source": _string, "target": _string,
    "read_only": _boolean, "consistency": _string,
    "bind": _mapping({"propagation": _enum("private", "rprivate", "shared", "rshared", "slave", "rslave"),
                      "create_host_path": _boolean, "selinux": _enum("z", "Z")}),
    "volume": _mapping({"nocopy": _boolean, "subpath": _string}),
    "tmpfs": _mapping({"size": _size, "mode": _integer}),
}, required=("type",))
_VOLUMES = _list_of(_one_of(_string, _VOLUME_LONG,
                            reason="must be a string (SOURCE:TARGET[:MODE]) or a mapping with type, "
                                   "source, target"))

_HEALTHCHECK = _mapping({
    "test": _str_or_list, "interval": _duration, "timeout": _duration, "retries": _integer,
    "start_period": _duration, "start_interval": _duration, "disable": _boolean,
})

def _depends_map(v: Any, path: str) -> None:
    if not isinstance(v, dict):
        raise _fail(path, "must be a mapping")
    entry = _mapping({"condition": _enum("service_started", "service_healthy",
                                         "service_completed_successfully"),
                      "required": _boolean, "restart": _boolean})
    for name, spec in v.items():
        entry(_untag(spec), f"{path}.{name}")


_DEPENDS_ON = _one_of(_list_of(_string, unique=True), _depends_map,
                      reason="must be a list of service names or a mapping of service name to "
                             "{condition, required, restart}")


def _service_networks(v: Any, path: str) -> None:
    if isinstance(v, list):
        _list_of(_string, unique=True)(v, path)
        return
    if not isinstance(v, dict):
        raise _fail(path, f"must be a list or a mapping, not {_kind(v)}")
    entry = _mapping({"aliases": _list_of(_string), "ipv4_address": _string, "ipv6_address": _string,
                      "priority": _integer, "mac_address": _string, "link_local_ips": _list_of(_string),
                      "driver_opts": _list_or_dict, "gw_priority": _integer})
    for name, spec in v.items():
        if spec is not None:
            entry(_untag(spec), f"{path}.{name}")


def _ulimits(v: Any, path: str) -> None:
    if not isinstance(v, dict):
        raise _fail(path, f"must be a mapping, not {_kind(v)}")
    entry = _mapping({"soft": _integer, "hard": _integer}, required=("soft", "hard"))
    for name, spec in v.items():
        spec = _untag(spec)
        if isinstance(spec, int | str) and not isinstance(spec, bool):
            _integer(spec, f"{path}.{name}")
        else:
            entry(spec, f"{path}.{name}")


_DEPLOY = _mapping({
    "replicas": _integer, "mode": _enum("replicated", "global"), "labels": _list_or_dict,
    "resources": _mapping({
        "limits": _mapping({"cpus": _cpus, "memory": _size, "pids": _integer},
                           unsupported=frozenset({"devices"})),
        "reservations": _mapping({"cpus": _cpus, "memory": _size}, unsupported=frozenset({"devices",
                                                                                          "generic_resources"})),
    }),
    "restart_policy": _mapping({"condition": _enum("none", "on-failure", "any"), "delay": _duration,
                                "max_attempts": _integer, "window": _duration}),
}, unsupported=frozenset({"endpoint_mode", "placement", "update_config", "rollback_config"}))

SERVICE_FIELDS: dict[str, Check] = {
    "image": _string, "build": _BUILD, "command": _command, "entrypoint": _command,
    "environment": _list_or_dict, "env_file": _one_of(_string, _list_of(_one_of(
        _string, _mapping({"path": _string, "required": _boolean, "format": _string}, required=("path",)),
        reason="must be a path or a mapping with path")), reason="must be a path or a list of paths"),
    "ports": _PORTS, "expose": _list_of(_str_or_number), "volumes": _VOLUMES,
    "networks": _service_networks, "depends_on": _DEPENDS_ON, "healthcheck": _HEALTHCHECK,
    "restart": _restart, "deploy": _DEPLOY, "user": _string, "working_dir": _string,
    "labels": _list_or_dict, "hostname": _string, "domainname": _string, "init": _boolean,
    "stop_signal": _string, "stop_grace_period": _duration, "cap_add": _list_of(_string, unique=True),
    "cap_drop": _list_of(_string, unique=True), "read_only": _boolean, "tmpfs": _str_or_list,
    "ulimits": _ulimits, "sysctls": _list_or_dict, "devices": _list_of(_one_of(
        _string, _mapping({"source": _string, "target": _string, "permissions": _string},
                          required=("source",)), reason="must be HOST[:CONTAINER[:PERMISSIONS]]")),
    "extra_hosts": _list_or_dict, "dns": _str_or_list, "dns_search": _str_or_list,
    "profiles": _list_of(_string, unique=True), "container_name": _string, "tty": _boolean,
    "stdin_open": _boolean, "privileged": _boolean, "network_mode": _string, "scale": _integer,
    "pull_policy": _enum("always", "never", "missing", "if_not_present", "build"),
    "mem_limit": _size, "cpus": _cpus, "pids_limit": _integer, "shm_size": _size,
    "platform": _string,
}

# Compose Specification service keys Pallet refuses rather than ignores (see the docstring).
UNSUPPORTED_SERVICE_KEYS = frozenset({
    "secrets", "configs", "extends", "links", "external_links", "volumes_from", "ipc", "pid",
    "cgroup", "cgroup_parent", "security_opt", "logging", "userns_mode", "isolation", "storage_opt",
    "device_cgroup_rules", "group_add", "oom_kill_disable", "oom_score_adj", "mem_reservation",
    "mem_swappiness", "memswap_limit", "cpu_shares", "cpu_quota", "cpu_period", "cpu_rt_runtime",
    "cpu_rt_period", "cpuset", "cpu_count", "cpu_percent", "blkio_config", "credential_spec",
    "annotations", "attach", "develop", "gpus", "mac_address", "runtime", "uts", "post_start",
    "pre_stop", "provider", "label_file", "models", "use_api_socket", "dns_opt",
})

_SERVICE = _mapping(SERVICE_FIELDS, unsupported=UNSUPPORTED_SERVICE_KEYS)

_NETWORK = _mapping({
    "driver": _string, "driver_opts": _list_or_dict, "external": _one_of(_boolean, _mapping(
        {"name": _string}), reason="must be a boolean"), "name": _string, "labels": _list_or_dict,
    "internal": _boolean, "attachable": _boolean, "enable_ipv6": _boolean, "enable_ipv4": _boolean,
    "ipam": _mapping({"driver": _string, "config": _list_of(_mapping({
        "subnet": _string, "ip_range": _string, "gateway": _string, "aux_addresses": _list_or_dict})),
        "options": _list_or_dict}),
})
_VOLUME = _mapping({
    "driver": _string, "driver_opts": _list_or_dict, "external": _one_of(_boolean, _mapping(
        {"name": _string}), reason="must be a boolean"), "name": _string, "labels": _list_or_dict,
})


def _named_map(entry: Check) -> Check:
    def check(v: Any, path: str) -> None:
        if v is None:
            return
        if not isinstance(v, dict):
            raise _fail(path, f"must be a mapping, not {_kind(v)}")
        for name, spec in v.items():
            bad = path == "services" and not re.fullmatch(r"[a-zA-Z0-9._-]+", str(name))
            if not isinstance(name, str) or bad:
                raise _fail(f"{path}.{name}", "invalid name: use letters, digits, '.', '_' and '-'")
            if spec is None and path != "services":
                continue
            if isinstance(spec, Reset):
                continue
            entry(_untag(spec), f"{path}.{name}")
    return check


TOP_LEVEL: dict[str, Check] = {
    "version": _str_or_number, "name": _string, "services": _named_map(_SERVICE),
    "networks": _named_map(_NETWORK), "volumes": _named_map(_VOLUME), "include": _anything,
}

_TOP = _mapping(TOP_LEVEL, unsupported=frozenset({"secrets", "configs", "include", "models"}))


def validate(doc: Any, source: str) -> None:
    """Raise ValidationError `source: key.path: reason` (NotSupported for unimplemented keys)."""
    if doc is None:
        raise ValidationError(f"{source}: empty compose file")
    try:
        _TOP(doc, "")
    except ValidationError as exc:
        raise ValidationError(f"{source}: {exc}") from None
    except NotSupported as exc:
        raise NotSupported(f"{source}: {exc}") from None
