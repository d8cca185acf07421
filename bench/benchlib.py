"""Shared pieces of the benchmark suite: statistics, tables, results, peers, palletd and podman.

The pure helpers at the top (`summarize`, `ratio`, `fmt_ms`, `markdown_table`, `verdict`) need
nothing but the standard library and are unit-tested (tests/unit/test_bench_stats.py). The rest
starts processes and needs root: a throw-away palletd (`Palletd`) and a podman confined to a
private store (`Podman`), both under one work directory and one `/pallet-bench-<random>` cgroup
parent, removed again by `cleanup_cgroups` and `unmount_under` even after Ctrl-C.

Results format (version 1), one JSON file per section and run,
bench/results/<section>-<YYYYmmdd-HHMMSS>.json:

    {"format": 1, "section": "engine", "timestamp": "...Z", "quick": true, "machine": {...},
     "rows": [{"figure": "run --rm busybox true", "unit": "ms", "better": "lower",
               "values": {"pallet": {"median": .., "min": .., "max": .., "n": .., "samples": [..]},
                          "podman": {...}},
               "ratio": {"pallet/podman": 0.8}, "target": "<= 0.5x podman", "met": false}],
     "skipped": [{"figure": "...", "reason": "..."}], "notes": ["..."], "plots": ["...png"]}
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV_BIN = REPO / ".venv" / "bin"
RESULTS = HERE / "results"
CACHE = HERE / "cache"
CGROUP_ROOT = Path("/sys/fs/cgroup")
BUSYBOX = "/bin/busybox"
RESULTS_FORMAT = 1


class BenchError(Exception):
    """A benchmark cannot run at all (missing root, a peer that fails): printed, exit 1."""


class Skip(Exception):
    """One figure cannot be measured here; the message says why and ends up in the table."""


# -- pure helpers -------------------------------------------------------------------------------
def summarize(samples: list[float], digits: int = 3) -> dict:
    """Median, min, max, n and the samples themselves; the median is what tables show."""
    if not samples:
        raise ValueError("no samples")
    return {
        "median": round(statistics.median(samples), digits),
        "min": round(min(samples), digits),
        "max": round(max(samples), digits),
        "n": len(samples),
        "samples": [round(s, digits + 1) for s in samples],
    }


def ratio(ours: float, theirs: float) -> float | None:
    """ours/theirs rounded to 2 digits; None when `theirs` is zero (no ratio to show)."""
    if theirs == 0:
        return None
    return round(ours / theirs, 2)


def fmt_value(s: dict, unit: str) -> str:
    """`12.3 (11.0-15.2)` for a summary; one decimal for ms and MB/s, more for small values."""
    def f(x: float) -> str:
        if abs(x) >= 100:
            return f"{x:.0f}"
        if abs(x) >= 1:
            return f"{x:.1f}"
        return f"{x:.3f}"
    return f"{f(s['median'])} ({f(s['min'])}-{f(s['max'])}) {unit}".rstrip()


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def verdict(r: float | None, op: str, limit: float) -> bool | None:
    """Whether ratio `r` meets a target `r <op> limit`, op one of <=, >=; None without a ratio."""
    if r is None:
        return None
    if op == "<=":
        return r <= limit
    if op == ">=":
        return r >= limit
    raise ValueError(f"unknown target operator {op!r}")


def make_row(figure: str, unit: str, values: dict[str, list[float]], *, better: str = "lower",
             base: str = "pallet", target: tuple[str, str, float] | None = None) -> dict:
    """A result row: summaries of each engine's samples, the ratio of `base` to every other
    engine, and, with `target=(peer, op, limit)`, whether base/peer meets it."""
    row: dict = {"figure": figure, "unit": unit, "better": better,
                 "values": {k: summarize(v) for k, v in values.items() if v}, "ratio": {}}
    if base in row["values"]:
        for peer, s in row["values"].items():
            if peer != base:
                row["ratio"][f"{base}/{peer}"] = ratio(row["values"][base]["median"], s["median"])
    if target is not None:
        peer, op, limit = target
        r = row["ratio"].get(f"{base}/{peer}")
        row["target"] = f"{base}/{peer} {op} {limit:g}"
        row["met"] = verdict(r, op, limit)
    return row


def markdown_table(rows: list[dict], skipped: list[dict] | None = None) -> str:
    """One line per row: figure, each engine's median (min-max), the ratios and the target."""
    lines = ["| figure | values: median (min-max) | ratio | target |", "|---|---|---:|---|"]
    for row in rows:
        vals = "<br>".join(f"{k}: {fmt_value(s, row['unit'])}" for k, s in row["values"].items())
        ratios = "<br>".join(f"{k} {fmt_ratio(r)}" for k, r in row["ratio"].items()) or "-"
        tgt = ""
        if "target" in row:
            met = row.get("met")
            tgt = f"{row['target']}: " + ("met" if met else "n/a" if met is None else "**not met**")
        lines.append(f"| {row['figure']} | {vals} | {ratios} | {tgt} |")
    for s in skipped or []:
        lines.append(f"| {s['figure']} | skipped: {s['reason']} | - | |")
    return "\n".join(lines)


