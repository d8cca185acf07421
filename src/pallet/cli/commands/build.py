"""`pallet build`: build an image from a Dockerfile, with `docker build`'s flags (classic builder).

The context (a directory, a git URL `URL#ref:subdir`, or `-`: a tar or a lone Dockerfile on
stdin) is sent as a tar, leaving out what `.dockerignore` excludes, as the docker CLI does
(pallet.build.context: standard library only, imported lazily). A git context is cloned here
and sent as a directory would be. `SOURCE_DATE_EPOCH` from the environment becomes the build
arg of that name unless one is given (docker buildx does the same). `--secret id=ID,src=FILE`
(or `env=VAR`) values travel in a Pallet header, never in the context.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile

from pallet.cli.commands.container import HelpFormatter
from pallet.errors import InvalidArgument, PalletError

TYPE_CHECKING = False  # typing costs ~3 ms of CLI start-up; mypy reads this name as typing's
if TYPE_CHECKING:
    from typing import IO, Any

    from pallet.cli.main import Context


def parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Build an image from a Dockerfile",
                                formatter_class=HelpFormatter)
    p.add_argument("context", metavar="PATH | URL | -")
    p.add_argument("-t", "--tag", action="append", default=[], help="Name and optionally a tag (name:tag)")
    p.add_argument("-f", "--file", help="Name of the Dockerfile (default: PATH/Dockerfile)")
    p.add_argument("--build-arg", action="append", default=[], help="Set build-time variables")
    p.add_argument("--label", action="append", default=[], help="Set metadata for an image")
    p.add_argument("--no-cache", action="store_true", help="Do not use cache when building the image")
    p.add_argument("--target", default="", help="Set the target build stage to build")
    p.add_argument("--iidfile", help="Write the image ID to the file")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the build output and print image "
                   "ID on success")
    p.add_argument("--pull", action="store_true", help="Always attempt to pull a newer version of the image")
    p.add_argument("--cache-from", action="append", default=[], help="Images to consider as cache sources")
    p.add_argument("--network", default="", help="Set the networking mode for the RUN instructions")
    p.add_argument("--platform", default="", help="Set platform if server is multi-platform capable")
    p.add_argument("--secret", action="append", default=[], help="Secret to expose to the build "
                   "(id=mysecret,src=/local/secret or id=x,env=VAR)")
    p.add_argument("--rm", default="true", nargs="?", const="true",
                   help="Remove intermediate containers after a successful build (always)")
    p.add_argument("--force-rm", action="store_true", help="Always remove intermediate containers (always)")
    return p


def _build_args(items: list[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not k:
            raise InvalidArgument(f"invalid --build-arg {item!r}: want KEY=VALUE or KEY")
        # `--build-arg KEY` takes KEY's value from the environment, or leaves it unset (docker).
        out[k] = v if eq else os.environ.get(k)
    if "SOURCE_DATE_EPOCH" not in out and os.environ.get("SOURCE_DATE_EPOCH"):
        out["SOURCE_DATE_EPOCH"] = os.environ["SOURCE_DATE_EPOCH"]
    return out


def _labels(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        if not k:
            raise InvalidArgument(f"invalid --label {item!r}: want KEY=VALUE")
        out[k] = v
    return out


def _secrets(items: list[str]) -> str:
    found: dict[str, str] = {}
    for item in items:
        fields = dict(f.partition("=")[::2] for f in item.split(",") if f)
        sid = fields.get("id", "")
        src = fields.get("src") or fields.get("source")
        env = fields.get("env")
        if not sid:
            raise InvalidArgument(f"--secret {item!r}: id= is required")
        if src:
            try:
                with open(src, "rb") as f:
                    data = f.read()
            except OSError as exc:
                raise InvalidArgument(f"--secret {sid}: cannot read {src}: {exc.strerror}") from exc
        else:
            name = env or sid
            if name not in os.environ:
                raise InvalidArgument(f"--secret {sid}: give src=FILE or env=VAR (no variable {name} set)")
            data = os.environ[name].encode()
        found[sid] = base64.b64encode(data).decode()
    return base64.b64encode(json.dumps(found).encode()).decode() if found else ""


def _stdin_context(spool: IO[bytes]) -> None:
    """`pallet build -`: a tar (maybe compressed) goes as it is; anything else is a Dockerfile."""
    import io
    import tarfile

    data = sys.stdin.buffer.read()
    magic = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x28\xb5\x2f\xfd")
    is_tar = data.startswith(magic) or (len(data) >= 512 and data[257:262] == b"ustar")
    if is_tar:
        spool.write(data)
        return
    with tarfile.open(fileobj=spool, mode="w") as tar:
        ti = tarfile.TarInfo("Dockerfile")
        ti.size = len(data)
        ti.mode = 0o644
        tar.addfile(ti, io.BytesIO(data))


def main(ctx: Context, argv: list[str], prog: str = "pallet build") -> int:
    args = parser(prog).parse_args(argv)
    from urllib.parse import urlencode

    from pallet.build import context as ctxmod

    query: list[tuple[str, str]] = [("t", t) for t in args.tag]
    build_args = _build_args(args.build_arg)
    if build_args:
        query.append(("buildargs", json.dumps(build_args)))
    labels = _labels(args.label)
    if labels:
        query.append(("labels", json.dumps(labels)))
    if args.no_cache:
        query.append(("nocache", "1"))
    if args.target:
        query.append(("target", args.target))
    if args.quiet:
        query.append(("q", "1"))
    if args.pull:
        query.append(("pull", "1"))
    if args.cache_from:
        query.append(("cachefrom", json.dumps(args.cache_from)))
    if args.network:
        query.append(("networkmode", args.network))
    if args.platform:
        query.append(("platform", args.platform))
    headers = {"Content-Type": "application/x-tar"}
    secret_header = _secrets(args.secret)
    if secret_header:
        headers["X-Pallet-Build-Secrets"] = secret_header
    work = tempfile.mkdtemp(prefix="pallet-build-")
    try:
        spool_path = os.path.join(work, "context.tar")
        with open(spool_path, "w+b") as spool:
            dockerfile = None
            if args.context == "-":
                if sys.stdin.isatty():
                    raise InvalidArgument("`pallet build -` reads a tar or a Dockerfile from stdin: "
                                          "pipe one in")
                if args.file:
                    raise InvalidArgument("-f cannot be used with a context from stdin")
                _stdin_context(spool)
            else:
                context = args.context
                local, hash_, fragment = context.partition("#")
                if hash_ and os.path.isdir(os.path.join(local, ".git")):
                    # A local repository with a ref and subdir: PATH#ref:subdir.
                    context = f"git+file://{os.path.abspath(local)}#{fragment}"
                if ctxmod.is_git_url(context):
                    context = ctxmod.git_checkout(context, os.path.join(work, "git"))
                    df = os.path.join(context, args.file) if args.file else None
                elif args.file == "-":
                    df = os.path.join(work, "Dockerfile.stdin")
                    with open(df, "wb") as f:
                        shutil.copyfileobj(sys.stdin.buffer, f)
                else:
                    df = args.file
                    if df and not os.path.isabs(df) and not os.path.exists(df):
                        df = os.path.join(context, df)  # docker: -f relative to the context too
                dockerfile = ctxmod.write_context_tar(context, spool, df)
                query.append(("dockerfile", dockerfile))
                if not args.quiet:
                    size = spool.tell()
                    sys.stdout.write(f"Sending build context to Pallet daemon  {_size(size)}\n")
            spool.seek(0)
            resp = ctx.client().request("POST", "/build?" + urlencode(query), data=spool, headers=headers)
            image_id = _show(resp, args.quiet)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if image_id is None:
        return 1
    if args.quiet:
        print(image_id)
    if args.iidfile:
        with open(args.iidfile, "w") as f:
            f.write(image_id)
    return 0


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{n}B"
        n = n / 1000  # type: ignore[assignment]
    return f"{n}B"


def _show(resp: Any, quiet: bool) -> str | None:
    image_id: str | None = None
    failed = False
    for msg in resp.iter_json():
        if "errorDetail" in msg or "error" in msg:
            detail = msg.get("errorDetail") or {}
            sys.stdout.flush()
            sys.stderr.write(f"{detail.get('message') or msg.get('error')}\n")
            failed = True
            continue
        if "aux" in msg and isinstance(msg["aux"], dict) and "ID" in msg["aux"]:
            image_id = str(msg["aux"]["ID"])
        elif "stream" in msg and not quiet:
            sys.stdout.write(str(msg["stream"]))
            sys.stdout.flush()
    if failed:
        return None
    if image_id is None:
        raise PalletError("the daemon ended the build without an image id")
    return image_id
