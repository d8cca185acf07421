"""`palletd`: parse flags, merge the config file, listen, serve until SIGTERM/SIGINT.

One foreground command (docs/design/daemon.md); systemd runs the same (contrib/palletd.service,
Type=notify: READY=1 is sent once every listener accepts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import gc
import logging
import os
import signal
import socket
import sys
from typing import Any

from pallet.daemon.config import DEFAULT_CONFIG, LOG_LEVELS, DaemonConfig, load_file, merge
from pallet.errors import PalletError, Unavailable

log = logging.getLogger("palletd")

SHUTDOWN_TIMEOUT = 10.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="palletd", description="Pallet's daemon: serves the Docker Engine API.",
        argument_default=argparse.SUPPRESS)  # only flags actually given reach the merge
    p.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    p.add_argument("-H", "--host", dest="hosts", action="append", metavar="ADDR",
                   help="unix:///PATH or tcp://ADDR:PORT to listen on (repeatable; default "
                        "unix:///run/pallet/pallet.sock)")
    p.add_argument("--tlsverify", action="store_true", help="require TLS client certificates on TCP")
    p.add_argument("--tlscacert", metavar="FILE", help="CA that signs client certificates")
    p.add_argument("--tlscert", metavar="FILE", help="server certificate")
    p.add_argument("--tlskey", metavar="FILE", help="server key")
    p.add_argument("--insecure-tcp-loopback", action="store_true",
                   help="allow plain TCP on a loopback address (anyone local becomes root)")
    p.add_argument("--data-root", metavar="DIR", help="persistent state (default /var/lib/pallet)")
    p.add_argument("--exec-root", metavar="DIR", help="runtime state, socket, pid file (default /run/pallet)")
    p.add_argument("-p", "--pidfile", metavar="FILE", help="pid file (default EXEC_ROOT/palletd.pid)")
    p.add_argument("-G", "--group", metavar="GROUP", help="group owning the UNIX socket (default pallet)")
    p.add_argument("--config-file", "--config", dest="config_file", metavar="FILE",
                   help=f"daemon configuration, JSON (default {DEFAULT_CONFIG})")
    p.add_argument("-l", "--log-level", choices=LOG_LEVELS, help="log level (default info)")
    p.add_argument("-D", "--debug", action="store_true", help="debug logging")
    p.add_argument("--default-runtime", metavar="NAME",
                   help="OCI runtime for containers (default pallet-runtime)")
    p.add_argument("--label", dest="labels", action="append", metavar="KEY=VALUE", help="daemon label")
    p.add_argument("--live-restore", action="store_true", help="keep containers running without the daemon")
    p.add_argument("--ip-forward", type=lambda v: v.lower() in ("1", "true", "yes"), metavar="BOOL",
                   help="enable net.ipv4.ip_forward for bridge networks' outbound NAT (default true)")
    p.add_argument("--mtu", type=int, metavar="BYTES",
                   help="MTU of the default bridge network's interfaces (default 1500, as Docker)")
    p.add_argument("--monitor", choices=("conmon", "pallet"),
                   help="per-container monitor: conmon (the default when installed) or pallet (Python)")
    p.add_argument("--cgroup-parent", metavar="PATH",
                   help="parent cgroup of every container (default /pallet)")
    p.add_argument("--userns-default", choices=("host", "auto"),
                   help="user namespace of containers that ask for none (default host; auto: a range each)")
    p.add_argument("--userns-base", type=int, metavar="ID",
                   help="first host id of the --userns=auto pool (10000)")
    p.add_argument("--userns-size", type=int, metavar="N", help="host ids per --userns=auto container (2000)")
    p.add_argument("--userns-count", type=int, metavar="N", help="ranges in the --userns=auto pool (1000)")
    p.add_argument("--image-store-max-size", type=int, metavar="BYTES",
                   help="delete unused images, least recently used first, to keep the store under this")
    p.add_argument("--insecure-registry", dest="insecure_registries", action="append", metavar="HOST",
                   help="registry (host[:port] or CIDR) to allow plain HTTP to (repeatable; "
                        "loopback always is)")
    p.add_argument("--image-store-min-free", type=int, metavar="BYTES",
                   help="... or to keep this much free on the data root's file system")
    return p


def load_config(argv: list[str]) -> tuple[DaemonConfig | None, dict[str, Any]]:
    ns = vars(build_parser().parse_args(argv))
    if ns.pop("version", False):
        return None, ns
    explicit = "config_file" in ns
    path = ns.pop("config_file", DEFAULT_CONFIG)
    flags = {k: tuple(v) if isinstance(v, list) else v for k, v in ns.items()}
    return merge(flags, load_file(path, required=explicit), path), ns


def setup_logging(config: DaemonConfig) -> None:
    level = "debug" if config.debug else config.log_level
    levels = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
              "error": logging.ERROR, "fatal": logging.CRITICAL}
    logging.basicConfig(
        stream=sys.stderr,
        level=levels[level],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level != "debug":
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class PidFile:
    """The pid file, flock'ed for the daemon's life: a second palletd on the same exec-root fails
    at once instead of stealing the socket. A stale file (no lock holder) is simply reused."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(path) or "/", mode=0o711, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            other = os.pread(self._fd, 32, 0).decode(errors="replace").strip()
            os.close(self._fd)
            raise Unavailable(f"palletd is already running (pid {other or '?'}, pid file {path})") from exc
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(self._fd)

    def remove(self) -> None:
        # Only our own file: if the exec-root was removed and another palletd made a new pid file
        # at the same path, unlinking by name would delete theirs.
        st = os.fstat(self._fd)
        with contextlib.suppress(FileNotFoundError):
            cur = os.lstat(self.path)
            if (cur.st_dev, cur.st_ino) == (st.st_dev, st.st_ino):
                os.unlink(self.path)
        os.close(self._fd)


def sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state; nothing when not run by systemd (sd_notify(3))."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        s.sendall(message.encode())


async def serve(config: DaemonConfig) -> None:
    from aiohttp import web

    from pallet.api.server import create_app
    from pallet.api.server.app import default_engine_factory
    from pallet.api.server.backend import EngineBackend, ImageBackend
    from pallet.daemon import hostinfo, listeners

    addrs = [listeners.parse_address(h, config.socket_default) for h in config.effective_hosts]
    tls = None
    warnings: list[str] = []
    for addr in addrs:
        if addr.scheme == "tcp" and not listeners.check_tcp_allowed(addr, config):
            warnings.append(f"WARNING: API is accessible on http://{str(addr).removeprefix('tcp://')} "
                            "without encryption: every local user can control this daemon (root)")
    if any(a.scheme == "tcp" for a in addrs) and config.tlsverify:
        tls = listeners.tls_context(config)

    for d, mode in ((config.data_root, 0o711), (config.exec_root, 0o711)):
        os.makedirs(d, mode=mode, exist_ok=True)
    pidfile = PidFile(config.effective_pidfile)
    from pallet.daemon.idle import IdleReclaim, WorkerPool, idle_reclaim_with

    loop = asyncio.get_running_loop()
    idle = IdleReclaim(loop, idle_reclaim_with(WorkerPool(loop)))
    runner: web.AppRunner | None = None
    sockets: list[tuple[str, tuple[int, int] | None]] = []
    try:
        host = hostinfo.gather(config, engine=hostinfo.engine_id(config.data_root), warnings=tuple(warnings))
        if config.insecure_registries:
            import dataclasses

            host = dataclasses.replace(host, insecure_registries=tuple(config.insecure_registries))
        runtimes = {name: [spec["path"], *spec.get("runtimeArgs", [])]
                    for name, spec in config.runtimes.items()}
        from pallet.engine.userns import UsernsSettings, with_settings

        userns = UsernsSettings(default=config.userns_default, base=config.userns_base,
                                size=config.userns_size, count=config.userns_count)
        from pallet.engine.networking import with_ip_forward

        engine = EngineBackend(with_ip_forward(with_settings(default_engine_factory(
            host, cgroup_parent=config.cgroup_parent, runtimes=runtimes, monitor=config.monitor or None),
            userns), config.ip_forward, mtu=config.mtu))
        images = ImageBackend(config.data_root, max_size=config.image_store_max_size,
                              min_free=config.image_store_min_free)
        app = create_app(host, engine=engine, images=images, on_answer=idle.note)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT,
                               access_log=logging.getLogger("aiohttp.access"))
        await runner.setup()
        for addr in addrs:
            if addr.scheme == "unix":
                sock = listeners.unix_listener(addr.path, config.group)
                sockets.append((addr.path, listeners.file_id(addr.path)))
                await web.SockSite(runner, sock).start()
            else:
                sock = listeners.tcp_listener(addr)
                await web.SockSite(runner, sock, ssl_context=tls if config.tlsverify else None).start()
            log.info("API listen on %s%s", addr, " (mutual TLS)" if addr.scheme == "tcp" and tls else "")
        for w in warnings:
            log.warning("%s", w)

        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # A child forked from here (pyroute2's netns helpers, multiprocessing) inherits Python's
        # signal handlers and asyncio's wakeup fd: a SIGTERM sent to it would be written into
        # that fd and read by this loop as palletd's own. Children start without either.
        os.register_at_fork(after_in_child=_forget_daemon_signals)
        # Start-up's objects (modules, the engine's records) live as long as the daemon: frozen,
        # the collector's full passes never walk them again, the idle reclaim after a burst
        # (daemon/idle.py) included (~15 ms after 100 concurrent starts, ~20 unfrozen; issue 4).
        gc.collect()
        gc.freeze()
        log.info("palletd %s ready (pid %d, data-root %s, exec-root %s, API %s)", host.version,
                 os.getpid(), config.data_root, config.exec_root, "1.50")
        sd_notify("READY=1")
        await stop.wait()
        log.info("shutting down: closing listeners, waiting up to %.0fs for requests", SHUTDOWN_TIMEOUT)
        sd_notify("STOPPING=1")
    finally:
        idle.close()
        if runner is not None:
            await runner.cleanup()
        for path, ident in sockets:
            listeners.remove_socket(path, ident)
        pidfile.remove()
    log.info("palletd stopped")


def _forget_daemon_signals() -> None:
    try:  # the forking thread is the child's main thread (PyOS_AfterFork_Child)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
    except ValueError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        config, _ = load_config(args)
    except PalletError as exc:
        print(f"palletd: {exc}", file=sys.stderr)
        return 1
    if config is None:
        from pallet import __version__

        print(f"palletd version {__version__}")
        return 0
    if argv is None:  # the real command line, not a test calling main([...]) in its own process
        from pallet.daemon.malloc import forget_tuned, reexec_tuned

        reexec_tuned()  # returns when GLIBC_TUNABLES is set (pallet/daemon/malloc.py)
        forget_tuned()  # ours, not the children's
    setup_logging(config)
    try:
        asyncio.run(serve(config))
    except PalletError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