def alternate(commands: dict[str, Callable[[], float]], reps: int, warmup: int,
              progress: Callable[[int, int], None] | None = None) -> dict[str, list[float]]:
    """Run each command once per round, in a fixed order, warmup + reps rounds; keep the
    results of the last `reps` rounds. Alternating makes drift hit every engine alike."""
    out: dict[str, list[float]] = {k: [] for k in commands}
    for i in range(warmup + reps):
        for name, fn in commands.items():
            v = fn()
            if i >= warmup:
                out[name].append(v)
        if progress:
            progress(i + 1, warmup + reps)
    return out


def alternate_tolerant(cmds: dict[str, Callable[[], float]], reps: int, warmup: int, notes: list[str],
                       what: str) -> dict[str, list[float]]:
    """Like benchlib.alternate, but a failed command is counted in a note instead of ending the run."""
    out: dict[str, list[float]] = {k: [] for k in cmds}
    fails: dict[str, list[str]] = {}
    t0 = time.monotonic()
    for i in range(warmup + reps):
        for name, fn in cmds.items():
            try:
                v = fn()
            except BenchError as exc:
                fails.setdefault(name, []).append(reason(exc))
                continue
            if i >= warmup:
                out[name].append(v)
        print(f"\r    round {i + 1}/{warmup + reps} ({time.monotonic() - t0:.0f} s)", end="", flush=True)
    print(flush=True)
    for name, errs in fails.items():
        notes.append(f"FAILED: {name} {what} failed {len(errs)} of {warmup + reps} times; "
                     f"last error: {errs[-1][:300]}")
    return {k: v for k, v in out.items() if v}


# -- machine facts ------------------------------------------------------------------------------
def mountinfo() -> list[tuple[str, str, str]]:
    """(mount point, root within the filesystem, fs type) of every mount we can see."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            out.append((fields[4].replace("\\040", " "), fields[3], right.split()[0]))
    return out


def cgroup_mode() -> str:
    types = {mp: fs for mp, _root, fs in mountinfo()}
    if types.get(str(CGROUP_ROOT)) == "cgroup2":
        return "unified"
    if types.get(str(CGROUP_ROOT / "unified")) == "cgroup2":
        return "hybrid"
    return "legacy"


def first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return out.splitlines()[0].strip() if out.strip() else "?"


def load_average() -> str:
    with contextlib.suppress(OSError), open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])
    return "?"


def machine_info(tools: Sequence[str] = ()) -> dict:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    os_name = "?"
    with contextlib.suppress(OSError), open("/etc/os-release") as f:
        for line in f:
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip().strip('"')
    commit = first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
                           capture_output=True, text=True).stdout.strip()
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(), "os": os_name, "cgroup_mode": cgroup_mode(),
        "python": platform.python_version(), "load_average_at_start": load_average(),
        "pallet_commit": commit + ("+dirty-src" if dirty else ""),
        "versions": {t: first_line([t, "--version"]) for t in tools if shutil.which(t)},
    }


def machine_line(m: dict) -> str:
    return (f"{m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, {m['os']}, "
            f"cgroup {m['cgroup_mode']}, load {m['load_average_at_start']}; pallet {m['pallet_commit']}")


# -- peers from Debian --------------------------------------------------------------------------
def ensure_debs(peers: dict[str, str], install: bool) -> list[str]:
    """apt-get install the Debian package of every command in `peers` (command -> package) that
    is missing; returns the commands still missing (install=False, or apt failed)."""
    missing = sorted({pkg for cmd, pkg in peers.items() if not shutil.which(cmd)})
    if missing and install:
        print(f"installing from Debian: {' '.join(missing)}", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *missing]
        if subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, stdout=subprocess.DEVNULL)
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL)
    return sorted(cmd for cmd in peers if not shutil.which(cmd))


# -- results ------------------------------------------------------------------------------------
@dataclass
class Section:
    """Rows, skips and notes of one section, written as one JSON file (format above)."""
    name: str
    quick: bool
    rows: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    def skip(self, figure: str, reason: str) -> None:
        print(f"  skip {figure}: {reason}", flush=True)
        self.skipped.append({"figure": figure, "reason": reason})

    def add(self, row: dict) -> None:
        vals = ", ".join(f"{k} {fmt_value(s, row['unit'])}" for k, s in row["values"].items())
        print(f"  {row['figure']}: {vals}", flush=True)
        self.rows.append(row)

    def write(self, out: Path = RESULTS, tools: Sequence[str] = ()) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = out / f"{self.name}-{stamp}.json"
        doc = {"format": RESULTS_FORMAT, "section": self.name,
               "timestamp": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
               "quick": self.quick, "machine": machine_info(list(tools)), "rows": self.rows,
               "skipped": self.skipped, "notes": self.notes, "plots": self.plots, **self.extra}
        path.write_text(json.dumps(doc, indent=1) + "\n")
        return path

    def report(self) -> str:
        text = f"### {self.name}\n\n{markdown_table(self.rows, self.skipped)}\n"
        for n in self.notes:
            text += f"\nnote: {n}"
        return text


def stamp() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def plot_lines(path: Path, title: str, xlabel: str, ylabel: str,
               series: dict[str, tuple[list[float], list[float]]], logx: bool = False) -> str | None:
    """A line plot (x, y per series) as PNG; None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


