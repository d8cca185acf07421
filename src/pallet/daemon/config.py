"""palletd's configuration: command-line flags merged with a daemon.json-like file.

File format (JSON object, keys as in dockerd's daemon.json where one exists):

    {"hosts": ["unix:///run/pallet/pallet.sock", "tcp://0.0.0.0:2376"],
     "tlsverify": true, "tlscacert": "...", "tlscert": "...", "tlskey": "...",
     "insecure-tcp-loopback": false, "data-root": "/var/lib/pallet", "exec-root": "/run/pallet",
     "pidfile": "/run/pallet/palletd.pid", "group": "pallet", "log-level": "info", "debug": false,
     "default-runtime": "pallet-runtime", "runtimes": {"name": {"path": "/usr/bin/x", "runtimeArgs": []}},
     "labels": ["k=v"], "live-restore": false, "cgroup-parent": "/pallet",
     "insecure-registries": ["registry.lan:5000", "10.0.0.0/8"]}

Merging follows dockerd (daemon/config.MergeDaemonConfigurations): a setting given both as a
flag and in the file is an error naming every such key, and unknown keys are errors, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from typing import Any

from pallet.errors import InvalidArgument

DEFAULT_CONFIG = "/etc/pallet/daemon.json"
DEFAULT_DATA_ROOT = "/var/lib/pallet"
DEFAULT_EXEC_ROOT = "/run/pallet"
DEFAULT_GROUP = "pallet"
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


@dataclass(frozen=True)
class DaemonConfig:
    hosts: tuple[str, ...] = ()
    tlsverify: bool = False
    tlscacert: str | None = None
    tlscert: str | None = None
    tlskey: str | None = None
    insecure_tcp_loopback: bool = False
    data_root: str = DEFAULT_DATA_ROOT
    exec_root: str = DEFAULT_EXEC_ROOT
    pidfile: str | None = None
    group: str = DEFAULT_GROUP
    log_level: str = "info"
    debug: bool = False
    default_runtime: str = "pallet-runtime"
    runtimes: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    live_restore: bool = False
    cgroup_parent: str = "/pallet"
    image_store_max_size: int = 0    # bytes; 0: no limit (the automatic image-store policy)
    image_store_min_free: int = 0    # bytes free on the data root's file system; 0: no watermark
    # --userns=auto (engine/userns.py): the mode of UsernsMode "" and the pool of host ids, ranges
    # of userns_size from userns_base, userns_count of them.
    userns_default: str = "host"
    userns_base: int = 10000
    userns_size: int = 2000
    userns_count: int = 1000
    # Registries spoken to over plain HTTP besides loopback (host[:port] or CIDR), as dockerd's
    # insecure-registries (pallet.registry.client.transport).
    insecure_registries: tuple[str, ...] = ()
    # dockerd's --ip-forward: set net.ipv4.ip_forward=1 once a container joins a non-internal
    # bridge network, so that its outbound NAT works (pallet.network.manager).
    ip_forward: bool = True
    # dockerd's --mtu: the MTU of the default bridge network's interfaces (0: Docker's 1500).
    # User-defined networks take -o com.docker.network.driver.mtu (pallet.network.manager).
    mtu: int = 1500
    # The per-container monitor (pallet.engine.containers.MONITORS): "conmon", "pallet" (the
    # Python one), or "" for conmon when it is installed.
    monitor: str = ""

    @property
    def socket_default(self) -> str:
        return f"unix://{os.path.join(self.exec_root, 'pallet.sock')}"

    @property
    def effective_hosts(self) -> tuple[str, ...]:
        return self.hosts or (self.socket_default,)

    @property
    def effective_pidfile(self) -> str:
        return self.pidfile or os.path.join(self.exec_root, "palletd.pid")


# JSON key -> expected JSON type; the field is the key with "-" as "_".
_TYPES: dict[str, type] = {
    "hosts": list, "tlsverify": bool, "tlscacert": str, "tlscert": str, "tlskey": str,
    "insecure-tcp-loopback": bool, "data-root": str, "exec-root": str, "pidfile": str, "group": str,
    "log-level": str, "debug": bool, "default-runtime": str, "runtimes": dict, "labels": list,
    "live-restore": bool, "cgroup-parent": str, "image-store-max-size": int, "image-store-min-free": int,
    "userns-default": str, "userns-base": int, "userns-size": int, "userns-count": int,
    "insecure-registries": list, "ip-forward": bool, "monitor": str,
    "mtu": int,
}
assert {k.replace("-", "_") for k in _TYPES} == {f.name for f in fields(DaemonConfig)}


def load_file(path: str, *, required: bool) -> dict[str, Any]:
    """The settings in `path` as {field name: value}; {} when the file is absent and not required."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = f.read()
    except FileNotFoundError as exc:
        if required:
            raise InvalidArgument(f"config file {path} does not exist") from exc
        return {}
    except OSError as exc:
        raise InvalidArgument(f"cannot read config file {path}: {exc.strerror}") from exc
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"config file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"config file {path} must hold a JSON object")
    out: dict[str, Any] = {}
    unknown = sorted(k for k in data if k not in _TYPES)
    if unknown:
        raise InvalidArgument(f"config file {path}: unknown directive(s): {', '.join(unknown)}")
    for key, value in data.items():
        want = _TYPES[key]
        if not isinstance(value, want) or (isinstance(value, list) and
                                           not all(isinstance(v, str) for v in value)):
            raise InvalidArgument(f"config file {path}: {key} must be a {_TYPE_NAMES[want]}")
        out[key.replace("-", "_")] = tuple(value) if isinstance(value, list) else value
    return out


_TYPE_NAMES = {list: "list of strings", bool: "boolean", str: "string", dict: "JSON object", int: "number"}


def merge(flags: dict[str, Any], file_settings: dict[str, Any], path: str) -> DaemonConfig:
    """Flags (only those given on the command line) and file settings into one config."""
    both = sorted(k for k in flags if k in file_settings)
    if both:
        names = ", ".join(f"{k.replace('_', '-')} (flag: {flags[k]!r}, file: {file_settings[k]!r})"
                          for k in both)
        raise InvalidArgument(f"these settings are given both as a flag and in {path}: {names}")
    config = DaemonConfig(**{**file_settings, **flags})
    validate(config)
    return config


def validate(config: DaemonConfig) -> None:
    from pallet.engine.userns import UsernsSettings  # checks the mode and the pool's bounds

    UsernsSettings(default=config.userns_default, base=config.userns_base, size=config.userns_size,
                   count=config.userns_count)
    if config.log_level not in LOG_LEVELS:
        raise InvalidArgument(f"log-level {config.log_level!r}: want one of {', '.join(LOG_LEVELS)}")
    if isinstance(config.mtu, bool) or not (config.mtu == 0 or 68 <= config.mtu <= 65535):
        raise InvalidArgument(f"invalid default MTU: {config.mtu}: want 68..65535 (0: 1500)")
    if config.monitor not in ("", "conmon", "pallet"):
        raise InvalidArgument(f"monitor {config.monitor!r}: want conmon or pallet")
    for name in ("data_root", "exec_root"):
        value = getattr(config, name)
        if not os.path.isabs(value):
            raise InvalidArgument(f"{name.replace('_', '-')} must be an absolute path, not {value!r}")
    for rname, spec in config.runtimes.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("path"), str):
            raise InvalidArgument(f"runtimes.{rname} must be an object with a \"path\" string")
