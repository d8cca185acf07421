"""Networks and container endpoints: the bridge driver's state, its IPAM, ports and firewall.

`NetworkManager(data_root, exec_root)` owns Docker's predefined networks ("bridge", "host",
"none") and user-defined bridge networks; the engine (pallet.engine.networking) asks it to set up
a container's network namespace before the runtime starts it and to tear it down when it
exits. One lock serializes every change; the state is one JSON file written atomically after
each change, so a crash loses nothing that was promised and `reconcile` cleans up what a dead
daemon left (veths, namespaces, rules).

Kernel objects are made when needed and dropped when unused: a network's bridge device exists
while at least one container is attached (created at the first attach, deleted after the last
detach), and the firewall table holds only rules of attached containers. So a daemon that
stops its containers leaves no link or rule behind, and a bridge that went missing (host
reboot, someone's `ip link del`) is simply made again.

Names of kernel objects derive from an instance tag: "" for the default data root
(/var/lib/pallet: bridge "pallet0", table "pallet"), else the first hex digits of a hash of the
data root ("pallet<tag>", "pallet_<tag>"), so that two daemons (or test engines) on one host do
not share devices or rules. User-defined networks get "pl-<id12>" (Docker: "br-<id12>");
container veths "veth<hash7>" on the host side, "eth0", "eth1"... inside.

On disk, version 1, <data-root>/network/networks.json:
    {"version": 1,
     "networks": {<id>: {Docker's Network fields: "Name", "Id", "Created", "Scope", "Driver",
                         "EnableIPv4", "EnableIPv6", "IPAM", "Internal", "Attachable", "Ingress",
                         "ConfigFrom", "ConfigOnly", "Options", "Labels";
                         "bridge": device name, "pools": {<subnet>: ipam.Allocator state},
                         "auto_subnets": [subnets picked from the pools, movable while unused]}},
     "containers": {<cid>: {"name", "mode" (HostConfig.NetworkMode), "order": [network ids],
                            "networks": {<netid>: {"Aliases", "IPv4Address", "IPv6Address",
                                                   "MacAddress" ("" or absent: Docker's
                                                   02:42:<IPv4>), "Links" (optional,
                                                   ["name:alias"], EndpointSettings.Links)}},
                            "ports": [PortRequest fields] (wanted),
                            "netns": path or "", "endpoints": {<netid>: endpoint}, "bound": [Binding]}}}
    endpoint: {"EndpointID", "MacAddress", "IPAddress", "IPPrefixLen", "Gateway", "GlobalIPv6Address",
               "GlobalIPv6PrefixLen", "IPv6Gateway", "veth", "ifname"}
    Binding "HostIp": "" (older files) or "0.0.0.0" every IPv4 address, "::" every IPv6 one, else
    the address; IPv6 bindings are forwarded by the userland proxy (pallet.network.proxy) and,
    for addresses other than ::1 when the container has an IPv6 address, by ip6 DNAT.

MAC addresses (--mac-address, EndpointSettings.MacAddress, per endpoint as API 1.44+): a
unicast address in any of Go's net.ParseMAC 6-byte forms, stored lower-case with colons.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import hashlib
import ipaddress
import json
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from pallet.errors import (
    Conflict,
    InvalidArgument,
    NotFound,
    PalletError,
    PermissionDenied,
    Unavailable,
)
from pallet.network import ipam
from pallet.network.firewall import Firewall, FwNetwork, FwPort
from pallet.network.netlink import IfAddr, Netlink, VethRequest
from pallet.network.netns import NetnsStore
from pallet.network.ports import Binding, PortRequest, PortReserver, is_any, is_v6, show
from pallet.network.proxy import UserlandProxy

STATE_VERSION = 1
DEFAULT_DATA_ROOT = "/var/lib/pallet"
PREDEFINED = ("bridge", "host", "none")
OPT_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
OPT_HOST_IP = "com.docker.network.bridge.host_binding_ipv4"
# TCP congestion control of the bridge subnets' routes, on the host and in the containers:
# traffic between the host and its containers never meets a real bottleneck, and BBR (a
# common host default) paces it at its own estimate, which at the 1500-byte MTU costs a third
# of the throughput (measured: docs/design/network.md, "Throughput"). "" keeps the host default.
SUBNET_CONGCTL = "cubic"
HOST_CONFLICT = "container cannot be disconnected from host network or connected to host network"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")

# Called with (network id, container id, names, addresses) when an endpoint comes up, and with
# (network id, container id, (), ()) when it goes away: the embedded DNS's records.
EndpointHook = Callable[[str, str, Sequence[str], Sequence[str]], None]


def _now() -> str:
    t = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 10**9)) + f".{t % 10**9:09d}Z"


def _mac(ip: str) -> str:
    """Docker's MAC for an IPv4 address: 02:42 and the address's four bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


_MAC_FORMS = (re.compile(r"^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$"),
              re.compile(r"^[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}$"))


def parse_mac(raw: Any) -> str:
    """A container interface's MAC: Go's net.ParseMAC 6-byte forms (01:23:45:67:89:ab,
    01-23-45-67-89-ab, 0123.4567.89ab), as lower-case colon form. InvalidArgument (400) with
    dockerd's "invalid MAC address" for anything else, and for a multicast or all-zero address,
    which the kernel refuses for an interface (EADDRNOTAVAIL at start in dockerd)."""
    if not isinstance(raw, str) or not any(f.match(raw) for f in _MAC_FORMS):
        raise InvalidArgument(f"invalid MAC address {raw}")
    digits = re.sub(r"[^0-9a-fA-F]", "", raw).lower()
    octets = [digits[i:i + 2] for i in range(0, 12, 2)]
    if int(octets[0], 16) & 1:
        raise InvalidArgument(f"invalid MAC address {raw}: a multicast address cannot be an interface's")
    if digits == "0" * 12:
        raise InvalidArgument(f"invalid MAC address {raw}: all zeros")
    return ":".join(octets)