def plot_bars(path: Path, title: str, ylabel: str, groups: list[str],
              series: dict[str, list[float]], hline: float | None = None) -> str | None:
    """Grouped bars (one group per figure, one bar per engine) as PNG; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / max(len(series), 1)
    for k, (name, ys) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(groups))]
        ax.bar(xs, ys, width, label=name)
    if hline is not None:
        ax.axhline(hline, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return str(path)


# -- processes ----------------------------------------------------------------------------------
def run(cmd: list[str], *, env: dict[str, str] | None = None, timeout: float = 600,
        input: bytes | None = None, check: bool = True, preexec: Callable[[], None] | None = None
        ) -> subprocess.CompletedProcess[bytes]:
    try:
        proc = subprocess.run(cmd, capture_output=True, env=env, timeout=timeout, input=input,
                              stdin=None if input is not None else subprocess.DEVNULL, preexec_fn=preexec)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{' '.join(cmd[:8])}: no answer in {timeout:g} s (killed)") from exc
    if check and proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd[:8])}{' ...' if len(cmd) > 8 else ''}: exit {proc.returncode}: "
                         f"{proc.stderr.decode(errors='replace').strip()[-600:]}")
    return proc


def reason(exc: BaseException) -> str:
    """The line of an error that says what went wrong: a Python traceback's last line, else the
    first line that mentions an error, else the last line."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    if any(ln.startswith("Traceback") for ln in lines):
        return lines[-1][:300]
    for ln in lines:
        if "rror" in ln:
            return ln[:300]
    return lines[-1][:300]


def timed_ms(cmd: list[str], **kw) -> float:
    t0 = time.perf_counter()
    run(cmd, **kw)
    return (time.perf_counter() - t0) * 1000


def pss_kib(pid: int, field: str = "Pss") -> int:
    """Proportional set size of `pid` (kernel >= 4.14: /proc/PID/smaps_rollup), 0 if it is gone;
    `field` another line of that file, e.g. "Pss_Anon" (its anonymous part, kernel >= 5.7)."""
    key = field + ":"
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return 0


