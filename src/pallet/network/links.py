"""Legacy container links (`--link name:alias`): the value parsed and the environment they give.

Pure functions, following moby: `parse` is opts.ParseLink (which also reads the stored form
"/web:/client/alias" back), `env` is daemon/links.Link.ToEnv. The engine's side (which
containers, /etc/hosts lines, checks at start) is in pallet.engine.networking.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

from pallet.errors import InvalidArgument


def parse(value: str) -> tuple[str, str]:
    """"web", "web:alias" or the stored "/web:/client/alias" as (name, alias)."""
    if not value:
        raise InvalidArgument("empty string specified for links")
    parts = value.split(":", 2)
    if len(parts) > 2:
        raise InvalidArgument(f"bad format for links: {value}")
    if len(parts) == 1:
        name = value.lstrip("/")
        return name, name
    name, alias = parts
    if name.startswith("/"):
        return name[1:], posixpath.basename(alias)
    if not name or not alias:
        raise InvalidArgument(f"bad format for links: {value}")
    return name, alias


def _port_key(key: str) -> tuple[int, str]:
    port, _, proto = key.partition("/")
    return int(port.split("-")[0]), (proto or "tcp").lower()


def env(alias: str, link_name: str, ip: str, exposed: Sequence[str], child_env: Sequence[str]) -> list[str]:
    """The variables a link gives (moby daemon/links.Link.ToEnv): `alias` is the link's alias,
    `link_name` "/<container>/<alias>", `ip` the linked container's address on the default
    bridge, `exposed` its ExposedPorts keys ("80/tcp"), `child_env` its Config.Env."""
    prefix = alias.upper().replace("-", "_")
    out: list[str] = []
    # moby sorts by number, tcp before udp on the same number; the first is the default port
    ports = sorted({_port_key(k) for k in exposed}, key=lambda p: (p[0], p[1] != "tcp"))
    if ports:
        port, proto = ports[0]
        out.append(f"{prefix}_PORT={proto}://{ip}:{port}")
    i = 0
    while i < len(ports):  # runs of 3+ contiguous ports also get _START/_END (moby nextContiguous)
        j = i
        while j + 1 < len(ports) and ports[j + 1][0] == ports[j][0] + 1:
            j += 1
        if j > i + 1:
            (p, proto), (q, qproto) = ports[i], ports[j]
            base = f"{prefix}_PORT_{p}_{proto.upper()}"
            out += [f"{base}_START={proto}://{ip}:{p}", f"{base}_ADDR={ip}", f"{base}_PROTO={proto}",
                    f"{base}_PORT_START={p}", f"{prefix}_PORT_{p}_{qproto.upper()}_END={qproto}://{ip}:{q}",
                    f"{prefix}_PORT_{p}_{qproto.upper()}_PORT_END={q}"]
            i = j + 1
            continue
        i += 1
    for port, proto in ports:
        base = f"{prefix}_PORT_{port}_{proto.upper()}"
        out += [f"{base}={proto}://{ip}:{port}", f"{base}_ADDR={ip}", f"{base}_PORT={port}",
                f"{base}_PROTO={proto}"]
    out.append(f"{prefix}_NAME={link_name}")
    for e in child_env:
        key, sep, val = e.partition("=")
        if not sep or key in ("HOME", "PATH"):
            continue  # moby: set by builds, not relevant to linked containers
        out.append(f"{prefix}_ENV_{key}={val}")
    return out
