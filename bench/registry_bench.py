"""Registry benchmark: push and pull with Pallet's client against skopeo, to Pallet's registry
server and to Docker's (docker-registry, distribution 2.8).

    bench/run registry [--quick] [--reps N] [--no-install] [--sizes-mb 10,50,100,200]
                       [--baseline-src DIR] [--only-images 1,50]

Images (built by this harness as docker-archives, see growth_bench.layered_archive): busybox plus
one 100 MB layer of random data ("1 layer"), and busybox plus 49 layers of 2 MB ("50 layers").
Random data does not compress, so the gzip of a push costs its worst case.

  push   pallet:  `pallet push 127.0.0.1:PORT/bench/img:T` of the image loaded into palletd
         skopeo:  `skopeo copy docker-archive:FILE docker://127.0.0.1:PORT/bench/img:T`
  pull   pallet:  `pallet pull ...` into a palletd with an empty store (started untimed)
         skopeo:  `skopeo copy docker://... oci:EMPTYDIR` (blobs only: skopeo unpacks nothing)
         podman:  `podman pull` into an empty private store (unpacks, as pallet pull does)
  fetch only (blobs into the content store, what skopeo's copy does; the skopeo column is the
         same skopeo copy as the pull row's, measured in the same rounds)
         pallet:  `python -m pallet.registry.client fetch --root EMPTYDIR ...` (a process of its
                  own with an empty store, as skopeo is: Python's start-up is in the time)

Every push goes to a registry started empty for it (untimed), so no client can skip a blob the
server already has; each pull reads what the push before it stored: gzip layers for skopeo (its
push compresses; random data does not shrink), Pallet's uncompressed layers for pallet (about the
same bytes). Servers: `pallet registry serve` and `docker-registry`, both on 127.0.0.1 with a
temporary root. In full mode, pull time against image size (single layer, --sizes-mb) is plotted.
`--baseline-src DIR` adds a "pallet-baseline" column to the pull rows: the same pull by a
palletd (and CLI) importing pallet from DIR (a copy of another version's `src/`, through
PYTHONPATH), in the same rounds, so that a change is measured before/after side by side under
the same machine load (the images are pushed by this checkout's palletd either way).
`--only-images 50` measures only the 50-layer image (`1` only the single layer).
Skips with the reason when this pallet lacks `push`, `pull` or `registry serve`. Targets (issue 7):
the client's pull and push at least as fast as skopeo (pallet/skopeo time <= 1.0); the server
at least 0.8x of docker-registry's throughput ("server:" rows: the same client's push or pull
against each server, in MB/s of the image's 100 MB of layers).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    VENV_BIN,
    BenchError,
    Palletd,
    Podman,
    Section,
    busybox_tar,
    common_args,
    ensure_debs,
    main_wrapper,
    make_row,
    plot_lines,
    reason,
    reps_of,
    run,
    stamp,
    timed_ms,
    workspace,
)

PEERS = {"skopeo": "skopeo", "docker-registry": "docker-registry", "podman": "podman"}


def random_layer_archive(dest: Path, base: Path, layer_mb: list[int], ref: str) -> Path:
    """busybox plus one layer of random data per entry of `layer_mb` (MB each)."""
    import hashlib
    import io
    import json
    import tarfile

    def layer(i: int, mb: int) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            ti = tarfile.TarInfo(f"data/{i:03d}.bin")
            ti.size, ti.mode = mb << 20, 0o644
            tf.addfile(ti, io.BytesIO(os.urandom(mb << 20)))
        return buf.getvalue()

    blobs = [base.read_bytes(), *(layer(i, mb) for i, mb in enumerate(layer_mb))]
    diff_ids = ["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs]
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids},
                      "history": [{"created_by": f"bench layer {i}"} for i in range(len(blobs))]}).encode()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    names = [f"{x.split(':')[1]}/layer.tar" for x in diff_ids]
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": [ref], "Layers": names}]).encode()
    with tarfile.open(dest, "w") as tf:
        for name, data in [(cfg_name, cfg), *zip(names, blobs), ("manifest.json", manifest)]:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tf.addfile(ti, io.BytesIO(data))
    return dest


@contextlib.contextmanager
def pallet_registry(d: Palletd, root: Path) -> Iterator[str]:
    """`pallet registry serve` on a free loopback port; yields HOST:PORT."""
    proc = subprocess.Popen([*d.pallet, "registry", "serve", "--addr", "127.0.0.1:0", "--root", str(root)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=d.env, text=True)
    assert proc.stderr is not None
    try:
        deadline = time.monotonic() + 30
        addr = ""
        while time.monotonic() < deadline and not addr:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                raise BenchError(f"pallet registry serve exited {proc.returncode}")
            m = re.search(r"listening on https?://([0-9.]+:\d+)", line)
            if m:
                addr = m.group(1)
        if not addr:
            raise BenchError("pallet registry serve did not say where it listens")
        yield addr
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def docker_registry(root: Path) -> Iterator[str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root.mkdir(parents=True)
    cfg = root / "config.yml"
    cfg.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                   f"    rootdirectory: {root}/data\nhttp:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        else:
            raise BenchError("docker-registry did not start listening")
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(ap, default_reps=10, quick_reps=2)
    ap.add_argument("--sizes-mb", default="10,50,100,200", help="pull time against size (full mode)")
    ap.add_argument("--baseline-src", help="also pull with the pallet package found in this directory "
                    "(e.g. a copy of another version's src/), interleaved in the same rounds")
    ap.add_argument("--only-images", default="1,50", help="which images: 1 (one layer), 50 (layers)")
    a = ap.parse_args()
    reps, _warmup = reps_of(a, 10, 2)
    sec = Section("registry", a.quick)
    if a.quick:
        sec.notes.append(f"--quick: {reps} pushes and pulls per cell (every one starts an empty "
                         "registry or daemon); the full run makes 10")
    missing = ensure_debs(PEERS, not a.no_install)
    out = Path(a.out)
    with workspace("pr") as (work, parent):
        d = Palletd(work / "d", parent)
        try:
            lacking = [v for v in (("push",), ("pull",), ("registry", "serve")) if not d.has_verb(*v)]
            if lacking:
                sec.skip("registry", "this pallet lacks " + ", ".join(" ".join(v) for v in lacking))
                return _finish(sec, out)
            base = busybox_tar(work / "busybox.tar")
            wanted = {x.strip() for x in a.only_images.split(",")}
            images = {title: layers for title, layers, key in (("1 layer, 100 MB", [100], "1"),
                                                                ("50 layers, 100 MB", [2] * 49, "50"))
                      if key in wanted}
            archives = {}
            for k, (title, layers) in enumerate(images.items()):
                ref = f"bench/img{k}:src"
                archives[title] = (random_layer_archive(work / f"img{k}.tar", base, layers, ref), ref)
                d.cli("load", "-i", str(archives[title][0]), timeout=600)
            servers = {"pallet registry": lambda root: pallet_registry(d, root)}
            if "docker-registry" in missing:
                sec.skip("docker-registry server", "not installed (apt-get install docker-registry)")
            else:
                servers["docker-registry"] = docker_registry
            clients = ["pallet"] + (["pallet-baseline"] if a.baseline_src else []) + \
                ([] if "skopeo" in missing else ["skopeo"])
            if "skopeo" in missing:
                sec.skip("skopeo client", "not installed (apt-get install skopeo)")
            elif "podman" not in missing:
                # podman pull unpacks the layers as pallet pull does, skopeo's copy to a
                # directory does not: the like-for-like column for pull (pushed by skopeo).
                clients.append("podman")
            n = 0

            def one(client: str, server: str, archive: Path, src_ref: str,
                    with_fetch: bool = True) -> tuple[float | None, float, float | None]:
                """(push ms, pull ms, fetch-only ms) of one image by `client` through a fresh
                `server`; podman only pulls (push ms None), what skopeo pushed untimed; only
                pallet has a fetch-only figure (skopeo's copy is one)."""
                nonlocal n
                n += 1
                fetch: float | None = None
                with servers[server](work / f"reg{n}") as addr:
                    ref = f"{addr}/bench/img:{n}"
                    if client == "pallet":
                        d.cli("tag", src_ref, ref)
                        push = d.ms("push", "-q", ref, timeout=900)
                        d.cli("rmi", ref)
                        puller = Palletd(work / f"pull{n}", parent)
                        try:
                            pull = puller.ms("pull", "-q", ref, timeout=900)
                        finally:
                            puller.close()
                            shutil.rmtree(work / f"pull{n}", ignore_errors=True)
                        if with_fetch:
                            fetch_root = work / f"fetch{n}"
                            try:
                                fetch = timed_ms([str(VENV_BIN / "python"), "-m", "pallet.registry.client",
                                                  "fetch", "--root", str(fetch_root), ref], env=d.env,
                                                 timeout=900)
                            except BenchError as exc:
                                sec.notes.append(f"FAILED: pallet fetch via {server}: {reason(exc)}")
                            finally:
                                shutil.rmtree(fetch_root, ignore_errors=True)
                    elif client == "pallet-baseline":
                        push = None  # pushed by this checkout; only the pull is compared
                        d.cli("tag", src_ref, ref)
                        d.cli("push", "-q", ref, timeout=900)
                        d.cli("rmi", ref)
                        old = os.environ.get("PYTHONPATH")
                        os.environ["PYTHONPATH"] = str(Path(a.baseline_src).resolve())
                        try:
                            puller = Palletd(work / f"pull{n}", parent)
                        finally:
                            if old is None:
                                os.environ.pop("PYTHONPATH", None)
                            else:
                                os.environ["PYTHONPATH"] = old
                        try:
                            pull = puller.ms("pull", "-q", ref, timeout=900)
                        finally:
                            puller.close()
                            shutil.rmtree(work / f"pull{n}", ignore_errors=True)
                    elif client == "podman":
                        push = None
                        run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"docker-archive:{archive}",
                             f"docker://{ref}"], timeout=900)
                        pm = Podman(work / f"pp{n}", parent)
                        try:
                            pull = pm.ms("pull", "-q", "--tls-verify=false", ref, timeout=900)
                        finally:
                            pm.close()
                            shutil.rmtree(work / f"pp{n}", ignore_errors=True)
                    else:
                        push = timed_ms(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                                         f"docker-archive:{archive}", f"docker://{ref}"], timeout=900)
                        dest = work / f"oci{n}"
                        pull = timed_ms(["skopeo", "copy", "-q", "--src-tls-verify=false",
                                         f"docker://{ref}", f"oci:{dest}:x"], timeout=900)
                        shutil.rmtree(dest, ignore_errors=True)
                shutil.rmtree(work / f"reg{n}", ignore_errors=True)
                return push, pull, fetch

            # (verb, title, client) -> server -> samples: the server comparison rows below
            by_server: dict[tuple[str, str, str], dict[str, list[float]]] = {}
            for title, (archive, src_ref) in archives.items():
                for server in servers:
                    if a.quick and server != "pallet registry" and title.startswith("50"):
                        sec.skip(f"push/pull, {title}, {server}", "full mode only (the quick budget)")
                        continue
                    push: dict[str, list[float]] = {c: [] for c in clients}
                    pull: dict[str, list[float]] = {c: [] for c in clients}
                    fetched: list[float] = []
                    print(f"  {title} via {server}: {reps} rounds", flush=True)
                    for _ in range(reps):
                        for c in clients:
                            try:
                                p, q, f = one(c, server, archive, src_ref)
                            except BenchError as exc:
                                sec.notes.append(f"FAILED: {c} push/pull {title} via {server}: "
                                                 f"{reason(exc)}")
                                continue
                            if p is not None:
                                push[c].append(p)
                            pull[c].append(q)
                            if f is not None:
                                fetched.append(f)
                    for verb, vals in (("push", push), ("pull", pull)):
                        vals = {k: v for k, v in vals.items() if v}
                        for c, v in vals.items():
                            by_server.setdefault((verb, title, c), {})[server] = v
                        if not vals:
                            sec.skip(f"{verb} {title} to {server}", "every attempt failed (see notes)")
                            continue
                        target = ("skopeo", "<=", 1.0) if "skopeo" in vals else None
                        sec.add(make_row(f"{verb}, {title}, {server}", "ms", vals, target=target))
                    if fetched and pull.get("skopeo"):
                        # The transfer alone, like for like with skopeo's copy to an OCI layout.
                        sec.add(make_row(f"fetch only (blobs, no unpack), {title}, {server}", "ms",
                                         {"pallet": fetched, "skopeo": pull["skopeo"]},
                                         target=("skopeo", "<=", 1.0)))
            _server_rows(sec, by_server)
            if a.quick:
                sec.skip("pull time against image size", "full mode only")
            else:
                sizes = [int(x) for x in a.sizes_mb.split(",")]
                series: dict[str, tuple[list[float], list[float]]] = {c: ([], []) for c in clients}
                for mb in sizes:
                    ref = f"bench/size{mb}:src"
                    arch = random_layer_archive(work / f"size{mb}.tar", base, [mb], ref)
                    d.cli("load", "-i", str(arch), timeout=600)
                    for c in clients:
                        times = [one(c, "pallet registry", arch, ref, with_fetch=False)[1] for _ in range(3)]
                        series[c][0].append(mb)
                        series[c][1].append(sorted(times)[1])
                    d.cli("rmi", ref)
                    arch.unlink()
                png = plot_lines(out / f"registry-pull-size-{stamp()}.png", "pull time against image size "
                                 "(pallet registry)", "MB (one random layer)", "ms (median of 3)", series)
                if png:
                    sec.plots.append(png)
                sec.extra["pull_vs_size_ms"] = series
        finally:
            for note in d.close():
                sec.notes.append(f"cleanup: {note}")
    return _finish(sec, out)


def _server_rows(sec: Section, by_server: dict[tuple[str, str, str], dict[str, list[float]]]) -> None:
    """Issue 7's server target: Pallet's registry at least 0.8x of docker-registry's throughput,
    for the same client, image and verb (the pushes and pulls above, as MB/s of the image's
    100 MB of layers). The two servers' rounds run one after the other, not alternated."""
    both = ("pallet registry", "docker-registry")
    for (verb, title, client), per in by_server.items():
        if client not in ("pallet", "skopeo") or not all(per.get(srv) for srv in both):
            continue
        rates = {srv: [100_000 / ms for ms in per[srv] if ms > 0] for srv in both}
        sec.add(make_row(f"server: {verb}, {title}, {client} client", "MB/s", rates, better="higher",
                         base="pallet registry", target=("docker-registry", ">=", 0.8)))


def _finish(sec: Section, out: Path) -> int:
    path = sec.write(out, tools=["skopeo", "docker-registry"])
    print(sec.report())
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    main_wrapper(main)