def pids_with_arg(needle: str) -> list[int]:
    """Processes whose command line contains `needle` (used to find monitors and conmons by the
    benchmark's own private root directory, so nothing else on the machine is counted)."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if needle.encode() in cmdline and int(d) != os.getpid():
            out.append(int(d))
    return out


def unmount_under(path: Path) -> None:
    """Detach whatever is still mounted under `path`, deepest first."""
    prefix = str(path.resolve())
    points = [mp for mp, _r, _fs in mountinfo() if mp == prefix or mp.startswith(prefix + "/")]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def cleanup_cgroups(parent: str) -> list[str]:
    """Remove `parent` (a /pallet-bench-<random> cgroup) in every hierarchy, deepest first,
    killing what is left in it: only processes this benchmark started can be there."""
    assert parent.strip("/").startswith("pallet-bench-"), parent
    notes: list[str] = []
    name = parent.strip("/")
    for mp, _root, fs in mountinfo():
        if fs not in ("cgroup", "cgroup2") or not mp.startswith(str(CGROUP_ROOT)):
            continue
        top = Path(mp) / name
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top, topdown=False), key=lambda w: -len(w[0])):
            _rmdir_cgroup(Path(dirpath), notes)
    return notes


def _rmdir_cgroup(path: Path, notes: list[str]) -> None:
    for _attempt in range(100):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            with contextlib.suppress(OSError):
                for line in (path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(line), signal.SIGKILL)
            time.sleep(0.05)
    notes.append(f"could not remove cgroup {path}")


def private_cgroup_v1_ns() -> int:
    """An fd of a new mount namespace where /sys/fs/cgroup/unified is unmounted (crun 1.8.1
    refuses hybrid cgroups); see runtime_bench.py."""
    helper = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f"umount {CGROUP_ROOT}/unified && echo ready && read _"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert helper.stdin is not None and helper.stdout is not None
    try:
        if helper.stdout.readline().strip() != "ready":
            raise BenchError("could not unmount /sys/fs/cgroup/unified in a private mount namespace")
        return os.open(f"/proc/{helper.pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        helper.stdin.close()
        helper.wait()


def busybox_tar(dest: Path) -> Path:
    """A tar of a busybox-static root file system (the same tree `pallet image bootstrap
    busybox` makes), for `podman import`."""
    sys.path.insert(0, str(REPO / "src"))
    from pallet.image.builtin import busybox_rootfs, layer_tar

    rootfs = dest.parent / (dest.name + ".d")
    busybox_rootfs(rootfs)
    with open(dest, "wb") as f:
        layer_tar(rootfs, f)
    shutil.rmtree(rootfs)
    return dest


# -- palletd ------------------------------------------------------------------------------------
class Palletd:
    """palletd on a temporary socket, data and exec roots, containers under `cgroup_parent`.

    `cli(...)` runs the pallet CLI against it; `close()` removes every container, stops the
    daemon by its pid and removes its mounts, cgroups and directories."""

    def __init__(self, work: Path, cgroup_parent: str, extra: Sequence[str] = (),
                 private_v1: bool = False) -> None:
        self.work = work
        self.cgroup_parent = cgroup_parent
        work.mkdir(parents=True, exist_ok=True)
        self.sock = work / "s.sock"
        self.host = f"unix://{self.sock}"
        (work / "daemon.json").write_text("{}")
        # PYTHONDONTWRITEBYTECODE off so the CLI runs from cached bytecode, as an installed one does.
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("DOCKER_", "PALLET_")) and k != "PYTHONDONTWRITEBYTECODE"}
        self.pallet = [str(VENV_BIN / "pallet"), "-H", self.host]
        self.log = open(work / "palletd.log", "w")  # noqa: SIM115 - closed in close()
        # --ip-forward false: palletd would otherwise turn on net.ipv4.ip_forward for outbound
        # NAT, a host-wide setting; benchmark traffic stays between the host and its bridge.
        # private_v1: palletd in its own mount namespace where the cgroup2 mount of a hybrid host
        # is unmounted (as runtime_bench.py does for crun 1.8.1, which refuses hybrid hosts);
        # the mount is gone only in there, and so are the containers' rootfs mounts.
        wrap = (["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 f'umount {CGROUP_ROOT}/unified && exec "$@"', "sh"] if private_v1 else [])
        self.proc = subprocess.Popen(
            [*wrap, str(VENV_BIN / "python"), "-m", "pallet.daemon.main",
             "--config", str(work / "daemon.json"), "--data-root", str(work / "data"),
             "--exec-root", str(work / "exec"), "-H", self.host,
             "--cgroup-parent", cgroup_parent, "--ip-forward", "false", *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env=self.env, cwd="/")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"palletd exited {self.proc.returncode}: "
                                 f"{(work / 'palletd.log').read_text()[-1000:]}")
            if "ready" in (work / "palletd.log").read_text():
                return
            time.sleep(0.05)
        self.close()
        raise BenchError("palletd did not become ready in 30 s")

    def cli(self, *args: str, check: bool = True, timeout: float = 600,
            input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return run([*self.pallet, *args], env=self.env, check=check, timeout=timeout, input=input)

    def out(self, *args: str) -> str:
        return self.cli(*args).stdout.decode().strip()

    def has_verb(self, *verb: str) -> bool:
        """Whether this pallet has CLI verb `verb` (probes `pallet VERB --help`)."""
        return self.cli(*verb, "--help", check=False, timeout=60).returncode == 0

    def ms(self, *args: str, timeout: float = 30) -> float:
        return timed_ms([*self.pallet, *args], env=self.env, timeout=timeout)

    def rm_all(self) -> None:
        ids = self.cli("ps", "-aq", check=False).stdout.decode().split()
        for i in range(0, len(ids), 50):
            self.cli("rm", "-f", *ids[i:i + 50], check=False)

    def close(self) -> list[str]:
        notes: list[str] = []
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.rm_all()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                notes.append("palletd did not stop on SIGTERM: killed")
        self.log.close()
        # Monitors of containers the daemon could not remove: ours by their data root.
        for pid in pids_with_arg(str(self.work)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        notes += cleanup_cgroups(self.cgroup_parent)
        # The default bridge and its nftables table outlive the daemon, as docker0 does; both
        # are named after the data root (pallet.network.manager: sha256(data_root)[:6]).
        tag = hashlib.sha256(os.path.abspath(self.work / "data").encode()).hexdigest()[:6]
        subprocess.run(["ip", "link", "del", f"pallet{tag}"], capture_output=True)
        subprocess.run(["nft", "delete", "table", "inet", f"pallet_{tag}"], capture_output=True)
        unmount_under(self.work)
        return notes


# -- podman -------------------------------------------------------------------------------------
class Podman:
    """podman with a private store under `work` (--root/--runroot/--tmpdir: nothing of the
    machine's own storage is touched), cgroupfs under `cgroup_parent`, file events, and the
    ulimits this VM allows (root lacks CAP_SYS_RESOURCE: podman's default nofile fails).

    podman refuses a runroot path longer than 50 characters: keep `work` short."""

    def __init__(self, work: Path, cgroup_parent: str, runtime: str = "runc",
                 mntns_of: int | None = None) -> None:
        """`mntns_of`: run every podman command in the mount namespace of that pid (through
        nsenter(1), one more exec per command), e.g. a private_v1 palletd's for crun."""
        self.work = work
        self.runtime = runtime
        (work / "tmp").mkdir(parents=True, exist_ok=True)
        (work / "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            'lock_type = "file"\n')
        (work / "storage.conf").write_text(
            f'[storage]\ndriver = "overlay"\nrunroot = "{work}/rr"\ngraphroot = "{work}/st"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": str(work / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(work / "storage.conf")}
        enter = ["nsenter", f"--mount=/proc/{mntns_of}/ns/mnt"] if mntns_of else []
        self.base = [*enter, "podman", "--root", f"{work}/st", "--runroot", f"{work}/rr",
                     "--tmpdir", f"{work}/tmp",
                     "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
                     "--events-backend", "file", "--runtime", runtime]
        self.cgroup_parent = cgroup_parent

    def __call__(self, *args: str, check: bool = True, timeout: float = 600,
                 input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return run([*self.base, *args], env=self.env, check=check, timeout=timeout, input=input)

    def out(self, *args: str) -> str:
        return self(*args).stdout.decode().strip()

    def ms(self, *args: str, timeout: float = 30) -> float:
        return timed_ms([*self.base, *args], env=self.env, timeout=timeout)

    def run_args(self) -> list[str]:
        """Options every benchmarked `podman run/create` gets: no network (as pallet's runs, see
        the engine section), our cgroup parent."""
        return ["--network", "none", "--cgroup-parent", self.cgroup_parent]

    def close(self) -> None:
        for args in (("rm", "-a", "-f", "-t", "0"), ("rmi", "-a", "-f"), ("system", "reset", "-f")):
            with contextlib.suppress(Exception):
                self(*args, check=False, timeout=300)
        unmount_under(self.work)


@contextlib.contextmanager
def workspace(prefix: str = "pb") -> Iterator[tuple[Path, str]]:
    """A short work directory under /var/tmp and a /pallet-bench-<random> cgroup parent,
    both removed at the end, also on Ctrl-C and SIGTERM."""
    token = secrets.token_hex(3)
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}{token}-", dir="/var/tmp"))
    parent = f"/pallet-bench-{token}"
    old = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        yield work, parent
    finally:
        for n in cleanup_cgroups(parent):
            print(f"cleanup: {n}", file=sys.stderr)
        unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGTERM, old)


def common_args(p: argparse.ArgumentParser, default_reps: int, quick_reps: int) -> None:
    p.add_argument("--quick", action="store_true", help=f"{quick_reps} repetitions, 1 warm-up round")
    p.add_argument("--reps", type=int, help=f"measured rounds (default {default_reps})")
    p.add_argument("--warmup", type=int, help="rounds thrown away first (default 2; 1 with --quick)")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install missing peers")
    p.add_argument("--out", default=str(RESULTS), help="directory for JSON and PNG results")


def reps_of(a: argparse.Namespace, default_reps: int, quick_reps: int) -> tuple[int, int]:
    reps = a.reps or (quick_reps if a.quick else default_reps)
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
    return reps, warmup


def main_wrapper(main: Callable[[], int]) -> None:
    if os.geteuid() != 0:
        print("bench: run as root (containers, mounts, cgroups)", file=sys.stderr)
        sys.exit(2)
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
