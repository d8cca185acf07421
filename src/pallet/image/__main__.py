"""`python -m pallet.image`: an admin command for the image store, until palletd exposes it.

    python -m pallet.image [--data-root DIR] COMMAND [ARGS]

    bootstrap NAME...            create built-in images: hello-world, busybox, debian[:suite]
    images [-a] [-q] [--no-trunc] [--format table|json]
    inspect REF...               Docker's ImageInspect JSON, an array
    history [-q] [--no-trunc] [--format table|json] REF
    tag SOURCE TARGET
    rmi [-f] [--no-prune] REF...
    import FILE|- [REF] [-c CHANGE]... [-m MESSAGE]
    save [-o FILE] [--format docker|oci] REF...
    load [-i FILE|-] [-q]
    prune [-a] [--filter KEY=VALUE]... [--dry-run]
    gc [--dry-run]
    check [--no-verify-blobs]    the store check; exit status 1 when it finds an error

It works on the store directly (the daemon's data root, /var/lib/pallet by default), so it is
for an administrator while no daemon runs or, for the read-only verbs, beside one (the store is
safe for several processes: SQLite transactions, content-addressed blobs). Each verb only
parses, calls pallet.image and renders, in the shapes of the docker CLI where one exists.
A Pallet error is one line on stderr (`pallet: ...`) and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from pallet.errors import InvalidArgument, PalletError
from pallet.image.service import ImageService, short_id
from pallet.oci.reference import parse_normalized
from pallet.units import human_duration, human_size

DEFAULT_DATA_ROOT = "/var/lib/pallet"
_NONE = "<none>"


# --- rendering ---------------------------------------------------------------------------------

def _since(unix: int, now: float) -> str:
    return f"{human_duration(now - unix)} ago" if unix > 0 else "N/A"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns three spaces apart (the docker CLI's tabwriter settings)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = []
    for row in (headers, *rows):
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def _familiar(name: str) -> str:
    return parse_normalized(name, default_tag=False).familiar()


def _ident(image_id: str, no_trunc: bool) -> str:
    return image_id if no_trunc or not image_id.startswith("sha256:") else short_id(image_id)


# --- verbs -------------------------------------------------------------------------------------

def cmd_bootstrap(svc: ImageService, a: argparse.Namespace) -> int:
    for name in a.names:
        image_id = svc.bootstrap(name, arch=a.arch, force=a.force, busybox=a.busybox)
        print(f"{parse_normalized(name).familiar()} {image_id}")
    return 0


def _image_rows(summaries: list[dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(repository, tag, summary), one per tag as `docker images` shows them."""
    for s in summaries:
        if s["RepoTags"]:
            for t in s["RepoTags"]:
                ref = parse_normalized(t)
                yield ref.familiar_name(), ref.tag or _NONE, s
        elif s["RepoDigests"]:
            for d in s["RepoDigests"]:
                yield parse_normalized(d).familiar_name(), _NONE, s
        else:
            yield _NONE, _NONE, s


def cmd_images(svc: ImageService, a: argparse.Namespace) -> int:
    summaries = svc.list_images(all=a.all)
    now = time.time()
    if a.quiet:
        for image_id in dict.fromkeys(_ident(s["Id"], a.no_trunc) for s in summaries):
            print(image_id)
        return 0
    rows = list(_image_rows(summaries))
    if a.format == "json":
        for repo, tag, s in rows:
            digest = s["RepoDigests"][0].partition("@")[2] if s["RepoDigests"] else _NONE
            print(json.dumps({
                "Containers": str(s["Containers"]) if s["Containers"] >= 0 else "N/A",
                "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(s["Created"])),
                "CreatedSince": _since(s["Created"], now), "Digest": digest,
                "ID": _ident(s["Id"], a.no_trunc), "Repository": repo, "Size": human_size(s["Size"]),
                "Tag": tag}, sort_keys=True))
        return 0
    print(_table(("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"),
                 [(repo, tag, _ident(s["Id"], a.no_trunc), _since(s["Created"], now), human_size(s["Size"]))
                  for repo, tag, s in rows]))
    return 0


def cmd_inspect(svc: ImageService, a: argparse.Namespace) -> int:
    found, errors = [], []
    for ref in a.refs:
        try:
            found.append(svc.inspect(ref))
        except PalletError as exc:
            errors.append(str(exc))
    print(json.dumps(found, indent=4))
    for e in errors:
        print(f"pallet: {e}", file=sys.stderr)
    return 1 if errors else 0


