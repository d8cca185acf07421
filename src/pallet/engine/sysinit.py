"""System containers: a container whose pid 1 is an init (busybox init, systemd), as podman's --systemd.

`HostConfig.Systemd` is a Pallet extension of Docker's HostConfig (Docker has no such field; the
name and values are podman's `--systemd` flag, so `pallet run --systemd=always` reads as podman):

- "true" (the default, as podman's): system-container mode when the command is an init: its first
  word is /sbin/init, /usr/sbin/init or /usr/local/sbin/init (podman's list), or its base name is
  `systemd` or `init` (busybox images have /bin/init);
- "always": that mode whatever the command; "false": never.

What the mode gives (podman's libpod/container_internal_linux.go setupSystemd, and systemd's
"Container Interface", https://systemd.io/CONTAINER_INTERFACE/):
- writable tmpfs on /run, /run/lock and /tmp (and /var/log/journal for systemd): an init expects to
  own them and a read-only image must still boot;
- the container's cgroup writable through /sys/fs/cgroup inside its private cgroup namespace, so
  the init can make and manage a subtree (systemd puts each service in its own cgroup);
- `container=pallet` in the environment (systemd's detect-virt reads it; podman sets
  container=podman);
- the stop signal the init halts on, when neither the request nor the image chose one:
  systemd powers off on SIGRTMIN+3 (systemd(1), "Signals"; 37 on Linux/glibc, which Docker and
  podman use too), busybox init powers off on SIGUSR2 (init/init.c: SIGTERM means reboot, SIGUSR1
  halt, SIGUSR2 poweroff). Both then run their shutdown actions, stop every process and exit, and
  the container stops cleanly within the stop timeout instead of being SIGKILLed. An init we do not
  recognise gets SIGTERM (Docker's default).

`HostConfig.Init` (`--init`) is the other answer: Debian's statically linked catatonit (podman's
init) bind-mounted at /sbin/docker-init and put in front of the command (engine/bundle.py), a
reaper that forwards signals and reaps zombies. It does not combine with "always".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pallet.errors import InvalidArgument

SYSTEMD_VALUES = ("true", "false", "always")
INIT_PATHS = ("/sbin/init", "/usr/sbin/init", "/usr/local/sbin/init")
SIGRTMIN_3 = "37"        # SIGRTMIN+3: glibc's SIGRTMIN is 34 (signal(7)); the engine takes numbers
BUSYBOX_POWEROFF = "SIGUSR2"


def parse_systemd(value: Any) -> str:
    """HostConfig.Systemd: "", None, True/False or one of SYSTEMD_VALUES -> one of them."""
    if value in (None, ""):
        return "true"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.lower() in SYSTEMD_VALUES:
        return value.lower()
    raise InvalidArgument(f"HostConfig.Systemd {value!r}: want true, false or always")


def validate(hc: dict[str, Any]) -> None:
    """Check (and normalise) HostConfig.Systemd of a create request."""
    mode = parse_systemd(hc.get("Systemd"))
    if mode == "always" and hc.get("Init"):
        raise InvalidArgument("--systemd=always runs the image's init as pid 1: it cannot be combined "
                              "with --init")
    if "Systemd" in hc:
        hc["Systemd"] = mode


def is_init_command(argv: list[str]) -> bool:
    if not argv:
        return False
    return argv[0] in INIT_PATHS or os.path.basename(argv[0]) in ("systemd", "init")


def wanted(hc: Mapping[str, Any], argv: list[str]) -> bool:
    """Does this container run in system-container mode?"""
    mode = parse_systemd(hc.get("Systemd"))
    if mode == "always":
        return True
    return mode == "true" and not hc.get("Init") and is_init_command(argv)


def init_kind(rootfs: str, program: str, path_env: str) -> str:
    """"systemd", "busybox" or "" (unknown) for the container's init, found in its rootfs.

    The rootfs is untrusted: links are resolved as if it were / (pallet.oci.securejoin)."""
    from pallet.oci.securejoin import secure_join

    candidates = [program] if "/" in program else [os.path.join(d, program) for d in path_env.split(":") if d]
    for cand in candidates:
        try:
            host = secure_join(rootfs, cand)
        except OSError:
            continue
        if not os.path.isfile(host):
            continue
        name = os.path.basename(host)
        return name if name in ("systemd", "busybox") else ""
    return ""


def apply(spec: dict[str, Any], cfg: Mapping[str, Any], image_config: Mapping[str, Any],
          hc: Mapping[str, Any], rootfs: str) -> str | None:
    """Turn `spec` into a system container's if `wanted`; returns the stop signal to use when the
    request and the image have none (None otherwise)."""
    argv = list((spec.get("process") or {}).get("args") or [])
    if not wanted(hc, argv):
        return None
    env = spec["process"].setdefault("env", [])
    path_env = next((e[5:] for e in env if e.startswith("PATH=")), "/usr/sbin:/usr/bin:/sbin:/bin")
    kind = init_kind(rootfs, argv[0], path_env) if argv else ""
    if not any(e.startswith("container=") for e in env):
        env.append("container=pallet")
    taken = {m["destination"] for m in spec.get("mounts") or []}
    dirs = [("/run", "755"), ("/run/lock", "1777"), ("/tmp", "1777")]
    if kind != "busybox":
        dirs.append(("/var/log/journal", "755"))
    for dst, mode in dirs:
        if dst not in taken:
            spec["mounts"].append({"destination": dst, "type": "tmpfs", "source": "tmpfs",
                                   "options": ["rw", "rprivate", "nosuid", "nodev", f"mode={mode}"]})
    for m in spec.get("mounts") or []:
        if m.get("type") == "cgroup":
            m["options"] = [o for o in m.get("options") or [] if o != "ro"] + ["rw"]
    namespaces = spec["linux"].setdefault("namespaces", [])
    if not any(n.get("type") == "cgroup" for n in namespaces):
        namespaces.append({"type": "cgroup"})
    if cfg.get("StopSignal") or image_config.get("StopSignal"):
        return None
    stop = BUSYBOX_POWEROFF if kind == "busybox" else SIGRTMIN_3 if kind == "systemd" else None
    if stop:
        spec.setdefault("annotations", {})["org.opencontainers.image.stopSignal"] = stop
    return stop
