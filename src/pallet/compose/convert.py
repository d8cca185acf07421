"""From the Compose model to Engine API requests: names, labels, the config hash, and the
bodies of `POST /containers/create`, `/networks/create` and `/volumes/create`.

Names and labels are Docker Compose v2's, so other compose tools and `docker ps` see the same
project:

    container   <project>-<service>-<n>   (or container_name:)
    one-off     <project>-<service>-run-<12 hex>
    network     <project>_<key>           (or name:; external: name: or the key, never created)
    volume      <project>_<key>           (same rules)
    built image <project>-<service>       (when the service has build: and no image:)

Container labels: com.docker.compose.project, .service, .container-number, .oneoff
("True"/"False"), .config-hash, .project.working_dir, .project.config_files (comma
separated), .version, .depends_on (`svc:condition:restart`, comma separated). Networks carry
.project, .network, .version; volumes .project, .volume, .version.

The config hash is compose v2's `ServiceHash` (pkg/compose/hash.go): sha256 over the service's
resolved configuration as JSON, without `build`, `pull_policy`, `scale` and
`deploy.replicas` (so a rebuild or a scale change alone does not recreate containers). Keys are
sorted so the hash is stable across loads and file layouts.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pallet import __version__
from pallet.compose.units import duration_ns, ram_in_bytes

LABEL_PROJECT = "com.docker.compose.project"
LABEL_SERVICE = "com.docker.compose.service"
LABEL_NUMBER = "com.docker.compose.container-number"
LABEL_ONEOFF = "com.docker.compose.oneoff"
LABEL_HASH = "com.docker.compose.config-hash"
LABEL_WORKING_DIR = "com.docker.compose.project.working_dir"
LABEL_CONFIG_FILES = "com.docker.compose.project.config_files"
LABEL_VERSION = "com.docker.compose.version"
LABEL_DEPENDS_ON = "com.docker.compose.depends_on"
LABEL_NETWORK = "com.docker.compose.network"
LABEL_VOLUME = "com.docker.compose.volume"
VERSION = __version__


def config_hash(service: dict[str, Any]) -> str:
    """compose v2 ServiceHash: what decides whether `up` recreates a service's containers."""
    cfg = {k: v for k, v in service.items() if k not in ("build", "pull_policy", "scale")}
    if isinstance(cfg.get("deploy"), dict):
        cfg["deploy"] = {k: v for k, v in cfg["deploy"].items() if k != "replicas"}
    data = json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode()).hexdigest()


def container_name(project: str, service_name: str, service: dict[str, Any], number: int) -> str:
    return service.get("container_name") or f"{project}-{service_name}-{number}"


def image_name(project: str, service_name: str, service: dict[str, Any]) -> str:
    """The image a service runs: image:, or what `build` tags it as."""
    return service.get("image") or f"{project}-{service_name}"


def scale_of(service: dict[str, Any]) -> int:
    if "scale" in service:
        return int(service["scale"])
    return int((service.get("deploy") or {}).get("replicas", 1))


def network_name(project: str, key: str, spec: dict[str, Any]) -> str:
    if spec.get("name"):
        return str(spec["name"])
    return key if spec.get("external") else f"{project}_{key}"


volume_name = network_name


def network_body(project: str, key: str, spec: dict[str, Any]) -> dict[str, Any]:
    labels = {**(spec.get("labels") or {}), LABEL_PROJECT: project, LABEL_NETWORK: key,
              LABEL_VERSION: VERSION}
    body: dict[str, Any] = {"Name": network_name(project, key, spec),
                            "Driver": spec.get("driver") or "bridge", "Labels": labels,
                            "CheckDuplicate": True}
    if spec.get("driver_opts"):
        body["Options"] = spec["driver_opts"]
    for src, dst in (("internal", "Internal"), ("attachable", "Attachable"), ("enable_ipv6", "EnableIPv6")):
        if src in spec:
            body[dst] = bool(spec[src])
    ipam = spec.get("ipam")
    if ipam:
        body["IPAM"] = {"Driver": ipam.get("driver") or "default", "Options": ipam.get("options") or {},
                        "Config": [{k2: c[k1] for k1, k2 in (("subnet", "Subnet"), ("ip_range", "IPRange"),
                                                             ("gateway", "Gateway"),
                                                             ("aux_addresses", "AuxiliaryAddresses"))
                                    if k1 in c} for c in ipam.get("config") or []]}
    return body


def volume_body(project: str, key: str, spec: dict[str, Any]) -> dict[str, Any]:
    labels = {**(spec.get("labels") or {}), LABEL_PROJECT: project, LABEL_VOLUME: key,
              LABEL_VERSION: VERSION}
    return {"Name": volume_name(project, key, spec), "Driver": spec.get("driver") or "local",
            "DriverOpts": spec.get("driver_opts") or {}, "Labels": labels}


