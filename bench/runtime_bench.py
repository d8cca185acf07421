"""Runtime benchmark: pallet-runtime against runc and crun on one busybox bundle.

    bench/run runtime --only [--quick] [--reps N] [--warmup N] [--no-hyperfine] [--same-ns] [--no-install]
                             [--compare NAME=PATH ...]

Measures, for each runtime, with the same config.json (busybox `true`, the secure defaults of
`python -m pallet.runtime.bundle`: seccomp, capabilities, masked paths, cgroup under
/pallet-bench-<random>/):

  cli      RT --version                                    (process start-up floor)
  run      RT --root R run -b B ID                         (create + start + wait + delete)
  create   RT --root R create -b B --pid-file F ID
  start    RT --root R start ID                            (then wait, untimed, for `true` to exit)
  delete   RT --root R delete ID

Runtimes alternate within each round (pallet, runc, crun, pallet, ...) so that drift in the
machine's state hits all three alike, and the round's first runtime rotates (round 2 starts with
runc, round 3 with crun, ...): the first cgroup move after a quiet spell waits for an RCU grace
period (cgroup_threadgroup_rwsem, see src/pallet/runtime/cgwarm.py) and the moves that follow
within one do not, so a fixed order charged that wait, after the quiet `--version` phase, to the
same runtime in every round (--compare adds more to the rotation, e.g. another build of
pallet-runtime: `--compare before=/tmp/old/pallet-runtime`); the first --warmup rounds are thrown
away. Every command is started the same way (fork, then execve, from this harness) and timed
from fork to reaped.

crun 1.8.1 refuses a hybrid cgroup layout (cgroup v1 with cgroup2 at /sys/fs/cgroup/unified):
on such a host the harness makes one private mount namespace with that cgroup2 mount unmounted
and starts crun's commands in it (setns between fork and execve, no extra process), so crun
drives the same v1 hierarchies. --same-ns starts all three runtimes there.

The container config says ociVersion 1.0.2, not pallet's 1.2.0: crun 1.8.1 rejects any
version that does not start with "1.0" ("unknown version specified").

Results: a Markdown table on stdout, JSON in bench/results/<timestamp>.json, and a PNG bar plot
beside it when matplotlib is importable (it is not a dependency).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import secrets
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import benchlib  # bench/ is this script's directory, so on sys.path
from benchlib import BenchError, cgroup_mode, first_line, mountinfo, private_cgroup_v1_ns

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV_PY = REPO / ".venv" / "bin" / "python"
RESULTS = HERE / "results"
CGROUP_ROOT = Path("/sys/fs/cgroup")

# Debian package for each peer the benchmark needs.
PEERS = {"runc": "runc", "crun": "crun", "hyperfine": "hyperfine", "unshare": "util-linux"}
BUSYBOX = "/bin/busybox"

OPS = ("cli", "run", "create", "start", "delete")
OP_TITLES = {
    "cli": "`--version` (start-up floor)",
    "run": "**run** (create+start+wait+delete)",
    "create": "create",
    "start": "start",
    "delete": "delete",
}


# -- machine and peers --------------------------------------------------------------------------
def ensure_peers(install: bool) -> None:
    missing = sorted({pkg for cmd, pkg in PEERS.items() if not shutil.which(cmd)})
    if not os.path.exists(BUSYBOX):
        missing.append("busybox-static")
    if not missing:
        return
    if not install:
        raise BenchError(f"missing peers: {', '.join(missing)} (apt-get install {' '.join(missing)})")
    print(f"installing from Debian: {' '.join(missing)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
    if subprocess.run(cmd, env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(cmd, env=env, check=True)


def machine_info(runtimes: dict[str, list[str]]) -> dict:
    """benchlib's machine description, with each runtime's and hyperfine's version."""
    m = benchlib.machine_info()
    m["versions"] = {name: first_line([*argv, "--version"]) for name, argv in runtimes.items()}
    m["hyperfine"] = first_line(["hyperfine", "--version"])
    return m


# -- spawning and timing ------------------------------------------------------------------------
@dataclass
class Runtime:
    name: str
    argv: list[str]          # the command, absolute path first
    root: str                # --root state directory
    mntns: int = -1          # mount namespace fd to enter before execve, or -1
    note: str = ""


