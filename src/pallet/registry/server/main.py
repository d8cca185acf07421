"""`pallet registry serve|gc`: run the registry server, or collect its garbage offline.

    pallet registry serve [--addr HOST:PORT] [--root DIR] [--config FILE] [--tls-cert F --tls-key F]
    pallet registry gc --root DIR [--config FILE] [--dry-run]

Flags win over the config file (config.py documents it). `serve` prints one line to stderr,
`pallet registry: listening on http(s)://HOST:PORT`, once it accepts connections (port 0 picks
a free port, and the line names it), and stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pallet.errors import InvalidArgument, PalletError

if TYPE_CHECKING:
    from pallet.registry.server.config import RegistryConfig
    from pallet.registry.server.storage import FilesystemStorage

USAGE = """Usage:  pallet registry COMMAND

Run Pallet's own image registry (the OCI distribution API)

Commands:
  serve       Run the registry server
  gc          Remove blobs no manifest refers to (the server must be stopped)

Run 'pallet registry COMMAND --help' for more information on a command.
"""


def _split_addr(addr: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InvalidArgument(f"--addr {addr!r}: expected HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def _load(args: argparse.Namespace) -> RegistryConfig:
    from pallet.registry.server.config import RegistryConfig, load_config

    config = load_config(args.config) if args.config else RegistryConfig()
    changes: dict[str, Any] = {}
    if getattr(args, "addr", None):
        changes["addr"] = args.addr
    if args.root:
        changes["root"] = Path(args.root).resolve()
    if getattr(args, "tls_cert", None) or getattr(args, "tls_key", None):
        if not (args.tls_cert and args.tls_key):
            raise InvalidArgument("--tls-cert and --tls-key go together")
        changes["tls_cert"], changes["tls_key"] = Path(args.tls_cert), Path(args.tls_key)
    config = dataclasses.replace(config, **changes)
    if config.root is None:
        raise InvalidArgument("no storage root: give --root DIR (or root: in the config file)")
    return config


def _root(config: RegistryConfig) -> Path:
    assert config.root is not None  # _load refuses a config without one
    return config.root


def serve(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pallet registry serve", description="Run the registry server")
    p.add_argument("--addr", help="HOST:PORT to listen on (default 127.0.0.1:5000)")
    p.add_argument("--root", help="Storage directory")
    p.add_argument("--config", help="Configuration file (YAML or JSON)")
    p.add_argument("--tls-cert", help="TLS certificate (PEM)")
    p.add_argument("--tls-key", help="TLS private key (PEM)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="Logging level; debug also logs every request")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = _load(args)
    host, port = _split_addr(config.addr)
    from pallet.registry.server.storage import FilesystemStorage

    storage = FilesystemStorage(_root(config))
    storage.lock()
    try:
        from pallet.registry.server.app import startup_cleanup

        startup_cleanup(storage, config.upload_ttl)
        asyncio.run(_serve(storage, config, host, port, args.log_level == "debug"))
    finally:
        storage.unlock()
    return 0


async def _serve(storage: FilesystemStorage, config: RegistryConfig, host: str, port: int,
                 access_log: bool) -> None:
    from aiohttp import web

    from pallet.registry.server.app import Registry

    ssl_context = None
    if config.tls_cert:
        import ssl

        ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_context.load_cert_chain(config.tls_cert, config.tls_key)
    app = Registry(storage, config, _root(config)).make_app()
    runner = web.AppRunner(app, access_log=logging.getLogger("aiohttp.access") if access_log else None,
                           handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, backlog=1024)
    await site.start()
    bound = runner.addresses[0] if runner.addresses else (host, port)
    scheme = "https" if ssl_context else "http"
    shown = f"[{bound[0]}]" if ":" in str(bound[0]) else bound[0]
    print(f"pallet registry: listening on {scheme}://{shown}:{bound[1]}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def gc(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pallet registry gc",
                                description="Remove blobs that no manifest refers to (offline)")
    p.add_argument("--root", help="Storage directory")
    p.add_argument("--config", help="Configuration file (YAML or JSON)")
    p.add_argument("--dry-run", action="store_true", help="Only print what would be removed")
    args = p.parse_args(argv)
    config = _load(args)
    from pallet.registry.server.gc import collect
    from pallet.registry.server.storage import FilesystemStorage

    storage = FilesystemStorage(_root(config))
    storage.lock()
    try:
        report = collect(storage, dry_run=args.dry_run, upload_ttl=config.upload_ttl)
    finally:
        storage.unlock()
    verb = "would remove" if args.dry_run else "removed"
    for digest in report.deleted:
        print(f"{verb} blob {digest}")
    for repository, digest in report.unlinked:
        print(f"{verb} link {repository}@{digest}")
    print(f"{report.marked} blobs in use; {verb} {len(report.deleted)} blobs "
          f"({report.freed_bytes} bytes)" + (f", {len(report.uploads_removed)} stale uploads"
                                              if report.uploads_removed else ""))
    return 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    commands = {"serve": serve, "gc": gc}
    if command not in commands:
        print(f"pallet registry: unknown command {command!r}\n{USAGE}", file=sys.stderr)
        return 1
    try:
        return commands[command](rest)
    except PalletError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
