"""Growth benchmark: how run latency grows with image layers and commit time with the change size.

    bench/run growth [--quick] [--layers 1,10,100] [--sizes-mb 1,10,100] [--reps N] [--no-install]

  run vs layers   images of 1, 10 and 100 layers (busybox, then one small file per layer),
                  written by this harness as one docker-archive each (docker save format:
                  manifest.json, config, layer tars) and loaded with `pallet load` and
                  `podman load`; then `ENGINE run --rm --network none IMAGE true`, engines
                  alternating, warm-up rounds first (pallet applies layers on first use).
  commit vs size  a container writes S MB of /dev/urandom to /change and exits; `ENGINE commit`
                  of it is timed (the container's run is not); then container and image go.

Both as plots (PNG) next to the JSON results; the commit of 10 MB carries the issue's target
(at most 0.5x podman's time).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import json
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    BenchError,
    Palletd,
    Podman,
    Section,
    alternate_tolerant,
    busybox_tar,
    common_args,
    ensure_debs,
    main_wrapper,
    make_row,
    plot_lines,
    reason,
    reps_of,
    stamp,
    workspace,
)

PEERS = {"podman": "podman", "runc": "runc"}
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def small_layer(i: int) -> bytes:
    """An uncompressed layer tar holding one 4 KiB file /layers/<i>."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        d = tarfile.TarInfo("layers")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tf.addfile(d)
        data = f"layer {i}\n".encode().ljust(4096, b".")
        ti = tarfile.TarInfo(f"layers/{i:04d}")
        ti.size, ti.mode = len(data), 0o644
        tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def layered_archive(dest: Path, base_tar: Path, layers: int, ref: str) -> Path:
    """A docker-archive (docker save format, /work/shared/specs) of busybox plus layers-1 small
    layers, tagged `ref`."""
    blobs = [base_tar.read_bytes(), *(small_layer(i) for i in range(1, layers))]
    diff_ids = ["sha256:" + hashlib.sha256(b).hexdigest() for b in blobs]
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Cmd": ["sh"], "Env": [f"PATH={PATH}"]},
              "rootfs": {"type": "layers", "diff_ids": diff_ids},
              "history": [{"created_by": f"bench layer {i}"} for i in range(layers)]}
    cfg = json.dumps(config).encode()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    names = [f"{d.split(':')[1]}/layer.tar" for d in diff_ids]
    manifest = json.dumps([{"Config": cfg_name, "RepoTags": [ref], "Layers": names}]).encode()
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in [(cfg_name, cfg), *zip(names, blobs), ("manifest.json", manifest)]:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tf.addfile(ti, io.BytesIO(data))
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(ap, default_reps=10, quick_reps=10)
    ap.add_argument("--layers", default="1,10,100")
    ap.add_argument("--sizes-mb", help="commit change sizes (default 1,10,100; 1,10,50 with --quick)")
    ap.add_argument("--commit-reps", type=int, help="commits per size (default 10; 3 with --quick)")
    a = ap.parse_args()
    reps, warmup = reps_of(a, 10, 10)
    layer_counts = [int(x) for x in a.layers.split(",")]
    sizes = [int(x) for x in (a.sizes_mb or ("1,10,50" if a.quick else "1,10,100")).split(",")]
    commit_reps = a.commit_reps or (3 if a.quick else 10)
    sec = Section("growth", a.quick)
    missing = ensure_debs(PEERS, not a.no_install)
    out = Path(a.out)
    with workspace("pg") as (work, parent):
        d = Palletd(work / "d", parent)
        pm: Podman | None = None
        try:
            if missing:
                sec.skip("podman", f"not installed: {', '.join(missing)}")
            else:
                pm = Podman(work / "p", parent, runtime="runc")
            base = busybox_tar(work / "busybox.tar")
            d.cli("image", "bootstrap", "busybox")
            if pm is not None:
                pm("import", "-q", str(base), "localhost/busybox")

            # -- run latency against the number of layers
            series: dict[str, tuple[list[float], list[float]]] = {"pallet": ([], [])}
            if pm is not None:
                series["podman"] = ([], [])
            for n in layer_counts:
                ref = f"localhost/bench/layers:{n}"
                arch = layered_archive(work / f"layers-{n}.tar", base, n, ref)
                cmds: dict[str, Callable[[], float]] = {}
                try:
                    d.cli("load", "-i", str(arch))
                    # The first container applies the layers: a probe, untimed, without --rm (whose
                    # wait can hang, see docs/benchmarks.md), so that a failure here is the layers'.
                    d.cli("run", "--name", f"probe{n}", "--network", "none", ref, "true", timeout=300)
                    d.cli("rm", f"probe{n}")
                    cmds["pallet"] = functools.partial(d.ms, "run", "--rm", "--network", "none", ref, "true")
                except BenchError as exc:
                    sec.skip(f"pallet run with {n} layers", reason(exc))
                if pm is not None:
                    pm("load", "-q", "-i", str(arch))
                    cmds["podman"] = functools.partial(pm.ms, "run", "--rm", *pm.run_args(), ref, "true")
                if not cmds:
                    continue
                print(f"  run with {n} layers: {reps} rounds", flush=True)
                got = alternate_tolerant(cmds, reps, warmup, sec.notes, f"run, {n} layers")
                row = make_row(f"`run --rm` of an image with {n} layer{'s' if n > 1 else ''}", "ms", got)
                sec.add(row)
                for e in row["values"]:
                    series[e][0].append(n)
                    series[e][1].append(row["values"][e]["median"])
            png = plot_lines(out / f"growth-layers-{stamp()}.png", "run --rm IMAGE true against image layers",
                             "layers", "ms (median)", series, logx=True)
            if png:
                sec.plots.append(png)

            # -- commit time against the size of the change
            series = {"pallet": ([], [])}
            if pm is not None:
                series["podman"] = ([], [])
            for size in sizes:
                samples: dict[str, list[float]] = {k: [] for k in series}
                print(f"  commit of {size} MB: {commit_reps} times", flush=True)
                write = ["sh", "-c", f"dd if=/dev/urandom of=/change bs=1M count={size} 2>/dev/null"]
                for i in range(commit_reps):
                    name = f"c{size}-{i}"
                    d.cli("run", "--name", name, "--network", "none", "busybox", *write, timeout=300)
                    samples["pallet"].append(d.ms("commit", name, f"bench/commit:{name}", timeout=300))
                    d.cli("rm", name)
                    d.cli("rmi", f"bench/commit:{name}")
                    if pm is not None:
                        pm("run", "--name", name, *pm.run_args(), "localhost/busybox", *write)
                        samples["podman"].append(pm.ms("commit", "-q", name, f"localhost/bench/commit:{name}",
                                                       timeout=300))
                        pm("rm", name)
                        pm("rmi", f"localhost/bench/commit:{name}")
                target = ("podman", "<=", 0.5) if size == 10 and pm is not None else None
                row = make_row(f"commit of a {size} MB change", "ms", samples, target=target)
                sec.add(row)
                for e in row["values"]:
                    series[e][0].append(size)
                    series[e][1].append(row["values"][e]["median"])
            png = plot_lines(out / f"growth-commit-{stamp()}.png",
                             "commit time against change size", "MB changed", "ms (median)", series)
            if png:
                sec.plots.append(png)
        finally:
            for note in d.close():
                sec.notes.append(f"cleanup: {note}")
            if pm is not None:
                pm.close()
    path = sec.write(out, tools=["podman", "runc"])
    print(sec.report())
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    main_wrapper(main)