@dataclass
class Harness:
    workdir: Path
    syscalls: object
    stderr_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.stderr_path = self.workdir / "stderr.log"
        self.last_cpu_ms = 0.0  # user+system CPU of the last command and the children it reaped
        self.devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)

    def spawn(self, argv: list[str], mntns: int = -1) -> tuple[int, int]:
        """fork + (setns) + execve `argv` with stdio on /dev/null; return (ns elapsed, status)."""
        err = os.open(self.stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        t0 = time.perf_counter_ns()
        pid = os.fork()
        if pid == 0:
            try:
                if mntns >= 0:
                    self.syscalls.setns(mntns, CLONE_NEWNS)
                os.dup2(self.devnull, 0)
                os.dup2(self.devnull, 1)
                os.dup2(err, 2)
                os.execve(argv[0], argv, RUNTIME_ENV)
            finally:
                os._exit(127)
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter_ns() - t0
        self.last_cpu_ms = (usage.ru_utime + usage.ru_stime) * 1000
        os.close(err)
        return elapsed, os.waitstatus_to_exitcode(status)

    def check(self, argv: list[str], mntns: int = -1) -> float:
        """spawn, fail loudly on a non-zero exit, return milliseconds."""
        ns, code = self.spawn(argv, mntns)
        if code != 0:
            err = self.stderr_path.read_text(errors="replace").strip()
            raise BenchError(f"{' '.join(argv)}: exit {code}: {err}")
        return ns / 1e6


def wait_exit(pid: int, timeout: float = 10.0) -> None:
    """Wait for a container init to exit and reap it: it is our child, because the runtime that
    forked it has exited and we are a child subreaper (prctl(2) PR_SET_CHILD_SUBREAPER)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if not select.select([pidfd], [], [], timeout)[0]:
            raise BenchError(f"container init {pid} still running after {timeout} s")
    finally:
        os.close(pidfd)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def reap_strays() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def stats(samples: list[float]) -> dict:
    return {
        "n": len(samples),
        "median_ms": round(statistics.median(samples), 2),
        "min_ms": round(min(samples), 2),
        "max_ms": round(max(samples), 2),
        "mean_ms": round(statistics.fmean(samples), 2),
        "stdev_ms": round(statistics.stdev(samples), 2) if len(samples) > 1 else 0.0,
        "samples_ms": [round(s, 3) for s in samples],
    }


Samples = dict[str, dict[str, list[float]]]


def measure(h: Harness, runtimes: list[Runtime], bundle: str, reps: int, warmup: int,
            progress) -> tuple[Samples, Samples]:
    """Wall-clock and CPU milliseconds per operation and runtime. CPU time (getrusage of the
    command and of the children it reaped: not the container, which the harness reaps) moves
    far less than wall-clock time when other work shares the machine."""
    samples: Samples = {op: {rt.name: [] for rt in runtimes} for op in OPS}
    cpu: Samples = {op: {rt.name: [] for rt in runtimes} for op in OPS}
    pidfile = str(h.workdir / "init.pid")
    rounds = warmup + reps
    for i in range(rounds):
        keep = i >= warmup
        k = i % len(runtimes)
        order = runtimes[k:] + runtimes[:k]  # the first runtime of a round rotates (docstring)
        for rt in order:
            ms = h.check([*rt.argv, "--version"], rt.mntns)
            if keep:
                samples["cli"][rt.name].append(ms)
                cpu["cli"][rt.name].append(h.last_cpu_ms)
        for rt in order:
            ms = h.check([*rt.argv, "--root", rt.root, "run", "-b", bundle, f"run-{i}"], rt.mntns)
            if keep:
                samples["run"][rt.name].append(ms)
                cpu["run"][rt.name].append(h.last_cpu_ms)
        for rt in order:
            cid = f"phase-{i}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(pidfile)
            t_create = h.check([*rt.argv, "--root", rt.root, "create", "-b", bundle,
                                "--pid-file", pidfile, cid], rt.mntns)
            c_create = h.last_cpu_ms
            pid = int(Path(pidfile).read_text().strip())
            t_start = h.check([*rt.argv, "--root", rt.root, "start", cid], rt.mntns)
            c_start = h.last_cpu_ms
            wait_exit(pid)
            t_delete = h.check([*rt.argv, "--root", rt.root, "delete", cid], rt.mntns)
            if keep:
                for op, t, c in (("create", t_create, c_create), ("start", t_start, c_start),
                                 ("delete", t_delete, h.last_cpu_ms)):
                    samples[op][rt.name].append(t)
                    cpu[op][rt.name].append(c)
        reap_strays()
        progress(i + 1, rounds)
    return samples, cpu


def floor_ms(h: Harness, reps: int) -> float:
    true = shutil.which("true") or "/bin/true"
    return statistics.median(h.check([true]) for _ in range(max(reps, 5)))


def hyperfine_run(h: Harness, rt: Runtime, bundle: str, reps: int, warmup: int) -> dict | None:
    """Cross-check of `run` with hyperfine (runs of one runtime back to back, not alternating)."""
    out = h.workdir / f"hyperfine-{rt.name}.json"
    cmd = " ".join([*rt.argv, "--root", rt.root, "run", "-b", bundle, "hf"])
    ns = rt.mntns
    res = subprocess.run(
        ["hyperfine", "-N", "--style", "none", "--warmup", str(warmup), "--runs", str(reps),
         "--export-json", str(out), cmd],
        capture_output=True, text=True, cwd="/", env=RUNTIME_ENV,
        preexec_fn=(lambda: h.syscalls.setns(ns, CLONE_NEWNS)) if ns >= 0 else None)
    if res.returncode != 0:
        print(f"hyperfine {rt.name}: failed: {res.stderr.strip()[-500:]}", file=sys.stderr)
        return None
    r = json.loads(out.read_text())["results"][0]
    return {k + "_ms": round(r[k] * 1000, 2) for k in ("median", "mean", "min", "max", "stddev")}


# -- output -------------------------------------------------------------------------------------
def fmt_cell(s: dict) -> str:
    return f"{s['median_ms']:.1f} ({s['min_ms']:.1f}-{s['max_ms']:.1f})"


def markdown_table(results: dict, names: list[str], key: str = "ops") -> str:
    """Medians (min-max) per operation and the pallet/peer ratios; key "cpu_ops" for CPU times."""
    peers = [n for n in names if n != "pallet"]
    head = ["operation", *(NAME_TITLES.get(n, n) for n in names), *(f"pallet/{p}" for p in peers)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for op in OPS:
        row = results[key][op]
        cells = [OP_TITLES[op], *(fmt_cell(row[n]) for n in names)]
        for p in peers:
            cells.append(f"{row['pallet']['median_ms'] / row[p]['median_ms']:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    hf = results.get("hyperfine") or {}
    if key == "ops" and hf and all(hf.get(n) for n in names):
        cells = ["run, hyperfine (back to back)",
                 *(f"{hf[n]['median_ms']:.1f} ({hf[n]['min_ms']:.1f}-{hf[n]['max_ms']:.1f})" for n in names),
                 *(f"{hf['pallet']['median_ms'] / hf[p]['median_ms']:.2f}x" for p in peers)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


NAME_TITLES = {"pallet": "pallet-runtime", "runc": "runc", "crun": "crun"}


def plot(results: dict, names: list[str], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return (f"plot skipped: matplotlib is not importable by {sys.executable} "
                "(install it into the venv to get a PNG; it is not a dependency)")
    ops = list(OPS)
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for k, n in enumerate(names):
        med = [results["ops"][op][n]["median_ms"] for op in ops]
        lo = [m - results["ops"][op][n]["min_ms"] for m, op in zip(med, ops)]
        hi = [results["ops"][op][n]["max_ms"] - m for m, op in zip(med, ops)]
        xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(ops))]
        ax.bar(xs, med, width, yerr=[lo, hi], capsize=3, label=NAME_TITLES.get(n, n))
    ax.set_xticks(range(len(ops)), ops)
    ax.set_ylabel("ms (median, bars: min-max)")
    m = results["machine"]
    ax.set_title(f"OCI runtimes, busybox true — {m['nproc']} CPUs, Linux {m['kernel']}, "
                 f"cgroup {m['cgroup_mode']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"plot: {path}"


# -- setup and teardown -------------------------------------------------------------------------
def make_bundle(workdir: Path, cgroup_parent: str) -> str:
    bundle = workdir / "bundle"
    subprocess.run([str(VENV_PY), "-m", "pallet.runtime.bundle", str(bundle), "--", "true"],
                   check=True, cwd=str(REPO), env=RUNTIME_ENV)
    cfg_path = bundle / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["ociVersion"] = "1.0.2"
    cfg["linux"]["cgroupsPath"] = f"{cgroup_parent}/c"
    cfg_path.write_text(json.dumps(cfg, indent=1))
    return str(bundle)


def cleanup(h: Harness | None, runtimes: list[Runtime], cgroup_parent: str, workdir: Path) -> list[str]:
    notes = []
    for rt in runtimes:
        root = Path(rt.root)
        if not root.is_dir():
            continue
        for entry in root.iterdir():
            # Dot-directories are the runtime's own (pallet-runtime's .seccomp cache), not containers.
            if entry.is_dir() and not entry.name.startswith(".") and h is not None:
                h.spawn([*rt.argv, "--root", rt.root, "delete", "-f", entry.name], rt.mntns)
                notes.append(f"force-deleted leftover {rt.name} container {entry.name}")
    reap_strays()
    name = cgroup_parent.strip("/")
    for mp, _root, fs in mountinfo():
        if fs not in ("cgroup", "cgroup2") or not mp.startswith(str(CGROUP_ROOT)):
            continue
        top = Path(mp) / name
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top, topdown=False), key=lambda w: -len(w[0])):
            _rmdir_cgroup(Path(dirpath), notes)
    shutil.rmtree(workdir, ignore_errors=True)
    return notes


def _rmdir_cgroup(path: Path, notes: list[str]) -> None:
    for _attempt in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            # Only processes this benchmark started can be in a /pallet-bench-<random> cgroup.
            with contextlib.suppress(OSError):
                for line in (path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(line), signal.SIGKILL)
            reap_strays()
            time.sleep(0.02)
    notes.append(f"could not remove cgroup {path}")


# -- main ---------------------------------------------------------------------------------------
CLONE_NEWNS = 0x00020000
# Every runtime gets this environment and nothing of the caller's: in particular no
# PYTHONDONTWRITEBYTECODE, which would make pallet-runtime recompile any module whose cached
# bytecode is stale on every run (the warm-up rounds write the caches).
RUNTIME_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
PR_SET_CHILD_SUBREAPER = 36


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="10 repetitions, 1 warm-up round")
    p.add_argument("--reps", type=int, help="measured rounds (default 20; 10 with --quick)")
    p.add_argument("--warmup", type=int, help="rounds thrown away first (default 2; 1 with --quick)")
    p.add_argument("--no-hyperfine", action="store_true", help="skip the hyperfine cross-check of run")
    p.add_argument("--same-ns", action="store_true",
                   help="run pallet-runtime and runc in crun's private mount namespace too")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing peers")
    p.add_argument("--pallet", default=str(REPO / ".venv" / "bin" / "pallet-runtime"))
    p.add_argument("--compare", action="append", default=[], metavar="NAME=PATH",
                   help="also measure the runtime at PATH (e.g. another pallet-runtime build) as NAME")
    p.add_argument("--out", default=str(RESULTS), help="directory for the JSON and PNG results")
    a = p.parse_args(argv)
    reps = a.reps or (10 if a.quick else 20)
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
    if reps < 2:
        p.error("--reps must be at least 2")
    if os.geteuid() != 0:
        raise BenchError("run as root: the runtimes create namespaces and cgroups")

    ensure_peers(not a.no_install)
    sys.path.insert(0, str(REPO / "src"))
    from pallet.syscalls import real

    syscalls = real()
    syscalls.prctl(PR_SET_CHILD_SUBREAPER, 1)

    bench_id = secrets.token_hex(4)
    cgroup_parent = f"/pallet-bench-{bench_id}"
    workdir = Path(tempfile.mkdtemp(prefix=f"pallet-bench-{bench_id}-", dir="/run"))
    runtimes: list[Runtime] = []
    h: Harness | None = None
    notes: list[str] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t_begin = time.monotonic()
    try:
        h = Harness(workdir, syscalls)
        mode = cgroup_mode()
        crun_ns = -1
        if mode == "hybrid":
            crun_ns = private_cgroup_v1_ns()
            notes.append("crun 1.8.1 refuses hybrid cgroups: crun ran in a private mount namespace "
                         "where /sys/fs/cgroup/unified is unmounted (setns between fork and execve, "
                         "so no extra process per command)")
            if a.same_ns:
                notes.append("--same-ns: pallet-runtime and runc ran in that namespace too")
        others_ns = crun_ns if a.same_ns else -1
        extra = []
        for spec in a.compare:
            name, sep, path = spec.partition("=")
            if not sep or not name or name in ("pallet", "runc", "crun"):
                raise BenchError(f"--compare {spec!r}: want NAME=PATH with a new NAME")
            extra.append((name, path, others_ns))
        for name, path, ns in (("pallet", a.pallet, others_ns), ("runc", shutil.which("runc"), others_ns),
                               ("crun", shutil.which("crun"), crun_ns), *extra):
            if not path or not os.access(path, os.X_OK):
                raise BenchError(f"{name}: {path} is not executable")
            root = workdir / f"state-{name}"
            root.mkdir()
            runtimes.append(Runtime(name, [os.path.abspath(path)], str(root), ns))
        names = [rt.name for rt in runtimes]
        machine = machine_info({rt.name: rt.argv for rt in runtimes})
        bundle = make_bundle(workdir, cgroup_parent)
        notes.append("config.json: ociVersion 1.0.2 (crun 1.8.1 rejects 1.2.0); otherwise the "
                     "secure defaults of `python -m pallet.runtime.bundle`")
        print(f"pallet-bench {bench_id}: {reps} rounds + {warmup} warm-up, runtimes alternate "
              f"{' → '.join(names)}; cgroups under {cgroup_parent}; state in {workdir}", flush=True)
        for n in notes:
            print(f"note: {n}", flush=True)

        def progress(done: int, total: int) -> None:
            print(f"\rround {done}/{total}  ({time.monotonic() - t_begin:.0f} s)", end="", flush=True)

        gc.disable()
        try:
            floor = floor_ms(h, reps)
            samples, cpu = measure(h, runtimes, bundle, reps, warmup, progress)
        finally:
            gc.enable()
        print(flush=True)
        hf: dict = {}
        if not a.no_hyperfine:
            print("hyperfine cross-check of run ...", flush=True)
            for rt in runtimes:
                hf[rt.name] = hyperfine_run(h, rt, bundle, reps, warmup)
        results = {
            "benchmark": "oci-runtime-lifecycle",
            "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "reps": reps, "warmup": warmup, "quick": a.quick, "same_ns": a.same_ns,
            "machine": machine,
            "bundle": {"command": ["true"], "image": "busybox-static", "cgroups_path": f"{cgroup_parent}/c",
                       "oci_version": "1.0.2"},
            "commands": {
                "cli": "RT --version",
                "run": "RT --root R run -b B ID",
                "create": "RT --root R create -b B --pid-file F ID",
                "start": "RT --root R start ID",
                "delete": "RT --root R delete ID  (after the init has exited and been reaped)",
            },
            "harness_floor_ms": round(floor, 2),
            "runtime_env": RUNTIME_ENV,
            "ops": {op: {n: stats(samples[op][n]) for n in names} for op in OPS},
            "cpu_ops": {op: {n: stats(cpu[op][n]) for n in names} for op in OPS},
            "ratios": {op: {f"pallet/{p}": round(statistics.median(samples[op]["pallet"])
                                                  / statistics.median(samples[op][p]), 2)
                            for p in names if p != "pallet"} for op in OPS},
            "hyperfine_run": hf,
            "notes": notes,
        }
        results["hyperfine"] = hf
        table = markdown_table(results, names)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        json_path = out / f"{stamp}.json"
        plot_note = plot(results, names, out / f"{stamp}.png")
        results["plot"] = plot_note
        del results["hyperfine"]
        json_path.write_text(json.dumps(results, indent=1) + "\n")
        m = machine
        print()
        print(f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
              f"{m['os']}, cgroup {m['cgroup_mode']}; pallet {m['pallet_commit']}, Python {m['python']}")
        print("Versions: " + "; ".join(f"{k}: {v}" for k, v in m["versions"].items()))
        print(f"Times in ms: median (min-max) of {reps} runs after {warmup} warm-up rounds; "
              f"harness fork+exec+wait floor (/bin/true): {floor:.2f} ms, included in every number.")
        print()
        print(table)
        print()
        print("CPU time (user+system, ms) of each command and the children it reaped, the same runs:")
        print()
        print(markdown_table(results, names, "cpu_ops"))
        print()
        for n in notes:
            print(f"note: {n}")
        print(plot_note)
        print(f"results: {json_path}")
        r = results["ratios"]["run"]
        verdict = "at or below" if r["pallet/runc"] <= 1.0 else "above"
        print(f"target (pallet-runtime run at or below runc): {verdict} — pallet/runc = "
              f"{r['pallet/runc']:.2f}x, pallet/crun = {r['pallet/crun']:.2f}x")
        print(f"took {time.monotonic() - t_begin:.0f} s")
        return 0
    finally:
        for n in cleanup(h, runtimes, cgroup_parent, workdir):
            print(f"cleanup: {n}", file=sys.stderr)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench/run: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
