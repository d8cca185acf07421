"""Engine benchmark: palletd and the pallet CLI against podman, container lifecycle latency.

    bench/run engine [--quick] [--reps N] [--warmup N] [--no-install]

Each figure is the wall clock of one whole CLI process, from spawn to exit, as a user sees it:

  version  ENGINE version         (the CLI's own floor: start-up and one API call or none)
  run      ENGINE run --rm --network none busybox true
  create   ENGINE create --name N --network none busybox sh -c "trap 'exit 0' TERM; sleep 600 & wait"
  start    ENGINE start N
  exec     ENGINE exec N true
  stop     ENGINE stop N          (the shell exits on SIGTERM, so no stop timeout is waited for)
  rm       ENGINE rm N

Engines, alternating within every round (pallet, pallet+runc, [pallet+crun], docker-cli, podman): palletd with
its default runtime pallet-runtime, the same palletd with `--runtime runc` (and crun when palletd
can drive it here; crun 1.8.1 refuses hybrid cgroup hosts), and podman with runc (same reason)
on a private store. docker-cli is the Go docker CLI (when on PATH) driving the same palletd as
`pallet`: the ratio pallet/docker-cli is what the Python CLI adds (start-up, its requests), the
rest of a figure is the daemon's. `--network none` on all: podman's default network runs netavark, which
changes the host's firewall, and the benchmark must not; the network section measures bridges.

`--breakdown` measures only where the time of `pallet run --rm busybox true` goes: a palletd
with `-D` logs each request's time (logger pallet.api.timing, docs/design/daemon.md), and the
table gives per request the median over the runs, and what is left outside the daemon (the CLI's
start-up, connects and exit): the whole command less create and wait (the wait spans attach,
start, the run, the exit and the removal).

The ratios pallet/pallet+runc and pallet/pallet+crun show what pallet-runtime costs inside the
daemon against the C runtimes; pallet/podman is the issue's comparison (target: run <= 0.5x).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    BenchError,
    Palletd,
    Podman,
    Section,
    busybox_tar,
    cgroup_mode,
    common_args,
    ensure_debs,
    main_wrapper,
    make_row,
    plot_bars,
    reason,
    reps_of,
    stamp,
    timed_ms,
    workspace,
)

OPS = ("version", "run", "create", "start", "exec", "stop", "rm")
IDLE = ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
PEERS = {"podman": "podman", "runc": "runc", "crun": "crun"}


class PalletEngine:
    def __init__(self, d: Palletd, runtime: str | None) -> None:
        self.d = d
        self.rt = ["--runtime", runtime] if runtime else []

    def op(self, op: str, name: str) -> float:
        d = self.d
        if op == "version":
            return d.ms("version")
        if op == "run":
            return d.ms("run", "--rm", "--network", "none", *self.rt, "busybox", "true")
        if op == "create":
            return d.ms("create", "--name", name, "--network", "none", *self.rt, "busybox", *IDLE)
        if op == "exec":
            return d.ms("exec", name, "true")
        return d.ms(op, name)


class DockerCliEngine:
    """The docker CLI against palletd: the same daemon work as `pallet`, a Go client."""

    def __init__(self, d: Palletd, docker: str) -> None:
        self.d = d
        self.docker = [docker, "-H", d.host]

    def ms(self, *args: str) -> float:
        return timed_ms([*self.docker, *args], env=self.d.env, timeout=30)

    def op(self, op: str, name: str) -> float:
        if op == "version":
            return self.ms("version")
        if op == "run":
            return self.ms("run", "--rm", "--network", "none", "busybox", "true")
        if op == "create":
            return self.ms("create", "--name", name, "--network", "none", "busybox", *IDLE)
        if op == "exec":
            return self.ms("exec", name, "true")
        return self.ms(op, name)


class PodmanEngine:
    def __init__(self, p: Podman) -> None:
        self.p = p

    def op(self, op: str, name: str) -> float:
        p = self.p
        if op == "version":
            return p.ms("version")
        if op == "run":
            return p.ms("run", "--rm", *p.run_args(), "localhost/busybox", "true")
        if op == "create":
            return p.ms("create", "--name", name, *p.run_args(), "localhost/busybox", *IDLE)
        if op == "exec":
            return p.ms("exec", name, "true")
        return p.ms(op, name)


def measure(engines: dict[str, PalletEngine | DockerCliEngine | PodmanEngine], reps: int, warmup: int,
            sec: Section) -> dict[str, dict[str, list[float]]]:
    """Alternate engines within each round; a failed command is left out of the samples and
    counted in a note (a benchmark that stops at the first error hides how often it happens)."""
    samples: dict[str, dict[str, list[float]]] = {op: {e: [] for e in engines} for op in OPS}
    failures: dict[tuple[str, str], list[str]] = {}
    t0 = time.monotonic()
    for i in range(warmup + reps):
        for ename, eng in engines.items():
            name = f"b{i}-{ename.replace('+', '-')}"
            for op in OPS:
                if op == "version" and "+" in ename:
                    continue  # the same CLI and daemon whatever the runtime
                try:
                    ms = eng.op(op, name)
                except BenchError as exc:
                    failures.setdefault((op, ename), []).append(reason(exc))
                    continue
                if i >= warmup:
                    samples[op][ename].append(ms)
        print(f"\r  round {i + 1}/{warmup + reps} ({time.monotonic() - t0:.0f} s)", end="", flush=True)
    print(flush=True)
    for (op, ename), errs in failures.items():
        sec.notes.append(f"FAILED: {ename} {op} failed {len(errs)} of {warmup + reps} times "
                         f"(left out of its figure); last error: {errs[-1][:300]}")
    return samples


_TIMING = re.compile(r"pallet\.api\.timing: (\w+) (\S+) (\d+) ([\d.]+) ms$")


def timing_rows(log: str) -> dict[str, list[float]]:
    """palletd -D timing lines as {"POST /containers/{id}/start 204": [ms, ...]}, the version
    prefix, ids and query strings left out."""
    rows: dict[str, list[float]] = {}
    for line in log.splitlines():
        m = _TIMING.search(line)
        if m is None:
            continue
        method, path, status, ms = m.groups()
        path = re.sub(r"^/v[0-9.]+", "", path.split("?")[0])
        path = re.sub(r"/containers/[0-9a-f]{64}", "/containers/{id}", path)
        rows.setdefault(f"{method} {path} {status}", []).append(float(ms))
    return rows


def breakdown(reps: int, warmup: int) -> str:
    """`--breakdown`: a Markdown table of where `pallet run --rm busybox true` spends its time."""
    with workspace("pb") as (work, parent):
        d = Palletd(work / "d", parent, extra=["-D"])
        try:
            d.cli("image", "bootstrap", "busybox")
            for _ in range(warmup):
                d.ms("run", "--rm", "--network", "none", "busybox", "true")
            skip = {k: len(v) for k, v in timing_rows((work / "d" / "palletd.log").read_text()).items()}
            totals = [d.ms("run", "--rm", "--network", "none", "busybox", "true") for _ in range(reps)]
            rows = timing_rows((work / "d" / "palletd.log").read_text())
        finally:
            for n in d.close():
                print(f"cleanup: {n}", file=sys.stderr)
    rows = {k: v[skip.get(k, 0):] for k, v in rows.items()}
    rows = {k: v for k, v in rows.items() if v}
    med = {k: statistics.median(v) for k, v in rows.items()}
    total = statistics.median(totals)
    inside = sum(ms for k, ms in med.items() if "/create " in k or "/wait " in k)
    lines = [f"`pallet run --rm --network none busybox true`, median of {reps} runs ({warmup} warm-up), ms",
             "", "| part | median ms |", "|---|---:|"]
    lines += [f"| `{k}` | {ms:.1f} |" for k, ms in med.items()]
    lines += [f"| outside the daemon: the whole command less create and wait | {total - inside:.1f} |",
              f"| **the whole command** | **{total:.1f}** |"]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(ap, default_reps=20, quick_reps=10)
    ap.add_argument("--breakdown", action="store_true",
                    help="only the per-request breakdown of `pallet run --rm` (palletd -D timing lines)")
    a = ap.parse_args()
    reps, warmup = reps_of(a, 20, 10)
    if a.breakdown:
        print(breakdown(reps, warmup))
        return 0
    sec = Section("engine", a.quick)
    missing = ensure_debs(PEERS, not a.no_install)
    with workspace("pe") as (work, parent):
        d = Palletd(work / "d", parent)
        podman: Podman | None = None
        d_crun: Palletd | None = None
        try:
            d.cli("image", "bootstrap", "busybox")
            engines: dict[str, PalletEngine | DockerCliEngine | PodmanEngine] = {
                "pallet": PalletEngine(d, None)}
            for rt in ("runc", "crun"):
                if rt in missing:
                    sec.skip(f"palletd through {rt}", f"{rt} is not installed")
                    continue
                daemon = d
                if rt == "crun" and cgroup_mode() == "hybrid":
                    # crun 1.8.1 refuses hybrid hosts: a second palletd, in a mount namespace
                    # without the cgroup2 mount (benchlib.Palletd private_v1), drives it.
                    d_crun = daemon = Palletd(work / "dc", parent, private_v1=True)
                    d_crun.cli("image", "bootstrap", "busybox")
                # Without --rm: its wait can hang (docs/benchmarks.md), which is not the runtime's fault.
                probe = daemon.cli("run", "--name", f"probe-{rt}", "--network", "none", "--runtime", rt,
                                   "busybox", "true", check=False, timeout=120)
                daemon.cli("rm", "-f", f"probe-{rt}", check=False)
                if probe.returncode != 0:
                    err = probe.stderr.decode(errors="replace")
                    sec.skip(f"palletd through {rt}", reason(BenchError(err)))
                    continue
                engines[f"pallet+{rt}"] = PalletEngine(daemon, rt)
                if daemon is not d:
                    sec.notes.append(f"pallet+{rt}: a second palletd in a private mount namespace "
                                     "where /sys/fs/cgroup/unified is unmounted (crun 1.8.1 refuses "
                                     "hybrid cgroups); the same binaries and options otherwise")
            docker = shutil.which("docker")
            if docker is None:
                sec.skip("docker-cli", "the docker CLI is not on PATH")
            else:
                engines["docker-cli"] = DockerCliEngine(d, docker)
                sec.notes.append("docker-cli: the Go docker CLI against the same palletd as `pallet`; "
                                 "pallet/docker-cli is what the Python CLI costs")
            if "podman" in missing or "runc" in missing:
                sec.skip("podman", "podman or runc is not installed (apt-get install podman runc)")
            else:
                podman = Podman(work / "p", parent, runtime="runc")
                podman("import", "-q", str(busybox_tar(work / "busybox.tar")), "localhost/busybox")
                engines["podman"] = PodmanEngine(podman)
                sec.notes.append("podman runs runc: crun 1.8.1 refuses hybrid cgroup hosts")
            print(f"engine: {reps} rounds + {warmup} warm-up, alternating {', '.join(engines)}", flush=True)
            samples = measure(engines, reps, warmup, sec)
        finally:
            for n in d.close():
                sec.notes.append(f"cleanup: {n}")
            if d_crun is not None:
                for n in d_crun.close():
                    sec.notes.append(f"cleanup: {n}")
            if podman is not None:
                podman.close()
    titles = {"version": "`version` (CLI floor)", "run": "`run --rm busybox true` (CLI to exit)",
              "create": "create", "start": "start",
              "exec": "exec `true`", "stop": "stop", "rm": "rm"}
    for op in OPS:
        target = ("podman", "<=", 0.5) if op == "run" and "podman" in samples[op] else None
        sec.add(make_row(titles[op], "ms", samples[op], target=target))
    if "pallet+runc" in samples["run"]:
        sec.notes.append("pallet/pallet+runc: the same palletd, pallet-runtime against runc as the "
                         "OCI runtime (target for the runtime alone: at or below runc)")
    out = Path(a.out)
    png = plot_bars(out / f"engine-{stamp()}.png", "Container lifecycle through the CLI (median ms)",
                    "ms", list(OPS), {e: [sec.rows[k]["values"][e]["median"] if e in sec.rows[k]["values"]
                                          else 0 for k in range(len(OPS))] for e in samples["run"]})
    if png:
        sec.plots.append(png)
    path = sec.write(out, tools=["podman", "runc", "crun"])
    print(sec.report())
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    main_wrapper(main)