def container_labels(project: Any, service_name: str, service: dict[str, Any], number: int,
                     oneoff: bool = False) -> dict[str, str]:
    deps = ",".join(f"{d}:{s.get('condition', 'service_started')}:{str(bool(s.get('restart'))).lower()}"
                    for d, s in (service.get("depends_on") or {}).items())
    return {
        **(service.get("labels") or {}),
        LABEL_PROJECT: project.name, LABEL_SERVICE: service_name, LABEL_NUMBER: str(number),
        LABEL_ONEOFF: "True" if oneoff else "False", LABEL_HASH: config_hash(service),
        LABEL_WORKING_DIR: project.working_dir, LABEL_CONFIG_FILES: ",".join(project.config_files),
        LABEL_VERSION: VERSION, LABEL_DEPENDS_ON: deps,
    }


def _restart_policy(value: str | None) -> dict[str, Any]:
    if not value or value == "no":
        return {"Name": "no"}
    name, _, count = value.partition(":")
    policy: dict[str, Any] = {"Name": name}
    if name == "on-failure" and count:
        policy["MaximumRetryCount"] = int(count)
    return policy


def _healthcheck(h: dict[str, Any] | None) -> dict[str, Any] | None:
    if not h:
        return None
    if h.get("disable"):
        return {"Test": ["NONE"]}
    out: dict[str, Any] = {}
    if h.get("test"):
        out["Test"] = list(h["test"])
    for src, dst in (("interval", "Interval"), ("timeout", "Timeout"), ("start_period", "StartPeriod"),
                     ("start_interval", "StartInterval")):
        if h.get(src) is not None:
            out[dst] = duration_ns(h[src])
    if h.get("retries") is not None:
        out["Retries"] = int(h["retries"])
    return out


