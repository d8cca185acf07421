"""The sockets palletd listens on: a UNIX socket (0660, group `pallet`) and TCP only with mutual TLS.

Plain TCP gives root on the host to anyone who can reach the port (the API runs privileged
containers), so it is refused unless clients must present a certificate signed by
`--tlscacert` (`--tlsverify`), or the operator says `--insecure-tcp-loopback` and the address is
a loopback one. dockerd only warns and sleeps; Pallet refuses (docs/design/daemon.md).
"""

from __future__ import annotations

import contextlib
import errno
import grp
import ipaddress
import logging
import os
import socket
import ssl
from dataclasses import dataclass

from pallet.daemon.config import DaemonConfig
from pallet.errors import AlreadyExists, InvalidArgument, PermissionDenied

log = logging.getLogger("palletd")

DEFAULT_TLS_PORT = 2376


@dataclass(frozen=True)
class Address:
    scheme: str  # "unix" or "tcp"
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


def parse_address(value: str, default_socket: str) -> Address:
    """`unix:///path`, `unix://` (the default socket), `tcp://host:port`, `tcp://:port`, `fd://` no."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        raise InvalidArgument(f"-H {value}: want unix:///PATH or tcp://ADDR:PORT")
    if scheme == "unix":
        path = rest or default_socket.removeprefix("unix://")
        if not os.path.isabs(path):
            raise InvalidArgument(f"-H {value}: the socket path must be absolute")
        if len(path.encode()) > 107:
            raise InvalidArgument(f"-H {value}: socket paths are limited to 107 bytes (sun_path)")
        return Address("unix", path=path)
    if scheme == "tcp":
        hostport = rest.rstrip("/")
        if hostport.startswith("["):
            host, _, port_s = hostport[1:].partition("]")
            port_s = port_s.removeprefix(":")
        else:
            host, _, port_s = hostport.rpartition(":") if ":" in hostport else (hostport, "", "")
        if port_s and not port_s.isdigit():
            raise InvalidArgument(f"-H {value}: port {port_s!r} is not a number")
        port = int(port_s) if port_s else DEFAULT_TLS_PORT
        if not 0 < port < 65536:
            raise InvalidArgument(f"-H {value}: port {port} is out of range")
        return Address("tcp", host=host or "0.0.0.0", port=port)
    raise InvalidArgument(f"-H {value}: scheme {scheme!r} is not supported; use unix:// or tcp://")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_context(config: DaemonConfig) -> ssl.SSLContext:
    """Server TLS that requires client certificates signed by the configured CA."""
    missing = [flag for flag, value in (("--tlscacert", config.tlscacert), ("--tlscert", config.tlscert),
                                        ("--tlskey", config.tlskey)) if not value]
    if missing:
        raise InvalidArgument(f"--tlsverify needs {', '.join(missing)}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(config.tlscert), str(config.tlskey))
        ctx.load_verify_locations(cafile=str(config.tlscacert))
    except (OSError, ssl.SSLError) as exc:
        raise InvalidArgument(f"cannot load TLS files (--tlscert {config.tlscert}, --tlskey "
                              f"{config.tlskey}, --tlscacert {config.tlscacert}): {exc}") from exc
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def check_tcp_allowed(addr: Address, config: DaemonConfig) -> bool:
    """True when this TCP listener is to use TLS; raises PermissionDenied when it may not listen."""
    if config.tlsverify:
        return True
    if config.insecure_tcp_loopback:
        if is_loopback(addr.host):
            return False
        raise PermissionDenied(
            f"refusing to listen on {addr} without TLS: --insecure-tcp-loopback allows only loopback "
            "addresses (127.0.0.1, ::1, localhost); use --tlsverify --tlscacert --tlscert --tlskey")
    raise PermissionDenied(
        f"refusing to listen on {addr} without mutual TLS: anyone reaching the port would be root on "
        "this host. Use --tlsverify --tlscacert CA --tlscert CERT --tlskey KEY, or, for a loopback "
        "address only, --insecure-tcp-loopback")


def _stale_socket(path: str) -> bool:
    """True when `path` is a socket nobody listens on any more (left by a killed daemon)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    except OSError:
        return False
    else:
        return False
    finally:
        probe.close()


def unix_listener(path: str, group: str) -> socket.socket:
    """A listening UNIX socket at `path`: mode 0660, group `group` when that group exists.

    The socket is bound under umask 0177, so it is never reachable by others, even for the
    moment before chmod; a stale socket from a killed daemon is replaced, a live one is not.
    """
    os.makedirs(os.path.dirname(path) or "/", mode=0o755, exist_ok=True)
    if os.path.lexists(path):
        import stat

        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise AlreadyExists(f"{path} exists and is not a socket; not replacing it")
        if not _stale_socket(path):
            raise AlreadyExists(f"another daemon is listening on {path}")
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise PermissionDenied(f"cannot bind {path}: {exc.strerror}") from exc
    finally:
        os.umask(old)
    gid = _group_id(group)
    if gid is not None:
        try:
            os.chown(path, -1, gid)
        except PermissionError:
            log.warning("cannot give %s to group %s (not root?); it stays 0600", path, group)
            gid = None
    os.chmod(path, 0o660 if gid is not None else 0o600)
    if gid is None:
        log.info("group %r does not exist: %s is usable by root only (0600)", group, path)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _group_id(group: str) -> int | None:
    if not group:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


def tcp_listener(addr: Address) -> socket.socket:
    family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET
    host = "127.0.0.1" if addr.host == "localhost" else addr.host
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, addr.port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AlreadyExists(f"cannot listen on {addr}: the address is in use") from exc
        raise InvalidArgument(f"cannot listen on {addr}: {exc.strerror}") from exc
    sock.listen(128)
    sock.setblocking(False)
    return sock


def file_id(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of `path`, or None: to remove at shutdown only what we created."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def remove_socket(path: str, ident: tuple[int, int] | None = None) -> None:
    """Unlink our socket; if `ident` is given and the path is now another daemon's (our directory
    was removed and a new palletd bound the same path), leave it alone."""
    if ident is not None and file_id(path) != ident:
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
