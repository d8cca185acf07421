"""Packet filtering and NAT for bridge networks: one nftables table per daemon, rebuilt whole.

Why nftables, not iptables: the kernel applies an `nft -f` script atomically, so the whole
ruleset of a daemon is one pure function of its state (`render`, table-tested without root)
replaced in one transaction; no rule is ever half-added, and cleanup is "delete the table".
Debian 12's iptables is itself iptables-nft, so both live in the same netfilter core. The
rules live in their own `inet` table (default name "pallet"), every rule carries a comment
naming the network or container it belongs to, and they are removed with it (the next render
lacks them).

Coexistence with Docker (or any iptables ruleset whose FORWARD policy is DROP): a packet must
be accepted by every table that hooks forward, so an accept in our table is not enough there.
`IptablesForward` then inserts, in iptables' filter FORWARD chain, one ACCEPT per direction for
each of our bridges, tagged `--comment pallet:<table>`; our own table keeps doing the real
filtering. When FORWARD accepts by default and no DOCKER-USER chain exists, nothing is added.

What the table does (compare moby's libnetwork/drivers/bridge/setup_ip_tables_linux.go):
- forward: traffic into a bridge from elsewhere only when it is a reply or was DNATed (a
  published port); this isolates networks from each other and from the outside. An internal
  network also drops everything leaving its bridge for another interface.
- nat prerouting/output: to a local address, a published port is DNATed to the container
  ("fib daddr type local" is iptables' "-m addrtype --dst-type LOCAL"). 127.0.0.1 works
  because the bridge has route_localnet=1 (set by the driver) and the source is masqueraded
  out of the bridge, as Docker with --userland-proxy=false does; no userland proxy process
  copies bytes (throughput of a published port is the bridge's).
- nat postrouting: masquerade for non-internal networks leaving their bridge; hairpin (a
  container reaching a published port, its own or a neighbour's, through a host address) is
  masqueraded too, so replies come back through the host.
- IPv6 published ports are DNATed the same way ("dnat ip6 to [addr]:port") for every local
  IPv6 address but ::1, when the container has an IPv6 address: IPv6 has no route_localnet (a
  ::1 source may not leave lo, RFC 4291 §2.5.3), so [::1] is served by the userland proxy
  (pallet.network.proxy), which listens on the binding's socket; Docker does the same.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pallet.errors import PalletError

NFT = "nft"
IPTABLES = "iptables"
OWNER_PREFIX = "pallet data-root="


@dataclass(frozen=True)
class FwNetwork:
    """A bridge network as the firewall sees it."""

    id: str
    bridge: str
    subnets: tuple[str, ...]
    internal: bool = False
    masquerade: bool = True


@dataclass(frozen=True)
class FwPort:
    """One published port: host_ip "" is every local address of container_ip's family (IPv6:
    but ::1, see the module docstring)."""

    container: str
    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int


def _q(s: str) -> str:
    return '"' + s.replace('"', "") + '"'


def render(table: str, networks: Sequence[FwNetwork], ports: Sequence[FwPort], owner: str = "") -> str:
    """The nft script that replaces table `inet <table>` with the rules for `networks` and
    `ports`; with neither, a script that deletes the table. `owner` (the daemon's data root)
    goes into the table's comment, for `Firewall.sweep_orphans`."""
    head = [f"table inet {table} {{}}", f"delete table inet {table}"]
    if not networks and not ports:
        return "\n".join(head) + "\n"
    fwd: list[str] = []
    post: list[str] = []
    for n in networks:
        tag = f"comment {_q(f'pallet:network:{n.id[:12]}')}"
        br = _q(n.bridge)
        v4 = [s for s in n.subnets if ":" not in s]
        v6 = [s for s in n.subnets if ":" in s]
        fwd.append(f"oifname {br} iifname != {br} ct state established,related accept {tag}")
        if not n.internal:
            fwd.append(f"oifname {br} iifname != {br} ct status dnat accept {tag}")
        fwd.append(f"oifname {br} iifname != {br} drop {tag}")
        if n.internal:
            fwd.append(f"iifname {br} oifname != {br} drop {tag}")
            continue
        post.append(f"oifname {br} ip saddr 127.0.0.0/8 masquerade {tag}")
        for s in v4:
            post.append(f"oifname {br} ip saddr {s} ct status dnat masquerade {tag}")
            if n.masquerade:
                post.append(f"ip saddr {s} oifname != {br} masquerade {tag}")
        for s in v6:
            post.append(f"oifname {br} ip6 saddr {s} ct status dnat masquerade {tag}")
            if n.masquerade:
                post.append(f"ip6 saddr {s} oifname != {br} masquerade {tag}")
    dnat: list[str] = []
    for p in ports:
        tag = f"comment {_q(f'pallet:container:{p.container[:12]}')}"
        if ":" in p.container_ip:
            match = f"ip6 daddr {p.host_ip}" if p.host_ip not in ("", "::") else "ip6 daddr != ::1"
            dnat.append(f"{match} {p.proto} dport {p.host_port} dnat ip6 to [{p.container_ip}]:"
                        f"{p.container_port} {tag}")
            continue
        match = f"ip daddr {p.host_ip}" if p.host_ip else "meta nfproto ipv4"
        dnat.append(f"{match} {p.proto} dport {p.host_port} dnat ip to {p.container_ip}:{p.container_port} "
                    f"{tag}")
    body = [f"table inet {table} {{",
            *([f"  comment {_q(OWNER_PREFIX + owner)}"] if owner else []),
            "  chain forward {", "    type filter hook forward priority filter; policy accept;",
            *(f"    {r}" for r in fwd), "  }",
            "  chain published {", *(f"    {r}" for r in dnat), "  }",
            "  chain prerouting {", "    type nat hook prerouting priority dstnat; policy accept;",
            "    fib daddr type local jump published", "  }",
            "  chain output {", "    type nat hook output priority -100; policy accept;",
            "    fib daddr type local jump published", "  }",
            "  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;",
            *(f"    {r}" for r in post), "  }",
            "}"]
    return "\n".join(head + body) + "\n"


class Firewall:
    """Applies rendered rulesets with `nft -f -` (atomic) and keeps iptables' FORWARD open for
    our bridges where it needs to be (see the module docstring)."""

    def __init__(self, table: str = "pallet", *, owner: str = "", nft: str = NFT,
                 iptables: str = IPTABLES) -> None:
        self.table, self.owner = table, owner
        self.nft, self.iptables = nft, iptables

    def apply(self, networks: Sequence[FwNetwork], ports: Sequence[FwPort]) -> None:
        script = render(self.table, networks, ports, self.owner)
        if shutil.which(self.nft) is None:
            raise PalletError("nftables is needed for bridge networks: install Debian's nftables package")
        r = subprocess.run([self.nft, "-f", "-"], input=script, capture_output=True, text=True)
        if r.returncode != 0:
            raise PalletError(f"nft -f: {r.stderr.strip()}")
        IptablesForward(self.table, self.iptables).sync([n.bridge for n in networks])

    def flush(self) -> None:
        """Remove every rule of this daemon."""
        self.apply([], [])

    def sweep_orphans(self, delete_link: Callable[[str], None]) -> list[str]:
        """Delete the tables (and the bridges their rules name) of daemons whose data root is
        gone: a test's engine dropped with its containers still attached, its directory then
        removed, leaves them to nobody else. Only tables carrying our owner comment are
        considered. Returns the tables deleted."""
        if shutil.which(self.nft) is None:
            return []
        listing = subprocess.run([self.nft, "list", "tables"], capture_output=True, text=True).stdout
        gone = []
        for line in listing.splitlines():
            parts = line.split()
            if len(parts) != 3 or parts[1] != "inet" or not parts[2].startswith("pallet"):
                continue
            name = parts[2]
            text = subprocess.run([self.nft, "list", "table", "inet", name], capture_output=True,
                                  text=True).stdout
            m = re.search(r'comment "' + re.escape(OWNER_PREFIX) + r'([^"]*)"', text)
            if m is None or not m.group(1) or os.path.exists(os.path.join(m.group(1), "network")):
                continue
            for bridge in sorted(set(re.findall(r'oifname "([^"]+)"', text))):
                with contextlib.suppress(PalletError):
                    delete_link(bridge)
            subprocess.run([self.nft, "delete", "table", "inet", name], capture_output=True)
            IptablesForward(name, self.iptables).sync([])
            gone.append(name)
        return gone


class IptablesForward:
    """ACCEPT rules for our bridges in iptables' filter FORWARD chain, only when that chain
    would drop them otherwise (policy DROP, or Docker's DOCKER-USER chain present)."""

    def __init__(self, table: str, iptables: str = IPTABLES) -> None:
        self.tag = f"pallet:{table}"
        self.iptables = iptables

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.iptables, "-w", "5", *args], capture_output=True, text=True)

    @staticmethod
    def wanted(tag: str, bridges: Iterable[str]) -> list[list[str]]:
        out = []
        for b in sorted(set(bridges)):
            out.append(["-i", b, "-m", "comment", "--comment", tag, "-j", "ACCEPT"])
            out.append(["-o", b, "-m", "comment", "--comment", tag, "-j", "ACCEPT"])
        return out

    def sync(self, bridges: Iterable[str]) -> None:
        if shutil.which(self.iptables) is None:
            return
        listing = self._run("-S")
        if listing.returncode != 0:
            return  # no iptables filter table (module not loaded): nothing drops our packets there
        lines = listing.stdout.splitlines()
        needed = "-P FORWARD DROP" in lines or "-N DOCKER-USER" in lines
        ours = [ln.split()[2:] for ln in lines if ln.startswith("-A FORWARD ") and self.tag in ln]
        want = self.wanted(self.tag, bridges) if needed else []
        norm = [[a.strip('"') for a in r] for r in ours]
        for rule, raw in zip(norm, ours):
            if rule not in want:
                with contextlib.suppress(OSError):
                    self._run("-D", "FORWARD", *[a.strip('"') for a in raw])
        for rule in want:
            if rule not in norm:
                r = self._run("-I", "FORWARD", "1", *rule)
                if r.returncode != 0:
                    raise PalletError(f"iptables -I FORWARD {' '.join(rule)}: {r.stderr.strip()}")
