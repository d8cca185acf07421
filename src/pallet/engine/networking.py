"""The engine's side of container networking: requests checked, namespaces made before start,
released after exit, and Docker's NetworkSettings shown.

`EngineNetworking` wraps one `pallet.network.manager.NetworkManager` for an `Engine`; the
engine calls it at create (`validate`, `configure`), start (`setup`, then `amend_spec` on the
OCI spec), exit (`teardown`), remove (`forget`), load (`reconcile`) and inspect (`settings`).
The network routes (pallet.api.server.routes.networks) call `manager` for networks and
`connect`/`disconnect` here (they need the container).

NetworkMode values, as Docker: "default"/"bridge" (the default bridge network), "host" (the
host's namespace), "none" (a namespace with loopback only), "container:<name|id>" (the
namespace of a running container), or a user-defined network's name or id.

/etc/hosts and /etc/resolv.conf are written at each start (pallet.network.etcfiles): the
container's addresses under its hostname, --add-host entries ("host-gateway" is the gateway of
the container's first network, a host address the container can always reach; Docker uses
docker0's), and the host's resolvers (loopback ones dropped) or --dns. On user-defined
networks the embedded DNS server (pallet.network.dns, when present) answers at the gateway.

--mac-address: Config.MacAddress (API < 1.44, still sent by the docker CLI) goes to the endpoint
of the NetworkMode network, EndpointSettings.MacAddress (1.44+) to its own network; both given
they must agree (moby's handleMACAddressBC). Bad values are a 400 at create.

Legacy links (HostConfig.Links, "name[:alias]"), as moby daemon/links: on the default bridge,
checked at start (the linked container must run and be on the default bridge: "Cannot link to a
non running container: /web AS /client/alias"), an /etc/hosts line "<ip> alias hostname name",
and the environment <ALIAS>_PORT, <ALIAS>_PORT_<port>_<PROTO>[_ADDR|_PORT|_PROTO] for each
exposed port (ranges of 3+ also _START/_END), <ALIAS>_NAME=/<container>/<alias> and
<ALIAS>_ENV_<var> for the linked container's Config.Env (but HOME and PATH); the container's own
Env wins. HostConfig.Links then reads "/web:/client/alias" (inspect). On a user-defined network a
link is a DNS name only the linking container resolves (the embedded DNS), no env, no check
that the target runs (Docker's behaviour); EndpointSettings.Links shows "web:alias".
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pallet.errors import Conflict, InvalidArgument, NotFound, PalletError
from pallet.network import links as linksmod
from pallet.network import ports as portsmod

_EP_KEYS = ("EndpointID", "MacAddress", "IPAddress", "IPPrefixLen", "Gateway", "GlobalIPv6Address",
            "GlobalIPv6PrefixLen", "IPv6Gateway")

if TYPE_CHECKING:
    from pallet.engine.containers import Container, Engine
    from pallet.network.manager import NetworkManager


class EngineNetworking:
    """See the module docstring. `manager` is made on first use (it talks to the kernel)."""

    def __init__(self, engine: Engine, *, manager: NetworkManager | None = None,
                 ip_forward: bool = False) -> None:
        self.engine = engine
        self._manager = manager
        self._ip_forward = ip_forward
        self._default_mtu = 0  # 0: as the default bridge's record says (1500 when made)
        self._lock = threading.Lock()
        self.dns: Any = None

    def set_ip_forward(self, enabled: bool) -> None:
        """dockerd's --ip-forward (palletd sets it through `with_ip_forward`)."""
        with self._lock:
            self._ip_forward = enabled
            if self._manager is not None:
                self._manager.ip_forward = enabled

    def set_default_mtu(self, mtu: int) -> None:
        """dockerd's --mtu: the default bridge network's MTU, from its next attachment on."""
        with self._lock:
            self._default_mtu = mtu
            if self._manager is not None:
                self._manager.set_default_mtu(mtu)

    @property
    def manager(self) -> NetworkManager:
        with self._lock:
            if self._manager is None:
                from pallet.network.manager import NetworkManager

                self._manager = NetworkManager(self.engine.data_root, self.engine.exec_root,
                                               ip_forward=self._ip_forward)
                if self._default_mtu:
                    self._manager.set_default_mtu(self._default_mtu)
                self._start_dns(self._manager)
            return self._manager

    def _start_dns(self, mgr: NetworkManager) -> None:
        """Run the embedded DNS server (pallet.network.dns) for user-defined networks, in a loop
        thread of its own: the engine is blocking and runs in worker threads (and without
        palletd in tests), the server is asyncio."""
        try:
            self.dns = _DnsRunner()
        except Exception as exc:  # the daemon serves without name resolution rather than not at all
            sys.stderr.write(f"pallet network: embedded DNS unavailable: {exc}\n")
            self.dns = None
            return
        mgr.hooks.append(self._dns_hook)

    def _dns_hook(self, nid: str, cid: str, names: Sequence[str], addrs: Sequence[str]) -> None:
        """The manager's endpoint hook: records up on connect, down on disconnect and exit. The
        network is served while it has endpoints (its gateway address exists only then)."""
        dns = self.dns
        if dns is None:
            return
        mgr = self.manager
        n = mgr.get(nid)
        if n["Name"] in ("bridge", "host", "none"):
            return  # Docker: no embedded DNS on the default bridge
        if names:
            gws = [f"{c['Gateway']}/{c['Subnet'].partition('/')[2]}" for c in n["IPAM"]["Config"]
                   if ":" not in c["Subnet"] or n["EnableIPv6"]]
            upstreams: list[str] = []
            with contextlib.suppress(NotFound):
                upstreams = list(self.engine.get(cid).host_config.get("Dns") or [])
            links: dict[str, str] = {}
            with contextlib.suppress(NotFound, InvalidArgument):
                conf = (mgr.container(cid) or {}).get("networks", {}).get(nid, {})
                raw = [*(self.engine.get(cid).host_config.get("Links") or []), *(conf.get("Links") or [])]
                links = {alias: name for name, alias in (linksmod.parse(v) for v in raw)}
            try:
                dns.call(dns.server.add_network(nid, gws, name=n["Name"], forward=not n["Internal"]))
                dns.server.set_records(nid, cid, names, [a for a in addrs if ":" not in a],
                                       [a for a in addrs if ":" in a], upstreams or None, links or None)
            except PalletError as exc:
                sys.stderr.write(f"pallet network: DNS for {cid[:12]} on {n['Name']}: {exc}\n")
            return
        dns.server.remove_records(nid, cid)
        if not [c for c in mgr.endpoints_of_network(nid) if c != cid]:
            with contextlib.suppress(PalletError):
                dns.call(dns.server.remove_network(nid))

    def close(self) -> None:
        """Stop the DNS server and the userland proxies, and let go of the held ports, as the
        daemon's exit would (containers keep their namespaces and rules; the next engine's
        `reconcile` holds their ports and proxies their IPv6 bindings again)."""
        if self.dns is not None:
            self.dns.close()
            self.dns = None
        if self._manager is not None:
            self._manager.close()

    # --- create ---------------------------------------------------------------------------------------
    @staticmethod
    def validate(cfg: dict[str, Any], hc: Mapping[str, Any]) -> tuple[str, dict[str, Any],
                                                                      list[portsmod.PortRequest]]:
        """Pop NetworkingConfig off a validated create request's Config and check the network
        fields: (mode, EndpointsConfig, port requests). Names are resolved in `configure`."""
        from pallet.network import etcfiles

        netcfg = cfg.pop("NetworkingConfig", None) or {}
        endpoints = dict(netcfg.get("EndpointsConfig") or {})
        mode = hc.get("NetworkMode") or "default"
        if not isinstance(mode, str):
            raise InvalidArgument("HostConfig.NetworkMode: want a string")
        if mode.startswith("container:") and not mode.partition(":")[2]:
            raise InvalidArgument("invalid network mode: container: needs a container name or id")
        if mode in ("host", "none") or mode.startswith("container:"):
            # PortBindings/PublishAllPorts: Docker accepts and ignores them here (the CLI warns).
            shared = cfg.get("Hostname") or hc.get("Dns") or hc.get("ExtraHosts")
            if mode.startswith("container:") and shared:
                raise InvalidArgument("conflicting options: hostname, dns or add-host and the network mode "
                                      f"{mode}")
        for d in hc.get("Dns") or []:
            etcfiles.validate_dns_server(d)
        for s in hc.get("DnsSearch") or []:
            etcfiles.validate_dns_search(s)
        for o in hc.get("DnsOptions") or []:
            etcfiles.validate_dns_option(o)
        for h in hc.get("ExtraHosts") or []:
            etcfiles.parse_extra_host(h)
        links = hc.get("Links") or []
        if not isinstance(links, list) or not all(isinstance(x, str) for x in links):
            raise InvalidArgument("HostConfig.Links: want a list of strings")
        for x in links:
            linksmod.parse(x)
        if links and mode == "host":
            raise InvalidArgument("conflicting options: host type networking can't be used with links. This "
                                  "would result in undefined behavior")
        if links and mode.startswith("container:"):
            raise InvalidArgument("conflicting options: container type network can't be used with links. "
                                  "This would result in undefined behavior")
        endpoints = _mac_addresses(cfg, mode, endpoints)
        reqs = portsmod.requests(hc.get("PortBindings"), (cfg.get("ExposedPorts") or {}).keys(),
                                 bool(hc.get("PublishAllPorts")))
        return mode, endpoints, reqs

    def configure(self, cid: str, name: str, mode: str, endpoints: Mapping[str, Any],
                  reqs: Sequence[portsmod.PortRequest], exposed: Sequence[str] = (),
                  publish_all: bool = False, links: Sequence[str] = ()) -> None:
        """Record the container's networks (NotFound for an unknown network). -P's exposed
        ports come from the full config (the image's EXPOSE too). Link targets must exist now,
        as moby checks at create (whether they run is checked at start)."""
        for value in links:
            self._link_target(linksmod.parse(value)[0])
        if publish_all:
            have = {(r.container_port, r.proto) for r in reqs}
            for key in exposed:
                port, proto = portsmod.parse_port_key(key)
                if (port, proto) not in have:
                    reqs = [*reqs, portsmod.PortRequest(proto, port, "", 0, 0)]
                    have.add((port, proto))
        if mode.startswith("container:"):
            self.engine.get(mode.partition(":")[2])  # NotFound now rather than at start
        self.manager.configure(cid, name, mode, endpoints, reqs)

    # --- start and exit -------------------------------------------------------------------------------
    def setup(self, c: Container) -> None:
        """Before the runtime starts `c`: its namespace, interfaces, ports; then its etc files."""
        mgr = self.manager
        if mgr.container(c.id) is None:  # made before networking existed: the default, as Docker
            mgr.configure(c.id, c.name, c.host_config.get("NetworkMode") or "default", {}, [])
        mode = c.host_config.get("NetworkMode") or "default"
        if mode.startswith("container:"):
            other = self.engine.get(mode.partition(":")[2])
            if not other.state.status.is_active:
                raise Conflict(f"cannot join network namespace of a non running container: {other.id}")
        children = self._links(c)
        mgr.setup(c.id, c.config.get("Hostname") or "")
        if children:
            c.host_config["Links"] = [f"/{child.name}:/{c.name}/{alias}" for child, alias in children]
        try:
            self._write_etc_files(c)
        except BaseException:
            mgr.teardown(c.id)
            raise

    def _link_target(self, name: str) -> Container:
        try:
            return self.engine.get(name)
        except NotFound as exc:
            # moby: an invalid-parameter error, not "not found" (which the CLI would take for a
            # missing image, moby#39823)
            raise InvalidArgument(f"could not get container for {name}: {exc}") from None

    def _links(self, c: Container) -> list[tuple[Container, str]]:
        """The linked containers and their aliases, checked as moby does at start (see the
        module docstring)."""
        raw = c.host_config.get("Links") or []
        mode = c.host_config.get("NetworkMode") or "default"
        out = []
        for value in raw:
            name, alias = linksmod.parse(value)
            child = self._link_target(name)
            if mode in ("default", "bridge"):
                seen = {child.id}
                while (child.host_config.get("NetworkMode") or "").startswith("container:"):
                    child = self.engine.get(child.host_config["NetworkMode"].partition(":")[2])
                    if child.id in seen:
                        break
                    seen.add(child.id)
                if child.host_config.get("NetworkMode") == "host":
                    raise InvalidArgument("conflicting options: host type networking can't be used with "
                                          "links. This would result in undefined behavior")
                if not child.state.status.is_active:
                    raise PalletError(f"Cannot link to a non running container: /{child.name} AS "
                                      f"/{c.name}/{alias}")
                if self._bridge_endpoint(child.id) is None:
                    raise PalletError(f"Cannot link to /{child.name}, as it does not belong to the default "
                                      "network")
            out.append((child, alias))
        return out

    def _bridge_endpoint(self, cid: str) -> dict[str, Any] | None:
        st = self.manager.container(cid) or {}
        try:
            bridge = self.manager.get("bridge")["Id"]
        except NotFound:
            return None
        ep = st.get("endpoints", {}).get(bridge)
        return dict(ep) if ep else None

    def _link_env_and_hosts(self, c: Container) -> tuple[list[str], list[tuple[str, str]]]:
        """For a container on the default bridge: the environment its links give it and its
        /etc/hosts lines for them (moby daemon/links.go ToEnv, buildSandboxOptions)."""
        mode = c.host_config.get("NetworkMode") or "default"
        if mode not in ("default", "bridge"):
            return [], []
        env: list[str] = []
        hosts: list[tuple[str, str]] = []
        for value in c.host_config.get("Links") or []:
            name, alias = linksmod.parse(value)
            try:
                child = self.engine.get(name)
            except NotFound:
                continue
            ep = self._bridge_endpoint(child.id)
            if ep is None:
                continue
            names = alias + " " + (child.config.get("Hostname") or child.id[:12])
            if alias != child.name:
                names += " " + child.name
            for ip in (ep["IPAddress"], ep["GlobalIPv6Address"]):
                if ip:
                    hosts.append((ip, names))
            env += linksmod.env(alias, f"/{c.name}/{alias}", ep["IPAddress"],
                                list((child.config.get("ExposedPorts") or {}).keys()),
                                list(child.config.get("Env") or []))
        return env, hosts

    def _write_etc_files(self, c: Container) -> None:
        from pallet.network import etcfiles

        hc = c.host_config
        mode = hc.get("NetworkMode") or "default"
        d = os.path.join(self.engine.containers_dir, c.id)
        if mode.startswith("container:"):
            other = self.engine.get(mode.partition(":")[2])
            od = os.path.join(self.engine.containers_dir, other.id)
            for f in ("hosts", "resolv.conf"):
                with contextlib.suppress(OSError):
                    _write(os.path.join(d, f), open(os.path.join(od, f)).read())  # noqa: SIM115
            return
        st = self.manager.container(c.id) or {}
        eps = [st["endpoints"][nid] for nid in st.get("order", []) if nid in st.get("endpoints", {})]
        addrs = [a for ep in eps for a in (ep["IPAddress"], ep["GlobalIPv6Address"]) if a]
        gateway = [eps[0]["Gateway"]] if eps and eps[0]["Gateway"] else self._default_gateway()
        extra = list(hc.get("ExtraHosts") or [])
        if mode == "host":
            try:
                host_hosts = open("/etc/hosts").read()  # noqa: SIM115
            except OSError:
                host_hosts = ""
            hosts = etcfiles.host_network_hosts_file(host_hosts, extra_hosts=extra, host_gateway=gateway)
        else:
            hosts = etcfiles.hosts_file(c.config.get("Hostname") or c.id[:12], addrs,
                                        domainname=c.config.get("Domainname") or "", extra_hosts=extra,
                                        host_gateway=gateway, links=self._link_env_and_hosts(c)[1])
        src = etcfiles.host_resolv_conf_path()
        try:
            host_resolv = src.read_text()
        except OSError:
            host_resolv = ""
        # The embedded DNS answers at the gateway of the container's first user-defined network
        # (Docker switches a container to its resolver when one such network joins, even later).
        user_gws = [st["endpoints"][nid]["Gateway"] for nid in st.get("order", [])
                    if nid in st.get("endpoints", {}) and self.manager.network_name(nid) != "bridge"
                    and st["endpoints"][nid]["Gateway"]]
        dns_on = bool(user_gws) and self.dns is not None
        rmode = "host" if mode == "host" else ("internal" if dns_on else "legacy")
        resolv = etcfiles.resolv_conf(host_resolv, mode=rmode,  # type: ignore[arg-type]
                                      internal_nameservers=user_gws[:1] if dns_on else [],
                                      dns=hc.get("Dns") or [], dns_search=hc.get("DnsSearch") or [],
                                      dns_options=hc.get("DnsOptions") or [],
                                      ipv6=any(ep["GlobalIPv6Address"] for ep in eps), source_path=str(src))
        _write(os.path.join(d, "hosts"), hosts)
        _write(os.path.join(d, "resolv.conf"), resolv.content)

    def _default_gateway(self) -> list[str]:
        with contextlib.suppress(NotFound):
            n = self.manager.get("bridge")
            return [c["Gateway"] for c in n["IPAM"]["Config"] if ":" not in c["Subnet"]][:1]
        return []

    def amend_spec(self, c: Container, spec: dict[str, Any]) -> None:
        """Point the spec's network namespace at the one `setup` made (or the shared one)."""
        mode = c.host_config.get("NetworkMode") or "default"
        nss = spec.get("linux", {}).get("namespaces", [])
        path = ""
        if mode.startswith("container:"):
            other = self.engine.get(mode.partition(":")[2])
            ost = self.manager.container(other.id) or {}
            if other.host_config.get("NetworkMode") == "host":
                spec["linux"]["namespaces"] = [n for n in nss if n["type"] != "network"]
                return
            path = ost.get("netns") or f"/proc/{other.state.pid}/ns/net"
        else:
            st = self.manager.container(c.id) or {}
            path = st.get("netns") or ""
            link_env = self._link_env_and_hosts(c)[0] if c.host_config.get("Links") else []
            if link_env:
                # moby CreateDaemonEnvironment: link variables first, the container's Env wins
                proc = spec.setdefault("process", {})
                have = {e.partition("=")[0] for e in proc.get("env") or []}
                own = list(proc.get("env") or [])
                proc["env"] = [*(e for e in link_env if e.partition("=")[0] not in have), *own]
        if path:
            for n in nss:
                if n["type"] == "network":
                    n["path"] = path

    def teardown(self, cid: str) -> None:
        try:
            self.manager.teardown(cid)
        except (PalletError, OSError) as exc:
            sys.stderr.write(f"pallet network: tearing down {cid[:12]}: {exc}\n")

    def rename(self, cid: str, name: str) -> None:
        if self._manager is not None or _has_state(self.engine):
            self.manager.rename(cid, name)

    def forget(self, cid: str) -> None:
        try:
            self.manager.forget(cid)
        except (PalletError, OSError) as exc:
            sys.stderr.write(f"pallet network: forgetting {cid[:12]}: {exc}\n")

    def reconcile(self, active: Sequence[str]) -> None:
        """At engine load: only when something of ours may exist (a state file), so that an
        engine that never networked touches no kernel object."""
        if self._manager is None and not os.path.exists(os.path.join(self.engine.data_root, "network",
                                                                     "networks.json")):
            return
        try:
            self.manager.reconcile(active)
        except (PalletError, OSError) as exc:
            sys.stderr.write(f"pallet network: reconcile: {exc}\n")

    # --- connect / disconnect (routes) ------------------------------------------------------------
    def connect(self, net_ref: str, container_ref: str, endpoint_config: Mapping[str, Any] | None) -> None:
        c = self.engine.get(container_ref)
        with c.lock:
            if self.manager.container(c.id) is None:
                self.manager.configure(c.id, c.name, c.host_config.get("NetworkMode") or "default", {}, [])
            self.manager.connect(net_ref, c.id, endpoint_config or {})
            if c.state.status.is_active:
                with contextlib.suppress(PalletError, OSError):
                    self._write_etc_files(c)

    def disconnect(self, net_ref: str, container_ref: str, force: bool = False) -> None:
        try:
            c = self.engine.get(container_ref)
        except NotFound:
            if not force:
                raise
            return
        with c.lock:
            self.manager.disconnect(net_ref, c.id, force)

    def prune(self, filters: Mapping[str, Sequence[str]] | None) -> list[str]:
        from pallet.engine.containers import _prune_until

        flt = {k: list(v) for k, v in (filters or {}).items()}
        until = _prune_until(flt.pop("until")[0]) if flt.get("until") else None
        return self.manager.prune(flt, until=until)

    # --- inspect ----------------------------------------------------------------------------------
    def settings(self, c: Container) -> dict[str, Any]:
        """Docker's NetworkSettings for container inspect."""
        st = self.manager.container(c.id) if self._manager is not None or _has_state(self.engine) else None
        mode = c.host_config.get("NetworkMode") or "default"
        out: dict[str, Any] = {
            "Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {}, "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "SecondaryIPAddresses": None,
            "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": {}}
        if st is None:
            name = "host" if mode == "host" else "none" if mode == "none" else None
            if name:
                out["Networks"][name] = _empty_endpoint("", "")
            return out
        active = c.state.status.is_active
        if st.get("netns"):
            out["SandboxKey"] = st["netns"]
            out["SandboxID"] = c.id
        for nid in st.get("order", []):
            name = self.manager.network_name(nid)
            conf = st["networks"].get(nid, {})
            ep = st.get("endpoints", {}).get(nid)
            e = _empty_endpoint(nid, "")
            if conf:
                e["Aliases"] = conf.get("Aliases") or None
                e["MacAddress"] = conf.get("MacAddress") or ""
                if name != "bridge":
                    raw = [*(c.host_config.get("Links") or []), *(conf.get("Links") or [])]
                    e["Links"] = list(dict.fromkeys(":".join(linksmod.parse(v)) for v in raw)) or None
                if conf.get("IPv4Address") or conf.get("IPv6Address"):
                    e["IPAMConfig"] = {k: conf[k] for k in ("IPv4Address", "IPv6Address") if conf.get(k)}
            if ep is not None and active:
                e.update({k: ep[k] for k in _EP_KEYS})
                if name != "bridge":
                    e["DNSNames"] = [c.name, c.id[:12], *(conf.get("Aliases") or [])]
            out["Networks"][name] = e
            if name == "bridge" and ep is not None and active:
                for k in _EP_KEYS:
                    out[k] = ep[k]
        if active and st.get("networks"):
            ports: dict[str, Any] = {k: None for k in (c.config.get("ExposedPorts") or {})}
            for b in st.get("bound", []):
                key = f"{b['ContainerPort']}/{b['Proto']}"
                ports[key] = [*(ports.get(key) or []), {"HostIp": b["HostIp"] or "0.0.0.0",
                                                        "HostPort": str(b["HostPort"])}]
            out["Ports"] = ports
        return out

    def summary(self, c: Container) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """ContainerSummary's Ports and NetworkSettings."""
        s = self.settings(c)
        ports: list[dict[str, Any]] = []
        for key, binds in (s["Ports"] or {}).items():
            port, proto = portsmod.parse_port_key(key)
            if not binds:
                ports.append({"PrivatePort": port, "Type": proto})
            for b in binds or []:
                ports.append({"IP": b["HostIp"], "PrivatePort": port, "PublicPort": int(b["HostPort"]),
                              "Type": proto})
        return ports, {"Networks": s["Networks"]}


