"""`pallet cp`: copy files between a container and the local file system (docker cp).

    pallet cp [-a] CONTAINER:SRC_PATH DEST_PATH|-
    pallet cp [-a] SRC_PATH|- CONTAINER:DEST_PATH

`-` streams a tar on stdout / reads one from stdin. Docker's destination rules: an existing
directory receives the source under its own name; a missing destination becomes the source
(renamed), its parent must exist; a destination ending in `/` must be an existing directory when
the source is a file; a directory cannot be copied onto a file. The tar from the daemon is
extracted through the layer-apply safety (a hostile container cannot make us write outside
DEST), with its top-level name rewritten to the destination's.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import tarfile
import threading

from pallet.cli.commands.container import HelpFormatter
from pallet.errors import InvalidArgument, NotFound, PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import Any

    from pallet.cli.main import Context

GO_MODE_DIR = 1 << 31
CHUNK = 256 * 1024


def split_arg(arg: str) -> tuple[str | None, str]:
    """(container, path) for CONTAINER:PATH, (None, path) for a local path (one starting with
    '/' or '.', or without ':', is local, as docker's splitCpArg)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    container, path = arg.split(":", 1)
    if not container:
        return None, arg
    return container, path


def _archive_path(container: str) -> str:
    from pallet.cli.commands.container import path

    return path(container, "/archive")


def _stat(ctx: Context, container: str, path: str) -> dict[str, Any] | None:
    try:
        resp = ctx.client().request("HEAD", _archive_path(container), params={"path": path})
    except NotFound:
        return None
    raw = resp.headers.get("X-Docker-Container-Path-Stat")
    resp.read()
    return json.loads(base64.b64decode(raw)) if raw else {}


def _renamed(src: Any, old: str, new: str) -> Any:
    """A readable pipe end carrying the tar `src` with its top-level name `old` made `new`."""
    r, w = os.pipe()
    errors: list[BaseException] = []

    def pump() -> None:
        try:
            with os.fdopen(w, "wb") as out, tarfile.open(fileobj=src, mode="r|") as tin, \
                    tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tout:
                for ti in tin:
                    name = ti.name.rstrip("/")
                    if old and new != old and (name == old or name.startswith(old + "/")):
                        ti.name = new + name[len(old):]
                    tout.addfile(ti, tin.extractfile(ti) if ti.isreg() else None)
        except BaseException as exc:  # reported by the reader's side
            errors.append(exc)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    reader = os.fdopen(r, "rb")
    reader.pump_errors = errors  # type: ignore[attr-defined]
    reader.pump_thread = t  # type: ignore[attr-defined]
    return reader


def _apply(stream: Any, target: str) -> None:
    from pallet.image.layers.apply import apply_layer

    with stream:
        apply_layer(stream, target, overlay_whiteouts=False)
    stream.pump_thread.join()
    if stream.pump_errors:
        raise InvalidArgument(f"reading the archive: {stream.pump_errors[0]}")


class _Chunks:
    """A response's chunks as a file-like reader."""

    def __init__(self, resp: Any) -> None:
        self.it, self.buf = resp.iter_chunks(CHUNK), b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.buf) < n:
            chunk = next(self.it, b"")
            if not chunk:
                break
            self.buf += chunk
        if n < 0:
            n = len(self.buf)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out