class NetworkManager:
    """See the module docstring. Thread-safe; every public method may block on the kernel."""

    def __init__(self, data_root: str, exec_root: str, *, netlink: Netlink | None = None,
                 firewall: Firewall | None = None, netns: NetnsStore | None = None,
                 sysctl_root: str = "/proc/sys", sys_root: str = "/sys", ip_forward: bool = False,
                 host_routes: Callable[[], list[str]] | None = None, ports: PortReserver | None = None,
                 proxy: UserlandProxy | None = None, congctl: str = SUBNET_CONGCTL) -> None:
        self.data_root = os.path.abspath(data_root)
        self.path = os.path.join(self.data_root, "network", "networks.json")
        tag = "" if self.data_root == DEFAULT_DATA_ROOT else hashlib.sha256(
            self.data_root.encode()).hexdigest()[:6]
        self.tag = tag
        self.default_bridge = f"pallet{tag}" if tag else "pallet0"
        if netlink is None:
            from pallet.network.netlink import PyrouteNetlink

            netlink = PyrouteNetlink()
        self.netlink = netlink
        self.firewall = firewall if firewall is not None else Firewall(f"pallet_{tag}" if tag else "pallet",
                                                                       owner=self.data_root)
        self.netns = netns if netns is not None else NetnsStore(os.path.join(exec_root, "netns"))
        self.sysctl_root, self.sys_root = sysctl_root, sys_root
        self.ip_forward = ip_forward
        self.congctl = congctl
        self._host_routes = host_routes or self.netlink.routed_networks
        self.ports = ports if ports is not None else PortReserver()
        self.proxy = proxy if proxy is not None else UserlandProxy()
        self.hooks: list[EndpointHook] = []
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        self.state: dict[str, Any] = {}
        self._seen: tuple[int, ...] | None = None
        self.lock = _StateLock(self.path + ".lock", self._reload)
        self._ensure_predefined()
        sweep = getattr(self.firewall, "sweep_orphans", None)
        if sweep is not None:
            try:
                sweep(self.netlink.delete_link)
            except (OSError, PalletError) as exc:
                sys.stderr.write(f"pallet network: sweeping orphaned rules: {exc}\n")

    def _reload(self) -> None:
        # Re-read only when another manager wrote since (inode, size, mtime): `ps` asks once
        # per container.
        try:
            st = os.stat(self.path)
            key: tuple[int, ...] | None = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            key = None
        if key is None or key != self._seen or not self.state:
            self.state = self._read()
            self._seen = key

    # --- persistence ------------------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        try:
            with open(self.path) as f:
                st = json.load(f)
        except FileNotFoundError:
            return {"version": STATE_VERSION, "networks": {}, "containers": {}}
        if st.get("version") != STATE_VERSION:
            raise InvalidArgument(f"{self.path}: version {st.get('version')!r} is not {STATE_VERSION}")
        return dict(st)

    def _save(self) -> None:
        tmp = f"{self.path}.tmp-{secrets.token_hex(4)}"
        with open(tmp, "w") as f:
            f.write(json.dumps(self.state))  # json.dumps: the C encoder; json.dump is pure Python
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        st = os.stat(self.path)
        self._seen = (st.st_ino, st.st_size, st.st_mtime_ns)

    def _ensure_predefined(self) -> None:
        with self.lock:
            names = {n["Name"] for n in self.state["networks"].values()}
            changed = False
            for name, driver in (("host", "host"), ("none", "null")):
                if name not in names:
                    rec = self._record(name, driver, {}, {}, [], internal=False, ipv6=False)
                    self.state["networks"][rec["Id"]] = rec
                    changed = True
            if "bridge" not in names:
                used = [*self._subnets_in_use(), *self._host_routes()]
                subnet = ipam.pick_subnet(used)
                opts = {"com.docker.network.bridge.default_bridge": "true",
                        "com.docker.network.bridge.enable_icc": "true", OPT_MASQ: "true",
                        OPT_HOST_IP: "0.0.0.0", OPT_NAME: self.default_bridge, OPT_MTU: "1500"}
                rec = self._record("bridge", "bridge", opts, {}, [ipam.pool_config(subnet)], internal=False,
                                   ipv6=False)
                rec["auto_subnets"] = [str(subnet)]
                self.state["networks"][rec["Id"]] = rec
                changed = True
            if changed:
                self._save()

    def close(self) -> None:
        """Stop the userland proxies and let go of the held ports (the daemon is leaving; the
        next manager's `reconcile` holds them again)."""
        self.proxy.close()
        with self.lock:
            self.ports.release_all()

    def set_default_mtu(self, mtu: int) -> None:
        """dockerd's --mtu (0: Docker's 1500): the default bridge network's MTU option, which
        interfaces made from now on get (as with dockerd, running containers keep theirs until
        they restart). Raises InvalidArgument outside 68..65535."""
        mtu = mtu or 1500
        if not 68 <= mtu <= 65535:
            raise InvalidArgument(f"invalid default MTU: {mtu}: want 68..65535")
        with self.lock:
            for n in self.state["networks"].values():
                if n["Name"] == "bridge" and n["Options"].get(OPT_MTU) != str(mtu):
                    n["Options"][OPT_MTU] = str(mtu)
                    self._save()

    def _record(self, name: str, driver: str, options: Mapping[str, str], labels: Mapping[str, str],
                configs: list[dict[str, str]], *, internal: bool, ipv6: bool, attachable: bool = False,
                ipam_options: Mapping[str, str] | None = None) -> dict[str, Any]:
        nid = secrets.token_hex(32)
        rec: dict[str, Any] = {
            "Name": name, "Id": nid, "Created": _now(), "Scope": "local", "Driver": driver,
            "EnableIPv4": True, "EnableIPv6": ipv6,
            "IPAM": {"Driver": "default", "Options": dict(ipam_options or {}), "Config": configs},
            "Internal": internal, "Attachable": attachable, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Options": dict(options), "Labels": dict(labels),
            "bridge": "", "pools": {c["Subnet"]: {} for c in configs},
        }
        if driver == "bridge":
            rec["bridge"] = options.get(OPT_NAME) or f"pl-{nid[:12]}"
        return rec

    def _subnets_in_use(self) -> list[str]:
        return [c["Subnet"] for n in self.state["networks"].values() for c in n["IPAM"]["Config"]]

    # --- lookup -------------------------------------------------------------------------------------
    def get(self, ref: str) -> dict[str, Any]:
        """A network record by full id, name, or unique id prefix (Docker's order)."""
        with self.lock:
            nets = self.state["networks"]
            if ref in nets:
                return dict(nets[ref])
            by_name = [n for n in nets.values() if n["Name"] == ref]
            if by_name:
                return dict(by_name[0])
            found = [n for nid, n in nets.items() if ref and nid.startswith(ref)]
            if len(found) == 1:
                return dict(found[0])
            if len(found) > 1:
                raise InvalidArgument(f"network {ref} is ambiguous ({len(found)} matches found based on "
                                      "ID prefix)")
        raise NotFound(f"network {ref} not found")

    def _net(self, nid: str) -> dict[str, Any]:
        return dict(self.state["networks"][nid])

    # --- the network API ----------------------------------------------------------------------------
    def create(self, body: Mapping[str, Any]) -> dict[str, str]:
        """POST /networks/create: {"Id", "Warning"}."""
        name = body.get("Name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument("network name is required")
        if not _NAME.match(name):
            raise InvalidArgument(f'invalid network name "{name}": only [a-zA-Z0-9][a-zA-Z0-9_.-] '
                                  "are allowed")
        driver = body.get("Driver") or "bridge"
        if name in PREDEFINED:
            raise PermissionDenied(f"{name} is a pre-defined network and cannot be created")
        if driver in ("host", "null"):
            raise PermissionDenied(f'only one instance of "{driver}" network is allowed')
        if driver != "bridge":
            raise NotFound(f'plugin "{driver}" not found')
        if body.get("Ingress") or body.get("ConfigOnly") or (body.get("ConfigFrom") or {}).get("Network"):
            raise InvalidArgument("ingress and config-only networks are swarm features, not supported")
        options = {str(k): str(v) for k, v in (body.get("Options") or {}).items()}
        labels = body.get("Labels") or {}
        if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
            raise InvalidArgument("Labels: want a map of strings")
        if OPT_MTU in options:
            try:
                mtu = int(options[OPT_MTU])
            except ValueError:
                raise InvalidArgument(f"invalid MTU {options[OPT_MTU]!r}") from None
            if not 68 <= mtu <= 65535:
                raise InvalidArgument(f"invalid MTU {mtu}: want 68..65535")
        if OPT_NAME in options and (len(options[OPT_NAME]) > 15 or not _NAME.match(options[OPT_NAME])):
            raise InvalidArgument(f"invalid bridge name {options[OPT_NAME]!r}")
        if OPT_MASQ in options and options[OPT_MASQ] not in ("true", "false"):
            raise InvalidArgument(f"{OPT_MASQ}: want true or false")
        ipam_body = body.get("IPAM") or {}
        if (ipam_body.get("Driver") or "default") != "default":
            raise NotFound(f'plugin "{ipam_body["Driver"]}" not found')
        ipv6 = bool(body.get("EnableIPv6"))
        if body.get("EnableIPv4") is False:
            raise InvalidArgument("IPv6-only networks are not supported (EnableIPv4 false)")
        with self.lock:
            if any(n["Name"] == name for n in self.state["networks"].values()):
                raise Conflict(f"network with name {name} already exists")
            if OPT_NAME in options and any(n["bridge"] == options[OPT_NAME]
                                           for n in self.state["networks"].values()):
                raise Conflict(f"bridge name {options[OPT_NAME]} is used by another network")
            others = {c["Subnet"]: n["Name"] for n in self.state["networks"].values()
                      for c in n["IPAM"]["Config"]}
            configs: list[dict[str, str]] = []
            for c in ipam_body.get("Config") or []:
                if not c.get("Subnet"):
                    if c.get("Gateway") or c.get("IPRange"):
                        raise InvalidArgument("a gateway or ip-range needs a subnet")
                    continue
                subnet = ipam.parse_network(c["Subnet"])
                if subnet.version == 6 and not ipv6:
                    raise InvalidArgument(f"subnet {subnet} is IPv6: enable IPv6 (--ipv6) for it")
                ipam.check_overlap(subnet, {**others, **{x["Subnet"]: name for x in configs}})
                configs.append(ipam.pool_config(subnet, c.get("Gateway") or "", c.get("IPRange") or ""))
            auto: list[str] = []
            if not any(":" not in c["Subnet"] for c in configs):
                used = [*others, *self._host_routes()]
                configs.insert(0, ipam.pool_config(ipam.pick_subnet(used)))
                auto.append(configs[0]["Subnet"])
            rec = self._record(name, driver, options, labels, configs, internal=bool(body.get("Internal")),
                               ipv6=ipv6, attachable=bool(body.get("Attachable")),
                               ipam_options=ipam_body.get("Options"))
            if ipv6 and not any(":" in c["Subnet"] for c in configs):
                v6 = ipam.ula_subnet(rec["Id"])
                ipam.check_overlap(v6, others)
                rec["IPAM"]["Config"].append(ipam.pool_config(v6))
                rec["pools"][str(v6)] = {}
            rec["auto_subnets"] = auto  # may move to a free subnet before first use (_check_routes)
            self.state["networks"][rec["Id"]] = rec
            self._save()
        return {"Id": rec["Id"], "Warning": ""}

    def _users(self, nid: str, active_only: bool) -> list[str]:
        key = "endpoints" if active_only else "networks"
        return [cid for cid, c in self.state["containers"].items() if nid in c.get(key, {})]

    def remove(self, ref: str) -> None:
        """DELETE /networks/{id}: PermissionDenied (403) for a predefined or used network."""
        with self.lock:
            n = self.get(ref)
            if n["Name"] in PREDEFINED:
                raise PermissionDenied(f"{n['Name']} is a pre-defined network and cannot be removed")
            if self._users(n["Id"], active_only=True):
                raise PermissionDenied(f"error while removing network: network {n['Name']} id {n['Id']} "
                                       "has active endpoints")
            for c in self.state["containers"].values():
                c.get("networks", {}).pop(n["Id"], None)
                if n["Id"] in c.get("order", []):
                    c["order"].remove(n["Id"])
            del self.state["networks"][n["Id"]]
            self._save()
        with contextlib.suppress(PalletError):
            self.netlink.delete_link(n["bridge"]) if n["bridge"] else None

    def list(self, filters: Mapping[str, Sequence[str]] | None = None) -> builtins.list[dict[str, Any]]:
        """GET /networks with Docker's filters: dangling, driver, id, label, name, scope, type."""
        flt = {k: list(v) for k, v in (filters or {}).items()}
        for k in flt:
            if k not in ("dangling", "driver", "id", "label", "name", "scope", "type"):
                raise InvalidArgument(f"invalid filter '{k}'")
        for v in flt.get("type", []):
            if v not in ("custom", "builtin"):
                raise InvalidArgument(f"invalid filter: 'type'='{v}'")
        with self.lock:
            nets = [self._render(n, verbose=False) for n in self.state["networks"].values()]
            used = {nid for c in self.state["containers"].values() for nid in c.get("networks", {})}
        out = []
        for n in sorted(nets, key=lambda x: x["Created"]):
            ok = True
            for key, values in flt.items():
                if not values:
                    continue
                if key == "driver":
                    ok = n["Driver"] in values
                elif key == "id":
                    ok = any(n["Id"].startswith(v) for v in values)
                elif key == "name":
                    ok = any(v in n["Name"] for v in values)
                elif key == "label":
                    ok = all(_label_ok(n["Labels"], v) for v in values)
                elif key == "scope":
                    ok = "local" in values
                elif key == "type":
                    ok = ("builtin" if n["Name"] in PREDEFINED else "custom") in values
                elif key == "dangling":
                    want = values[0].lower() in ("1", "true")
                    dangling = n["Name"] not in PREDEFINED and n["Id"] not in used
                    ok = dangling == want
                if not ok:
                    break
            if ok:
                out.append(n)
        return out

    def inspect(self, ref: str, verbose: bool = False) -> dict[str, Any]:
        with self.lock:
            return self._render(self.get(ref), verbose=True)

    def _render(self, n: Mapping[str, Any], verbose: bool) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in n.items() if k not in ("bridge", "pools", "auto_subnets")}
        out["IPAM"]["Options"] = out["IPAM"]["Options"] or None if n["Driver"] != "bridge" else \
            out["IPAM"]["Options"]
        containers: dict[str, Any] = {}
        if verbose:
            for cid, c in self.state["containers"].items():
                ep = c.get("endpoints", {}).get(n["Id"])
                if ep is None:
                    if n["Driver"] in ("host", "null") and c.get("mode") == n["Name"] and c.get("netns") \
                            is not None and c.get("active"):
                        containers[cid] = {"Name": c["name"], "EndpointID": "", "MacAddress": "",
                                           "IPv4Address": "", "IPv6Address": ""}
                    continue
                containers[cid] = {
                    "Name": c["name"], "EndpointID": ep["EndpointID"], "MacAddress": ep["MacAddress"],
                    "IPv4Address": f"{ep['IPAddress']}/{ep['IPPrefixLen']}" if ep["IPAddress"] else "",
                    "IPv6Address": f"{ep['GlobalIPv6Address']}/{ep['GlobalIPv6PrefixLen']}"
                    if ep["GlobalIPv6Address"] else ""}
        out["Containers"] = containers
        return out

    def prune(self, filters: Mapping[str, Sequence[str]] | None = None, *,
              until: float | None = None) -> builtins.list[str]:
        """POST /networks/prune: remove user-defined networks no container uses, created before
        `until` (seconds since the epoch; the caller parses Docker's forms) and matching the
        `label`/`label!` filters. Returns the removed names."""
        flt = {k: list(v) for k, v in (filters or {}).items()}
        for k in flt:
            if k not in ("label", "label!"):
                raise InvalidArgument(f"invalid filter '{k}'")
        deleted = []
        with self.lock:
            used = {nid for c in self.state["containers"].values() for nid in c.get("networks", {})}
            for n in sorted(self.state["networks"].values(), key=lambda x: x["Created"]):
                if n["Name"] in PREDEFINED or n["Id"] in used:
                    continue
                if until is not None and _epoch(n["Created"]) >= until:
                    continue
                if not all(_label_ok(n["Labels"], s) for s in flt.get("label", [])):
                    continue
                if any(_label_ok(n["Labels"], s) for s in flt.get("label!", [])):
                    continue
                self.remove(n["Id"])
                deleted.append(n["Name"])
        return deleted

    # --- containers' configuration ---------------------------------------------------------------------
    def configure(self, cid: str, name: str, mode: str, endpoints: Mapping[str, Any],
                  port_requests: Sequence[PortRequest]) -> None:
        """Record what a new container asks for: its NetworkMode, EndpointsConfig (network name
        or id -> {"Aliases", "IPAMConfig": {"IPv4Address", "IPv6Address"}}) and published
        ports. InvalidArgument/NotFound on a bad request; nothing is recorded then."""
        with self.lock:
            order: list[str] = []
            nets: dict[str, dict[str, Any]] = {}
            if mode in ("host", "none") or mode.startswith("container:"):
                if endpoints and mode.startswith("container:"):
                    raise InvalidArgument("conflicting options: networking config and container network mode")
                if mode in ("host", "none"):
                    n = self.get(mode)
                    order.append(n["Id"])
            else:
                primary = "bridge" if mode in ("default", "bridge", "") else mode
                endpoints = {("bridge" if k == "default" else k): v for k, v in endpoints.items()}
                refs = [primary, *[r for r in endpoints if r != primary and self.get(r)["Name"] != primary]]
                for ref in refs:
                    n = self.get(ref)
                    if n["Driver"] != "bridge":
                        raise InvalidArgument(f"container cannot be connected to network {n['Name']} "
                                              "and to others")
                    conf = endpoints.get(ref) or endpoints.get(n["Name"]) or endpoints.get(n["Id"]) or {}
                    nets[n["Id"]] = self._endpoint_conf(n, conf)
                    order.append(n["Id"])
            if port_requests and not nets:
                port_requests = []  # Docker ignores -p with --network host/none (it warns)
            self.state["containers"][cid] = {"name": name, "mode": mode, "order": order, "networks": nets,
                                             "ports": [asdict(p) for p in port_requests], "netns": "",
                                             "endpoints": {}, "bound": [], "active": False}
            self._save()

    @staticmethod
    def _endpoint_conf(n: Mapping[str, Any], conf: Mapping[str, Any]) -> dict[str, Any]:
        aliases = list(conf.get("Aliases") or [])
        ipamc = conf.get("IPAMConfig") or {}
        v4, v6 = ipamc.get("IPv4Address") or "", ipamc.get("IPv6Address") or ""
        if (aliases or v4 or v6) and n["Name"] == "bridge":
            # moby: runconfig.ErrUnsupportedNetworkAndAlias / ErrUnsupportedNetworkAndIP
            raise InvalidArgument("network-scoped alias and user specified IP address are supported only "
                                  "for user defined networks")
        for a, ver in ((v4, 4), (v6, 6)):
            if a:
                try:
                    ip = ipaddress.ip_address(a)
                except ValueError:
                    raise InvalidArgument(f"invalid IPv{ver} address: {a}") from None
                if ip.version != ver:
                    raise InvalidArgument(f"invalid IPv{ver} address: {a}")
                if not any(ip in ipaddress.ip_network(c["Subnet"]) for c in n["IPAM"]["Config"]):
                    raise InvalidArgument(f"no configured subnet or ip-range contain the IP address {a}")
        mac = parse_mac(conf["MacAddress"]) if conf.get("MacAddress") else ""
        out = {"Aliases": aliases, "IPv4Address": v4, "IPv6Address": v6, "MacAddress": mac}
        raw_links = conf.get("Links") or []
        if raw_links and n["Name"] != "bridge":  # the default bridge's links are HostConfig.Links
            from pallet.network.links import parse

            if not isinstance(raw_links, list):
                raise InvalidArgument("EndpointSettings.Links: want a list of strings")
            out["Links"] = [":".join(parse(str(v))) for v in raw_links]
        return out

    def rename(self, cid: str, name: str) -> None:
        with self.lock:
            c = self.state["containers"].get(cid)
            if c is not None:
                c["name"] = name
                self._save()
                for nid, ep in c.get("endpoints", {}).items():  # the DNS answers to the new name
                    names = [name, cid[:12], *c["networks"].get(nid, {}).get("Aliases", [])]
                    addrs = [a for a in (ep["IPAddress"], ep["GlobalIPv6Address"]) if a]
                    for hook in self.hooks:
                        with contextlib.suppress(Exception):
                            hook(nid, cid, names, addrs)

    def forget(self, cid: str) -> None:
        """The container is removed: tear down what is left, drop its configuration."""
        with self.lock:
            self.teardown(cid)
            if self.state["containers"].pop(cid, None) is not None:
                self._save()

    # --- set up and tear down ------------------------------------------------------------------------
    def setup(self, cid: str, hostname: str = "") -> str:
        """Make the container's network namespace (with an interface per bridge network, its
        published ports and rules) before the runtime starts it; returns the namespace path, ""
        for modes that need none from here (host, none, container:). All or nothing."""
        with self.lock:
            c = self.state["containers"].get(cid)
            if c is None:
                raise NotFound(f"no network configuration for container {cid[:12]}")
            if c.get("endpoints") or c.get("netns"):
                self.teardown(cid)  # leftovers of a run whose exit was not seen
            c["active"] = True
            if not c["networks"]:
                # Nothing to recover after a crash (no link, address or rule): `active` only
                # lists the container under its none/host network, so no write (and fsync) of
                # the whole state file for each `--network none` start.
                return ""
            try:
                c["netns"] = self.netns.create(cid)
                for i, nid in enumerate([n for n in c["order"] if n in c["networks"]]):
                    self._attach(cid, c, nid, f"eth{i}")
                reqs = [PortRequest(**p) for p in c["ports"]]
                if reqs:
                    primary = self.state["networks"][c["order"][0]]
                    default_ip = primary["Options"].get(OPT_HOST_IP, "")
                    reqs = [r if r.host_ip else PortRequest(r.proto, r.container_port,
                                                            "" if default_ip == "0.0.0.0" else default_ip,
                                                            r.first, r.last) for r in reqs]
                    c["bound"] = [b.to_dict() for b in self.ports.reserve(cid, reqs)]
                    self._start_proxies(cid, c)
                self._save()
                self._apply_firewall()
            except BaseException:
                with contextlib.suppress(PalletError, OSError):
                    self.teardown(cid)
                raise
            return str(c["netns"])

    def _attach(self, cid: str, c: dict[str, Any], nid: str, ifname: str) -> None:
        n = self.state["networks"][nid]
        conf = c["networks"][nid]
        veth = "veth" + hashlib.sha256(f"{cid}{nid}".encode()).hexdigest()[:7]
        ep: dict[str, Any] = {"EndpointID": secrets.token_hex(32), "MacAddress": "", "IPAddress": "",
                              "IPPrefixLen": 0, "Gateway": "", "GlobalIPv6Address": "",
                              "GlobalIPv6PrefixLen": 0, "IPv6Gateway": "", "veth": veth, "ifname": ifname}
        c["endpoints"][nid] = ep  # recorded first: a failure below is torn down with the rest
        self._check_routes(n)
        addrs: list[IfAddr] = []
        gws: list[str] = []
        for pc in n["IPAM"]["Config"]:
            subnet = ipaddress.ip_network(pc["Subnet"])
            alloc = ipam.Allocator(pc, n["pools"].setdefault(pc["Subnet"], {}))
            want = conf["IPv6Address"] if subnet.version == 6 else conf["IPv4Address"]
            if want and ipaddress.ip_address(want) not in subnet:
                want = ""
            if subnet.version == 6 and not n["EnableIPv6"]:
                continue
            ip = alloc.request(cid, want)
            addrs.append(IfAddr(ip, subnet.prefixlen))
            if subnet.version == 4 and not ep["IPAddress"]:
                ep.update(IPAddress=ip, IPPrefixLen=subnet.prefixlen, Gateway=pc["Gateway"],
                          MacAddress=conf.get("MacAddress") or _mac(ip))
            elif subnet.version == 6 and not ep["GlobalIPv6Address"]:
                ep.update(GlobalIPv6Address=ip, GlobalIPv6PrefixLen=subnet.prefixlen,
                          IPv6Gateway=pc["Gateway"])
            if not n["Internal"] and len(c["endpoints"]) == 1 and not any(
                    (":" in g) == (subnet.version == 6) for g in gws):
                gws.append(pc["Gateway"])  # the default route goes through the first network
        mtu = int(n["Options"].get(OPT_MTU) or 1500)
        self._ensure_bridge(n)
        if not ep["IPAddress"] and not ep["GlobalIPv6Address"]:
            raise PalletError(f"network {n['Name']}: no address for the container")
        self.netlink.add_veth(VethRequest(ep["veth"], n["bridge"], c["netns"], ifname,
                                          ep["MacAddress"] or conf.get("MacAddress") or _mac("10.0.0.1"),
                                          tuple(addrs), tuple(gws),
                                          mtu, self.congctl))
        # Hairpin: a container reaching its own published port comes back through its port.
        self._write(os.path.join(self.sys_root, "class/net", ep["veth"], "brport/hairpin_mode"), "1")
        names = [c["name"], cid[:12], *conf["Aliases"]]
        for hook in self.hooks:
            with contextlib.suppress(Exception):
                hook(nid, cid, names, [a.address for a in addrs])

    def _check_routes(self, n: dict[str, Any]) -> None:
        """Before a network's bridge is made: its subnet may have been taken on the host since
        the network was created (bridges exist only while used; another daemon, a VPN). The
        default bridge then moves to a free pool subnet (Docker picks docker0's at start-up too);
        a user-defined network fails with a clear error instead of a half-working route."""
        if n["bridge"] in self.netlink.link_names():
            return
        routed = self._host_routes()
        clash = [pc["Subnet"] for pc in n["IPAM"]["Config"]
                 if any(ipaddress.ip_network(r).overlaps(ipaddress.ip_network(pc["Subnet"]))
                        for r in routed if (":" in r) == (":" in pc["Subnet"]))]
        if not clash:
            return
        others = {nid: x for nid, x in self.state["networks"].items() if x is not n}
        in_use = any(p.get("allocated") for p in n["pools"].values())
        auto = set(n.get("auto_subnets") or ())
        if not in_use and all(":" not in x and x in auto for x in clash):
            used = [c["Subnet"] for x in others.values() for c in x["IPAM"]["Config"]] + routed
            for i, pc in enumerate(n["IPAM"]["Config"]):
                if pc["Subnet"] in clash:
                    subnet = ipam.pick_subnet(used)
                    used.append(str(subnet))
                    n["IPAM"]["Config"][i] = ipam.pool_config(subnet)
                    n["pools"].pop(pc["Subnet"], None)
                    n["pools"][str(subnet)] = {}
                    n["auto_subnets"] = [*(x for x in auto if x != pc["Subnet"]), str(subnet)]
            self._save()
            return
        raise Unavailable(f"network {n['Name']}: subnet {', '.join(clash)} is routed on the host through "
                          "another interface now; remove and re-create the network")

    def _ensure_bridge(self, n: Mapping[str, Any]) -> None:
        addrs = tuple(IfAddr(pc["Gateway"], ipaddress.ip_network(pc["Subnet"]).prefixlen)
                      for pc in n["IPAM"]["Config"] if ":" not in pc["Subnet"] or n["EnableIPv6"])
        self.netlink.ensure_bridge(n["bridge"], addrs, int(n["Options"].get(OPT_MTU) or 1500),
                                   congctl=self.congctl)
        conf = os.path.join(self.sysctl_root, "net/ipv4/conf", n["bridge"])
        # Per-bridge forwarding (not the host-wide switch): routed traffic from the bridge
        # (outbound NAT, hairpin) is forwarded; route_localnet lets 127.0.0.1 be DNATed onto
        # it (see pallet.network.firewall).
        self._write(os.path.join(conf, "forwarding"), "1")
        self._write(os.path.join(conf, "route_localnet"), "1")
        if self.ip_forward and not n["Internal"]:
            # Docker's --ip-forward (default on in palletd): replies from the outside come in
            # on the host's interfaces, which must forward too.
            self._write(os.path.join(self.sysctl_root, "net/ipv4/ip_forward"), "1")

    @staticmethod
    def _write(path: str, value: str) -> None:
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as exc:
            sys.stderr.write(f"pallet network: writing {value} to {path}: {exc}\n")

    def teardown(self, cid: str) -> None:
        """Release what the container's run took (ports, addresses, veths, namespace, rules);
        idempotent. Its configuration stays for the next start."""
        with self.lock:
            c = self.state["containers"].get(cid)
            if c is None:
                return
            self.proxy.stop(cid)
            self.ports.release(cid)
            had = bool(c.get("endpoints") or c.get("bound"))
            for nid, ep in list(c.get("endpoints", {}).items()):
                with contextlib.suppress(PalletError):
                    self.netlink.delete_link(ep["veth"])
                n = self.state["networks"].get(nid)
                if n is not None:
                    for pool in n["pools"].values():
                        ipam.Allocator.release_owner_state(pool, cid)
                for hook in self.hooks:
                    with contextlib.suppress(Exception):
                        hook(nid, cid, (), ())
                del c["endpoints"][nid]
            held = had or bool(c.get("netns"))
            if c.get("netns"):
                self.netns.remove(cid)
            c["netns"], c["bound"], c["active"] = "", [], False
            if held or c["networks"]:
                self._save()
            if had:
                self._drop_unused_bridges()
                self._apply_firewall()

    def _start_proxies(self, cid: str, c: Mapping[str, Any]) -> None:
        """The userland proxy for each IPv6 binding of a running container (see
        pallet.network.proxy), towards its first network's address."""
        ep = c["endpoints"].get(c["order"][0]) if c.get("order") else None
        if ep is None:
            return
        target = ep["GlobalIPv6Address"] or ep["IPAddress"]
        for b, sock in self.ports.sockets(cid):
            if is_v6(b.host_ip):
                try:
                    self.proxy.start(cid, b.proto, sock, (target, b.container_port))
                except OSError as exc:
                    raise PalletError(f"userland proxy for {show(b.host_ip, b.host_port)}/{b.proto}: "
                                      f"{exc}") from exc

    def _drop_unused_bridges(self) -> None:
        used = {nid for c in self.state["containers"].values() for nid in c.get("endpoints", {})}
        present = set(self.netlink.link_names())
        for nid, n in self.state["networks"].items():
            if n["bridge"] and nid not in used and n["bridge"] in present:
                with contextlib.suppress(PalletError):
                    self.netlink.delete_link(n["bridge"])

    def _apply_firewall(self) -> None:
        used = {nid for c in self.state["containers"].values() for nid in c.get("endpoints", {})}
        nets = [FwNetwork(nid, n["bridge"], tuple(pc["Subnet"] for pc in n["IPAM"]["Config"]
                                                  if ":" not in pc["Subnet"] or n["EnableIPv6"]),
                          internal=bool(n["Internal"]),
                          masquerade=n["Options"].get(OPT_MASQ, "true") == "true")
                for nid, n in self.state["networks"].items() if nid in used]
        ports = []
        for cid, c in self.state["containers"].items():
            if not c.get("bound") or not c.get("order"):
                continue
            ep = c["endpoints"].get(c["order"][0])
            if ep is None:
                continue
            for b in c["bound"]:
                if is_v6(b["HostIp"]):
                    # ::1 only through the proxy (no route_localnet in IPv6); other addresses by
                    # the kernel when the container has an IPv6 address, else by the proxy too
                    if ep["GlobalIPv6Address"] and b["HostIp"] != "::1":
                        ports.append(FwPort(cid, b["Proto"], b["HostIp"], int(b["HostPort"]),
                                            ep["GlobalIPv6Address"], int(b["ContainerPort"])))
                elif ep["IPAddress"]:
                    ports.append(FwPort(cid, b["Proto"], "" if is_any(b["HostIp"]) else b["HostIp"],
                                        int(b["HostPort"]), ep["IPAddress"], int(b["ContainerPort"])))
        self.firewall.apply(nets, ports)

    # --- connect and disconnect ---------------------------------------------------------------------
    def connect(self, ref: str, cid: str, endpoint_config: Mapping[str, Any] | None = None) -> None:
        """POST /networks/{id}/connect: add a network to the container's configuration, and to
        its namespace when it runs."""
        with self.lock:
            n = self.get(ref)
            c = self.state["containers"].get(cid)
            if c is None:
                raise NotFound(f"no network configuration for container {cid[:12]}")
            mode = c["mode"]
            if n["Driver"] in ("host", "null") or mode == "host" or mode.startswith("container:"):
                raise InvalidArgument(HOST_CONFLICT if "host" in (n["Name"], mode) else
                                      "container sharing network namespace with another container or host "
                                      "cannot be connected to any other network")
            if mode == "none":
                raise PermissionDenied("container cannot be connected to multiple networks with one of the "
                                       "networks in private (none) mode")
            if n["Id"] in c["networks"]:
                raise PermissionDenied(f"endpoint with name {c['name']} already exists in network "
                                       f"{n['Name']}")
            c["networks"][n["Id"]] = self._endpoint_conf(n, endpoint_config or {})
            c["order"].append(n["Id"])
            if c.get("active") and c.get("netns"):
                try:
                    self._attach(cid, c, n["Id"], f"eth{len(c['endpoints'])}")
                    self._apply_firewall()
                except BaseException:
                    self._detach(cid, c, n["Id"])
                    del c["networks"][n["Id"]]
                    c["order"].remove(n["Id"])
                    self._save()
                    raise
            self._save()

    def _detach(self, cid: str, c: dict[str, Any], nid: str) -> None:
        ep = c["endpoints"].pop(nid, None)
        if ep is not None:
            with contextlib.suppress(PalletError):
                self.netlink.delete_link(ep["veth"])
            for hook in self.hooks:
                with contextlib.suppress(Exception):
                    hook(nid, cid, (), ())
        n = self.state["networks"].get(nid)
        if n is not None:
            for pool in n["pools"].values():
                ipam.Allocator.release_owner_state(pool, cid)

    def disconnect(self, ref: str, cid: str, force: bool = False) -> None:
        """POST /networks/{id}/disconnect."""
        with self.lock:
            n = self.get(ref)
            c = self.state["containers"].get(cid)
            if c is None:
                raise NotFound(f"no network configuration for container {cid[:12]}")
            if n["Driver"] == "host" or c["mode"] == "host":
                raise InvalidArgument(HOST_CONFLICT)
            if n["Id"] not in c["networks"] and n["Id"] not in c["order"]:
                raise PermissionDenied(f"container {cid[:12]} is not connected to network {n['Name']}")
            self._detach(cid, c, n["Id"])
            c["networks"].pop(n["Id"], None)
            if n["Id"] in c["order"]:
                c["order"].remove(n["Id"])
            self._save()
            self._drop_unused_bridges()
            self._apply_firewall()

    # --- reading -----------------------------------------------------------------------------------
    def container(self, cid: str) -> dict[str, Any] | None:
        """A deep copy of the container's state entry (see the module docstring), or None."""
        with self.lock:
            c = self.state["containers"].get(cid)
            return copy.deepcopy(c) if c is not None else None

    def network_name(self, nid: str) -> str:
        with self.lock:
            n = self.state["networks"].get(nid)
            return n["Name"] if n else nid

    def endpoints_of_network(self, nid: str) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {cid: copy.deepcopy(c["endpoints"][nid]) for cid, c in self.state["containers"].items()
                    if nid in c.get("endpoints", {})}

    # --- after a restart -----------------------------------------------------------------------------
    def reconcile(self, active: Iterable[str]) -> None:
        """At start-up: tear down what containers that are not running any more left behind,
        hold the ports of running ones again, drop unknown namespaces, unused bridges and
        stale rules, and rebuild the firewall table."""
        alive = set(active)
        with self.lock:
            for cid, c in list(self.state["containers"].items()):
                if cid not in alive:
                    if c.get("endpoints") or c.get("netns") or c.get("active"):
                        with contextlib.suppress(PalletError, OSError):
                            self.teardown(cid)
                    continue
                if c.get("bound"):
                    binds = [Binding.from_dict(b) for b in c["bound"]]
                    try:
                        # A held binding is one address: "" is an older record's IPv4 wildcard
                        # (a new request's "" means both families, see PortReserver._request).
                        self.ports.reserve(cid, [PortRequest(b.proto, b.container_port,
                                                             b.host_ip or "0.0.0.0", b.host_port,
                                                             b.host_port) for b in binds])
                    except PalletError as exc:
                        sys.stderr.write(f"pallet network: container {cid[:12]}: {exc}\n")
                    else:
                        try:
                            self._start_proxies(cid, c)
                        except PalletError as exc:
                            sys.stderr.write(f"pallet network: container {cid[:12]}: {exc}\n")
            for name in self.netns.list():
                if name not in alive or not self.state["containers"].get(name, {}).get("netns"):
                    self.netns.remove(name)
            for cid, c in self.state["containers"].items():
                for nid, ep in c.get("endpoints", {}).items():
                    n = self.state["networks"].get(nid)
                    if n is None:
                        continue
                    with contextlib.suppress(PalletError):
                        self._ensure_bridge(n)
                    names = [c["name"], cid[:12], *c["networks"].get(nid, {}).get("Aliases", [])]
                    addrs = [a for a in (ep["IPAddress"], ep["GlobalIPv6Address"]) if a]
                    for hook in self.hooks:  # the embedded DNS of a new daemon learns them again
                        with contextlib.suppress(Exception):
                            hook(nid, cid, names, addrs)
            self._drop_unused_bridges()
            self._save()
            try:
                self._apply_firewall()
            except PalletError as exc:
                sys.stderr.write(f"pallet network: firewall: {exc}\n")

    def bridge_names(self) -> builtins.list[str]:
        with self.lock:
            return [n["bridge"] for n in self.state["networks"].values() if n["bridge"]]


class _StateLock:
    """The manager's lock: a thread lock, and at the outermost hold a flock on `path` and a fresh
    read of the state file, so that two managers on one data root (a test's engines, a CLI tool
    next to the daemon) never act on a stale copy. Reentrant in one thread, as RLock."""

    def __init__(self, path: str, reload: Callable[[], None]) -> None:
        self.path, self.reload = path, reload
        self._rlock = threading.RLock()
        self._depth = 0
        self._fd = -1

    def __enter__(self) -> _StateLock:
        import fcntl

        self._rlock.acquire()
        self._depth += 1
        if self._depth == 1:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
                self.reload()
            except BaseException:
                self._release()
                raise
        return self

    def _release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd >= 0:
            os.close(self._fd)  # drops the flock
            self._fd = -1
        self._rlock.release()

    def __exit__(self, *exc: object) -> None:
        self._release()


def _label_ok(labels: Mapping[str, str], spec: str) -> bool:
    k, sep, v = spec.partition("=")
    return k in labels and (not sep or labels[k] == v)


def _epoch(ts: str) -> float:
    base, _, frac = ts.rstrip("Z").partition(".")
    import calendar

    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + float(f"0.{frac or 0}")