def with_ip_forward(factory: Callable[[Any], Any], enabled: bool, *, mtu: int = 0) -> Callable[[Any], Any]:
    """Wrap palletd's engine factory so that the engine's networks apply --ip-forward and
    --mtu (0: leave the default bridge's MTU as it is)."""

    def build(image_service: Any) -> Any:
        engine = factory(image_service)
        engine.networking.set_ip_forward(enabled)
        if mtu:
            engine.networking.set_default_mtu(mtu)
        return engine

    return build


class _DnsRunner:
    """A DnsServer served by an asyncio loop in a daemon thread; `call` runs a coroutine there."""

    def __init__(self) -> None:
        import asyncio

        from pallet.network.dns import DnsServer

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="pallet-dns", daemon=True)
        self.thread.start()
        self.server = DnsServer()
        self.call(self.server.start())

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


def _mac_addresses(cfg: Mapping[str, Any], mode: str, endpoints: dict[str, Any]) -> dict[str, Any]:
    """Check the MAC addresses of a create request and move Config.MacAddress onto the endpoint
    of the NetworkMode network (see the module docstring). Returns the endpoints."""
    from pallet.network.manager import parse_mac

    for ep in endpoints.values():
        if isinstance(ep, Mapping) and ep.get("MacAddress"):
            parse_mac(ep["MacAddress"])
    mac = cfg.get("MacAddress")
    if not mac:
        return endpoints
    mac = parse_mac(mac)
    if mode in ("host", "none") or mode.startswith("container:"):
        raise InvalidArgument("conflicting options: mac-address and the network mode")
    primary = "bridge" if mode in ("default", "bridge") else mode
    key = next((k for k in endpoints if k == primary or (primary == "bridge" and k == "default")), primary)
    ep = dict(endpoints.get(key) or {})
    if ep.get("MacAddress") and parse_mac(ep["MacAddress"]) != mac:
        raise InvalidArgument("the container-wide MAC address must match the endpoint-specific MAC address "
                              "for the main network, or be left empty")
    ep["MacAddress"] = mac
    return {**endpoints, key: ep}


def _has_state(engine: Engine) -> bool:
    return os.path.exists(os.path.join(engine.data_root, "network", "networks.json"))


def _empty_endpoint(nid: str, eid: str) -> dict[str, Any]:
    return {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
            "GwPriority": 0, "NetworkID": nid, "EndpointID": eid, "Gateway": "", "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "DNSNames": None}


def _write(path: str, text: str) -> None:
    # In place, not temp + rename: a running container has the file bind-mounted by inode.
    with open(path, "w") as f:
        f.write(text)


def host_name() -> str:
    return socket.gethostname()