def copy_from(ctx: Context, container: str, src: str, dest: str) -> None:
    resp = ctx.client().request("GET", _archive_path(container), params={"path": src})
    if dest == "-":
        for chunk in resp.iter_chunks(CHUNK):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
        return
    raw = resp.headers.get("X-Docker-Container-Path-Stat")
    info = json.loads(base64.b64decode(raw)) if raw else {}
    src_is_dir = bool(int(info.get("mode", 0)) & GO_MODE_DIR)
    old = "." if src.endswith("/.") else os.path.basename(src.rstrip("/")) or "."
    if os.path.isdir(dest):
        target, new = dest, old
    elif os.path.lexists(dest):
        if src_is_dir:
            raise InvalidArgument(f"cannot copy directory to file {dest!r}")
        target, new = os.path.dirname(os.path.abspath(dest)), os.path.basename(dest)
    else:
        if dest.endswith("/") and not src_is_dir:
            raise InvalidArgument(f"destination directory {dest!r} does not exist")
        target = os.path.dirname(os.path.abspath(dest.rstrip("/")))
        new = os.path.basename(dest.rstrip("/"))
        if not os.path.isdir(target):
            raise InvalidArgument(f"destination directory {target!r} does not exist")
        if old == ".":  # the contents of a directory: into a new directory named dest
            os.mkdir(dest.rstrip("/"))
            target, new = dest.rstrip("/"), "."
    _apply(_renamed(_Chunks(resp), old, new), target)


def _local_tar(src: str, arcname: str) -> Any:
    """A readable pipe end with a tar of the local `src` named `arcname`."""
    r, w = os.pipe()
    errors: list[BaseException] = []

    def pump() -> None:
        try:
            with os.fdopen(w, "wb") as out, \
                    tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                tar.add(src, arcname=arcname)
        except BaseException as exc:
            errors.append(exc)

    threading.Thread(target=pump, daemon=True).start()
    return os.fdopen(r, "rb")


def copy_to(ctx: Context, src: str, container: str, dest: str) -> None:
    params = {"path": dest, "noOverwriteDirNonDir": "true"}
    if src == "-":
        ctx.client().request("PUT", _archive_path(container), params=params, data=sys.stdin.buffer,
                             headers={"Content-Type": "application/x-tar"}).read()
        return
    if not os.path.lexists(src):
        raise InvalidArgument(f"could not find the file {src} on the local side")
    src_is_dir = os.path.isdir(src)
    contents = src.endswith("/.")
    name = os.path.basename(os.path.abspath(src))
    info = _stat(ctx, container, dest)
    if info is not None and int(info.get("mode", 0)) & GO_MODE_DIR:
        target, arcname = dest, ("." if contents else name)
    elif info is not None:
        if src_is_dir:
            raise InvalidArgument(f"cannot copy directory to file {container}:{dest}")
        target, arcname = os.path.dirname(dest.rstrip("/")) or "/", os.path.basename(dest)
    else:
        if dest.endswith("/") and not src_is_dir:
            raise InvalidArgument(f"destination directory {container}:{dest} does not exist")
        target = os.path.dirname(dest.rstrip("/")) or "/"
        arcname = os.path.basename(dest.rstrip("/"))
    with _local_tar(src, arcname) as body:
        ctx.client().request("PUT", _archive_path(container), params={**params, "path": target},
                             data=body, headers={"Content-Type": "application/x-tar"}).read()


def main(ctx: Context, argv: list[str], prog: str = "pallet cp") -> int:
    from pallet.cli.commands.container import error_line

    p = argparse.ArgumentParser(
        prog=prog, description="Copy files/folders between a container and the local filesystem",
        usage=f"{prog} [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n"
              f"       {prog} [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH", formatter_class=HelpFormatter)
    p.add_argument("-a", "--archive", action="store_true", help="Archive mode (copy all uid/gid information)")
    p.add_argument("-L", "--follow-link", action="store_true", help="Accepted; not implemented")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress progress output")
    p.add_argument("src")
    p.add_argument("dest")
    args = p.parse_args(argv)
    (sc, sp), (dc, dp) = split_arg(args.src), split_arg(args.dest)
    try:
        if sc and dc:
            raise InvalidArgument("copying between containers is not supported")
        if sc:
            copy_from(ctx, sc, sp, args.dest)
        elif dc:
            copy_to(ctx, args.src, dc, dp)
        else:
            raise InvalidArgument("must specify at least one container source")
    except PalletError as exc:
        print(error_line(exc), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"Error: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0