def cmd_history(svc: ImageService, a: argparse.Namespace) -> int:
    items = svc.history(a.ref)
    now = time.time()
    if a.quiet:
        for item in items:
            print(_ident(item["Id"], a.no_trunc))
        return 0
    if a.format == "json":
        for item in items:
            print(json.dumps({**item, "Id": _ident(item["Id"], a.no_trunc)}, sort_keys=True))
        return 0
    rows = []
    for item in items:
        created_by = item["CreatedBy"].replace("\t", " ").replace("\n", " ")
        if not a.no_trunc and len(created_by) > 45:
            created_by = created_by[:44] + "…"
        rows.append((_ident(item["Id"], a.no_trunc), _since(item["Created"], now), created_by,
                     human_size(item["Size"]), item["Comment"]))
    print(_table(("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"), rows))
    return 0


def cmd_tag(svc: ImageService, a: argparse.Namespace) -> int:
    svc.tag(a.source, a.target)
    return 0


def cmd_rmi(svc: ImageService, a: argparse.Namespace) -> int:
    status = 0
    for ref in a.refs:  # as `docker rmi`: go on after a failure, exit 1 at the end
        try:
            for item in svc.remove(ref, force=a.force, prune=not a.no_prune):
                for key, value in item.items():
                    print(f"{key}: {value}")
        except PalletError as exc:
            print(f"pallet: {exc}", file=sys.stderr)
            status = 1
    return status