def _ports(service: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for p in service.get("ports") or []:
        key = f"{p['target']}/{p.get('protocol', 'tcp')}"
        exposed[key] = {}
        bindings.setdefault(key, []).append({"HostIp": p.get("host_ip", ""),
                                             "HostPort": str(p.get("published") or "")})
    for e in service.get("expose") or []:
        port, _, proto = str(e).partition("/")
        exposed[f"{port}/{proto or 'tcp'}"] = {}
    return exposed, bindings


def _mounts(project: Any, service: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    binds: list[str] = []
    mounts: list[dict[str, Any]] = []
    for v in service.get("volumes") or []:
        kind, ro = v["type"], bool(v.get("read_only"))
        if kind == "bind" and (v.get("bind") or {}).get("create_host_path", True):
            # Binds (not Mounts) so that a missing host directory is created, as short syntax
            # promises (compose v2 does the same).
            opts = ["ro" if ro else "rw"]
            if (v.get("bind") or {}).get("propagation"):
                opts.append(v["bind"]["propagation"])
            binds.append(f"{v['source']}:{v['target']}:{','.join(opts)}")
            continue
        m: dict[str, Any] = {"Type": kind, "Target": v["target"], "ReadOnly": ro}
        if kind == "volume":
            if v.get("source"):
                m["Source"] = volume_name(project.name, v["source"], project.volumes.get(v["source"]) or {})
            if (v.get("volume") or {}).get("nocopy"):
                m["VolumeOptions"] = {"NoCopy": True}
        elif kind == "bind":
            m["Source"] = v["source"]
            if (v.get("bind") or {}).get("propagation"):
                m["BindOptions"] = {"Propagation": v["bind"]["propagation"]}
        elif kind == "tmpfs":
            t = v.get("tmpfs") or {}
            topts: dict[str, int] = {}
            if t.get("size") is not None:
                topts["SizeBytes"] = ram_in_bytes(t["size"])
            if t.get("mode") is not None:
                topts["Mode"] = int(t["mode"])
            if topts:
                m["TmpfsOptions"] = topts
        mounts.append(m)
    return binds, mounts


def _tmpfs(values: list[str]) -> dict[str, str]:
    out = {}
    for t in values:
        path, _, opts = t.partition(":")
        out[path] = opts
    return out


def endpoint_config(project: Any, service_name: str, service: dict[str, Any], key: str,
                    name: str) -> dict[str, Any]:
    """The EndpointSettings for one of the service's networks: aliases [service, container
    name, the file's aliases] so the embedded DNS answers the service name."""
    spec = (service.get("networks") or {}).get(key) or {}
    aliases = list(dict.fromkeys([service_name, name, *(spec.get("aliases") or [])]))
    ep: dict[str, Any] = {"Aliases": aliases}
    ipam = {k2: spec[k1] for k1, k2 in (("ipv4_address", "IPv4Address"), ("ipv6_address", "IPv6Address"))
            if spec.get(k1)}
    if ipam:
        ep["IPAMConfig"] = ipam
    return ep


def service_networks(project: Any, service: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, engine network name) per network of the service, by priority then file order."""
    nets = service.get("networks") or {}
    keys = sorted(nets, key=lambda k: -int((nets[k] or {}).get("priority", 0)))
    return [(k, network_name(project.name, k, project.networks.get(k) or {})) for k in keys]


def create_body(project: Any, service_name: str, service: dict[str, Any], number: int, name: str,
                *, oneoff: bool = False, command: list[str] | None = None,
                entrypoint: list[str] | None = None, env: dict[str, str] | None = None,
                tty: bool | None = None, stdin_open: bool | None = None, user: str | None = None,
                workdir: str | None = None, publish: bool = True,
                anonymous: dict[str, str] | None = None) -> dict[str, Any]:
    """The `POST /containers/create` body for container `number` of a service. `anonymous`
    maps a path to the anonymous volume a replaced container had there: the new container
    mounts the same volume, so its data survives the recreation (compose does the same)."""
    exposed, bindings = _ports(service)
    binds, mounts = _mounts(project, service)
    for target, volume in (anonymous or {}).items():
        same = next((m for m in mounts if m["Target"] == target), None)
        if same is None and not any(b.split(":")[1] == target for b in binds):
            mounts.append({"Type": "volume", "Source": volume, "Target": target, "ReadOnly": False})
        elif same is not None and same["Type"] == "volume" and not same.get("Source"):
            same["Source"] = volume
    environment = {**(service.get("environment") or {}), **(env or {})}
    cfg: dict[str, Any] = {
        "Image": image_name(project.name, service_name, service),
        "Env": [f"{k}={v}" for k, v in environment.items() if v is not None],
        "Labels": container_labels(project, service_name, service, number, oneoff),
        "Tty": bool(service.get("tty")) if tty is None else tty,
        "OpenStdin": bool(service.get("stdin_open")) if stdin_open is None else stdin_open,
        "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
    }
    if exposed:
        cfg["ExposedPorts"] = exposed
    cmd = command if command is not None else service.get("command")
    if cmd is not None:
        cfg["Cmd"] = cmd
    ep = entrypoint if entrypoint is not None else service.get("entrypoint")
    if ep is not None:
        cfg["Entrypoint"] = ep
    for src, dst, override in (("user", "User", user), ("working_dir", "WorkingDir", workdir),
                               ("hostname", "Hostname", None), ("domainname", "Domainname", None),
                               ("stop_signal", "StopSignal", None)):
        value = override if override is not None else service.get(src)
        if value:
            cfg[dst] = value
    if service.get("stop_grace_period") is not None:
        cfg["StopTimeout"] = duration_ns(service["stop_grace_period"]) // 1_000_000_000
    hc = _healthcheck(service.get("healthcheck"))
    if hc is not None:
        cfg["Healthcheck"] = hc
    if oneoff and cfg["OpenStdin"]:
        cfg.update(AttachStdin=True, StdinOnce=True)
    if oneoff:
        cfg.update(AttachStdout=True, AttachStderr=True)

    limits = ((service.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    host: dict[str, Any] = {
        "RestartPolicy": _restart_policy(service.get("restart")),
        "Init": bool(service.get("init")) if "init" in service else None,
        "ReadonlyRootfs": bool(service.get("read_only")),
        "Privileged": bool(service.get("privileged")),
    }
    if host["Init"] is None:
        del host["Init"]
    if binds:
        host["Binds"] = binds
    if mounts:
        host["Mounts"] = mounts
    if bindings and publish:
        host["PortBindings"] = bindings
    for src, dst in (("cap_add", "CapAdd"), ("cap_drop", "CapDrop"), ("dns", "Dns"),
                     ("dns_search", "DnsSearch")):
        if service.get(src):
            host[dst] = list(service[src])
    if service.get("tmpfs"):
        host["Tmpfs"] = _tmpfs(service["tmpfs"])
    if service.get("ulimits"):
        host["Ulimits"] = [{"Name": n, "Soft": u["soft"], "Hard": u["hard"]}
                           for n, u in service["ulimits"].items()]
    if service.get("sysctls"):
        host["Sysctls"] = dict(service["sysctls"])
    if service.get("devices"):
        host["Devices"] = [{"PathOnHost": d["source"], "PathInContainer": d["target"],
                            "CgroupPermissions": d["permissions"]} for d in service["devices"]]
    if service.get("extra_hosts"):
        host["ExtraHosts"] = [f"{h}:{ip}" for h, ips in service["extra_hosts"].items()
                              for ip in ips.split(",")]
    cpus = limits.get("cpus", service.get("cpus"))
    if cpus is not None:
        host["NanoCpus"] = int(float(cpus) * 1e9)
    memory = limits.get("memory", service.get("mem_limit"))
    if memory is not None:
        host["Memory"] = ram_in_bytes(memory)
    pids = limits.get("pids", service.get("pids_limit"))
    if pids is not None:
        host["PidsLimit"] = int(pids)
    if service.get("shm_size") is not None:
        host["ShmSize"] = ram_in_bytes(service["shm_size"])

    nets = service_networks(project, service)
    mode = service.get("network_mode")
    if mode:
        host["NetworkMode"] = mode
    elif nets:
        key, net = nets[0]
        host["NetworkMode"] = net
        cfg["NetworkingConfig"] = {"EndpointsConfig": {
            net: endpoint_config(project, service_name, service, key, name)}}
    cfg["HostConfig"] = host
    return cfg
