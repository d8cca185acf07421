"""Build benchmark: `pallet build` against `podman build`, a 10-step Dockerfile cold and cached.

    bench/run build [--quick] [--reps N] [--no-install]

The Dockerfile (FROM busybox, then COPY, WORKDIR, ENV, LABEL and six RUN steps: ten steps)
is built from the same context by both engines, alternating:

  cold     ENGINE build --no-cache -t bench/build:cold CONTEXT   (every step executed)
  cached   ENGINE build -t bench/build:cached CONTEXT            (after one untimed build:
                                                                  every step from the cache)

RUN steps get `--network none` on both (podman's default network would edit the host firewall).
podman builds with runc and its private store (bench/benchlib.Podman). Skips with the reason
when this pallet has no `build` verb or a probe build fails (issue 6 not landed or broken).
Targets (issue 8): cached at or below podman's time; cold at most 0.7x.
"""

from __future__ import annotations

import argparse
import sys
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
    reason,
    reps_of,
    workspace,
)

PEERS = {"podman": "podman", "runc": "runc"}
DOCKERFILE = """\
FROM {base}
COPY data.txt /app/data.txt
WORKDIR /app
ENV GREETING=hello
LABEL bench=pallet
RUN echo "$GREETING" > /app/greeting
RUN wc -c /app/data.txt > /app/size
RUN mkdir -p /app/out && cp /app/data.txt /app/out/copy
RUN dd if=/dev/zero of=/app/zeros bs=1024 count=1024 2>/dev/null
RUN sha256sum /app/zeros > /app/zeros.sha256
RUN rm /app/zeros && ls -l /app > /app/listing
"""


def context(work: Path, name: str, base: str) -> Path:
    ctx = work / name
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    (ctx / "data.txt").write_text("pallet build benchmark\n" * 1000)
    return ctx


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(ap, default_reps=10, quick_reps=3)
    a = ap.parse_args()
    reps, warmup = reps_of(a, 10, 3)
    warmup = min(warmup, 1)
    sec = Section("build", a.quick)
    if a.quick:
        sec.notes.append(f"--quick: {reps} builds each (a cold build runs ten steps; 10 repetitions "
                         "of both engines would take most of the 5-minute budget)")
    missing = ensure_debs(PEERS, not a.no_install)
    with workspace("pu") as (work, parent):
        d = Palletd(work / "d", parent)
        pm: Podman | None = None
        try:
            if not d.has_verb("build"):
                sec.skip("build", "this pallet has no `build` verb (issue 6 not landed)")
                return _finish(sec, a)
            d.cli("image", "bootstrap", "busybox")
            pctx = context(work, "ctx-pallet", "busybox")
            probe = d.cli("build", "-q", "--network", "none", "-t", "bench/build:probe", str(pctx),
                          check=False, timeout=600)
            if probe.returncode != 0:
                sec.skip("build", "a probe `pallet build` failed: "
                         + reason(BenchError(probe.stderr.decode(errors="replace"))))
                return _finish(sec, a)
            cmds = {
                "cold": {"pallet": lambda: d.ms("build", "-q", "--no-cache", "--network", "none",
                                                "-t", "bench/build:cold", str(pctx), timeout=600)},
                "cached": {"pallet": lambda: d.ms("build", "-q", "--network", "none",
                                                  "-t", "bench/build:cached", str(pctx), timeout=600)},
            }
            if missing:
                sec.skip("podman build", f"not installed: {', '.join(missing)}")
            else:
                pm = Podman(work / "p", parent, runtime="runc")
                pm("import", "-q", str(busybox_tar(work / "busybox.tar")), "localhost/busybox")
                qctx = context(work, "ctx-podman", "localhost/busybox")
                common = ["build", "-q", "--network", "none", "--cgroup-parent", parent,
                          "--runtime", "runc", "--layers"]
                try:
                    pm(*common, "-t", "localhost/bench/build:probe", str(qctx))
                    cmds["cold"]["podman"] = lambda: pm.ms(*common, "--no-cache",
                                                           "-t", "localhost/bench/build:cold", str(qctx),
                                                           timeout=600)
                    cmds["cached"]["podman"] = lambda: pm.ms(*common,
                                                             "-t", "localhost/bench/build:cached", str(qctx),
                                                             timeout=600)
                except BenchError as exc:
                    sec.skip("podman build", f"a probe `podman build` failed: {reason(exc)}")
            for kind, limit in (("cold", 0.7), ("cached", 1.0)):
                print(f"  {kind} build: {reps} rounds + {warmup} warm-up", flush=True)
                samples = alternate_tolerant(cmds[kind], reps, warmup, sec.notes, f"{kind} build")
                target = ("podman", "<=", limit) if "podman" in samples else None
                sec.add(make_row(f"build, 10 steps, {kind}", "ms", samples, target=target))
        finally:
            for note in d.close():
                sec.notes.append(f"cleanup: {note}")
            if pm is not None:
                pm.close()
    return _finish(sec, a)


def _finish(sec: Section, a: argparse.Namespace) -> int:
    path = sec.write(Path(a.out), tools=["podman"])
    print(sec.report())
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    main_wrapper(main)