@contextlib.contextmanager
def _input(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InvalidArgument(f"cannot open {path}: {exc.strerror}") from exc
    with f:
        yield f


def cmd_import(svc: ImageService, a: argparse.Namespace) -> int:
    with _input(a.file) as f:
        image_id = svc.import_image(f, a.ref, a.change, a.message or "", source=a.file)
    print(image_id)
    return 0


def _atomic_output(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Write `path` through a temporary file beside it: a failed save leaves no partial file."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def cmd_save(svc: ImageService, a: argparse.Namespace) -> int:
    from pallet.image import archive

    def write(out: BinaryIO) -> None:
        archive.save(svc.content, svc.meta, a.refs, out, format=a.format)

    if a.output and a.output != "-":
        try:
            _atomic_output(a.output, write)
        except OSError as exc:
            raise InvalidArgument(f"cannot write {a.output}: {exc.strerror or exc}") from exc
        return 0
    if sys.stdout.isatty():
        raise InvalidArgument("refusing to write an archive to a terminal: use -o FILE or redirect")
    write(sys.stdout.buffer)
    sys.stdout.buffer.flush()
    return 0


def cmd_load(svc: ImageService, a: argparse.Namespace) -> int:
    from pallet.image import archive

    if a.input == "-" and sys.stdin.isatty():
        raise InvalidArgument("no archive on standard input: use -i FILE or redirect")
    with _input(a.input) as f:
        loaded = archive.load(svc.content, svc.meta, f)
    if not a.quiet:
        for item in loaded:
            if item.startswith("sha256:"):
                print(f"Loaded image ID: {item}")
            else:
                print(f"Loaded image: {_familiar(item)}")
    return 0


def _filters(values: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"bad filter {v!r}: expected KEY=VALUE (e.g. until=24h, label=a=b)")
        out.setdefault(key, []).append(value)
    return out


def _gc(svc: ImageService) -> Any:
    from pallet.image.gc import GarbageCollector

    return GarbageCollector(svc.content, svc.meta, svc.snapshots, data_root=svc.root)


def cmd_prune(svc: ImageService, a: argparse.Namespace) -> int:
    result = _gc(svc).prune(dangling_only=not a.all, filters=_filters(a.filter), dry_run=a.dry_run)
    if result.untagged or result.deleted:
        print("Images that would be deleted:" if a.dry_run else "Deleted Images:")
        for name in result.untagged:
            print(f"untagged: {_familiar(name)}")
        for image_id in result.deleted:
            print(f"deleted: {image_id}")
        print()
    verb = "Total space that would be reclaimed" if a.dry_run else "Total reclaimed space"
    print(f"{verb}: {human_size(result.space_reclaimed)}")
    return 0


def cmd_gc(svc: ImageService, a: argparse.Namespace) -> int:
    result = _gc(svc).collect(dry_run=a.dry_run)
    for lease in result.expired_leases:
        print(f"expired lease {lease}")
    for digest in result.blobs:
        print(f"blob {digest}")
    for name in result.snapshots:
        print(f"snapshot {name}")
    verb = "would remove" if a.dry_run else "removed"
    print(f"{verb} {len(result.blobs)} blobs, {len(result.snapshots)} snapshots, {result.ingests} "
          f"ingests: {human_size(result.bytes_freed)}")
    return 0


def cmd_check(svc: ImageService, a: argparse.Namespace) -> int:
    from pallet.image.check import check_store

    report = check_store(svc.content, svc.meta, svc.snapshots, verify_blobs=not a.no_verify_blobs)
    for line in report.lines():
        print(line)
    return report.exit_code


# --- arguments ---------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pallet.image", description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    root_help = f"the store's data root (default {DEFAULT_DATA_ROOT})"
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT, help=root_help)
    # Also accepted after the verb; SUPPRESS keeps the subparser from resetting the value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-root", default=argparse.SUPPRESS, help=root_help)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def verb(name: str, fn: Callable[[ImageService, argparse.Namespace], int],
             help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, parents=[common], help=help, description=help)
        sp.set_defaults(fn=fn)
        return sp

    sp = verb("bootstrap", cmd_bootstrap, "create built-in images: hello-world, busybox, debian[:suite]")
    sp.add_argument("names", nargs="+", metavar="NAME")
    sp.add_argument("--force", action="store_true", help="recreate the image even if the name exists")
    sp.add_argument("--arch", help="machine to build for (x86_64, aarch64; default: the host's)")
    sp.add_argument("--busybox", help="the busybox-static binary to use (default /bin/busybox)")

    sp = verb("images", cmd_images, "list images")
    sp.add_argument("-a", "--all", action="store_true", help="show intermediate (parent) images too")
    sp.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    sp.add_argument("--no-trunc", action="store_true", help="full image ids")
    sp.add_argument("--format", choices=("table", "json"), default="table")

    sp = verb("inspect", cmd_inspect, "show images in Docker's inspect JSON")
    sp.add_argument("refs", nargs="+", metavar="REF")

    sp = verb("history", cmd_history, "show an image's history")
    sp.add_argument("ref", metavar="REF")
    sp.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    sp.add_argument("--no-trunc", action="store_true", help="do not truncate ids or commands")
    sp.add_argument("--format", choices=("table", "json"), default="table")

    sp = verb("tag", cmd_tag, "give an image another name")
    sp.add_argument("source", metavar="SOURCE")
    sp.add_argument("target", metavar="TARGET")

    sp = verb("rmi", cmd_rmi, "remove images (untag; delete with the last name)")
    sp.add_argument("refs", nargs="+", metavar="REF")
    sp.add_argument("-f", "--force", action="store_true", help="remove even if a container uses it")
    sp.add_argument("--no-prune", action="store_true", help="keep untagged parents")

    sp = verb("import", cmd_import, "make an image from a rootfs tarball")
    sp.add_argument("file", metavar="FILE|-")
    sp.add_argument("ref", nargs="?", metavar="REF")
    sp.add_argument("-c", "--change", action="append", default=[],
                    help="a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, ...)")
    sp.add_argument("-m", "--message", help="the commit message of the history entry")

    sp = verb("save", cmd_save, "write images to a tar archive")
    sp.add_argument("refs", nargs="+", metavar="REF")
    sp.add_argument("-o", "--output", help="the archive file (default: standard output)")
    sp.add_argument("--format", choices=("docker", "oci"), default="docker")

    sp = verb("load", cmd_load, "load images from a docker or OCI archive")
    sp.add_argument("-i", "--input", default="-", help="the archive file (default: standard input)")
    sp.add_argument("-q", "--quiet", action="store_true")

    sp = verb("prune", cmd_prune, "remove dangling (with -a: all unused) images, then collect")
    sp.add_argument("-a", "--all", action="store_true", help="every image no container uses")
    sp.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                    help="until=<time|duration>, label=<k>[=<v>], label!=<k>[=<v>], dangling=<bool>")
    sp.add_argument("--dry-run", action="store_true", help="only say what would go")

    sp = verb("gc", cmd_gc, "delete blobs and snapshots nothing refers to")
    sp.add_argument("--dry-run", action="store_true", help="only say what would go")

    sp = verb("check", cmd_check, "verify every blob, name, image and snapshot")
    sp.add_argument("--no-verify-blobs", action="store_true", help="skip re-hashing every blob")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        with ImageService(a.data_root) as svc:
            return int(a.fn(svc, a))
    except PalletError as exc:
        print(f"pallet: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # the reader went away (`... | head`): not an error; keep Python from reporting it at exit
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as exc:  # a disk or permission problem: still one line, not a traceback
        print(f"pallet: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
