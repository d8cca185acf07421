"""Scale benchmark: many containers at once, their memory, and `ps` over many, pallet against podman.

    bench/run scale [--quick] [--count 100] [--many 1000] [--reps N] [--no-install]

Figures, each for palletd (pallet-runtime) and podman (runc, a private store):

  start N concurrently   N `ENGINE run -d --network none busybox sleep 600` processes spawned at
                         once; the time from the first spawn until `ENGINE ps -q` lists N running
                         containers (the CLI processes are part of it, as for a user's script).
                         Repeated --starts times (default 3, 1 with --quick), engines alternating.
  memory per container   with N idle containers running, the PSS (/proc/PID/smaps_rollup) of the
                         engine's per-container processes (pallet: conmon, or the python
                         monitors with --monitor pallet; podman: conmon) plus, for pallet, the
                         growth of palletd's PSS, divided by N. The containers' own processes
                         (sh, sleep) are the same for both and not counted.
  monitor anon memory    the conmons' mean anonymous PSS (Pss_Anon, KiB), both engines: each
                         monitor's own pages, without its share of the binaries' (which moves
                         with how many conmons of either engine run at that moment).
  daemon memory          palletd's PSS just started (busybox loaded), idle after one container
                         has run (the share above is counted from there: the first start's
                         imports are paid once per daemon), and with N containers running.
                         Also the growth of its anonymous memory alone (Pss_Anon) per container:
                         the file-backed part of its PSS (Python's and the libraries' pages)
                         moves by up to 2 MiB with whatever other Python processes run on the
                         machine at that moment, which is noise in the figure above, not a
                         per-container cost (the figure above still counts it, as the issue says).
                         palletd's figures are each the median of 5 readings over 0.8 s.
  ps latency             `ENGINE ps` (running) with N running, and `ENGINE ps -a` with --many
                         containers created and not started (full mode; --quick measures N only,
                         creating 1000 containers takes minutes through any CLI).

Containers and their cgroups live under /pallet-bench-<random> and are removed at the end.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    BenchError,
    Palletd,
    Podman,
    Section,
    alternate,
    busybox_tar,
    common_args,
    ensure_debs,
    main_wrapper,
    make_row,
    pids_with_arg,
    pss_kib,
    reps_of,
    workspace,
)

PEERS = {"podman": "podman", "runc": "runc"}


def start_concurrently(argvs: list[list[str]], env: dict[str, str], count_running: Callable[[], int],
                       n: int, timeout: float = 300) -> float:
    """Spawn every argv at once; seconds until `count_running()` reports n."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(a, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for a in argvs]
    errors = []
    for p in procs:
        _, err = p.communicate(timeout=timeout)
        if p.returncode != 0:
            errors.append(err.decode(errors="replace").strip()[-300:])
    if errors:
        raise BenchError(f"{len(errors)} of {n} concurrent starts failed, e.g.: {errors[0]}")
    while count_running() < n:
        if time.perf_counter() - t0 > timeout:
            raise BenchError(f"fewer than {n} containers running after {timeout} s")
        time.sleep(0.05)
    return time.perf_counter() - t0


def monitor_pss(work: Path) -> tuple[int, int]:
    """(count, total PSS KiB) of pallet's per-container monitors of the daemon rooted at `work`:
    conmon (palletd's default) or the Python monitor (`--monitor pallet`)."""
    cnt, kib = conmon_pss(work)
    pids = [p for p in pids_with_arg("monitor") if _cmdline_has(p, str(work)) and _comm(p) != "conmon"]
    return cnt + len(pids), kib + sum(pss_kib(p) for p in pids)


def pss_anon_kib(pid: int) -> int:
    """Anonymous part of `pid`'s PSS (smaps_rollup Pss_Anon, kernel >= 5.7), 0 if it is gone."""
    return pss_kib(pid, "Pss_Anon")
    return 0


def settled(measure: Callable[[int], int], pid: int, samples: int = 5, gap: float = 0.2) -> int:
    """The median of `samples` readings `gap` seconds apart: palletd's PSS at one instant moves
    with the short-lived Python processes (a CLI run, another program) that share its pages
    at that moment, in either direction; the idle and the busy figure are read the same way."""
    values = []
    for i in range(samples):
        if i:
            time.sleep(gap)
        values.append(measure(pid))
    return int(statistics.median(values))


def conmon_pss(work: Path) -> tuple[int, int]:
    pids = [p for p in pids_with_arg(str(work)) if _comm(p) == "conmon"]
    return len(pids), sum(pss_kib(p) for p in pids)


def monitor_anon_kib(work: Path) -> float:
    """Mean anonymous PSS (Pss_Anon) of the conmon processes of the engine rooted at `work`: the
    monitor's own memory, without its share of the binaries' pages (which moves with how many
    conmons of either engine run at that moment)."""
    pids = [p for p in pids_with_arg(str(work)) if _comm(p) == "conmon"]
    return sum(pss_anon_kib(p) for p in pids) / max(len(pids), 1)


def _cmdline_has(pid: int, needle: str) -> bool:
    try:
        return needle.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def create_many(fn: Callable[[str], object], names: list[str], workers: int = 4) -> None:
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(fn, names))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(ap, default_reps=20, quick_reps=10)
    ap.add_argument("--count", type=int, default=100, help="containers started at once (100)")
    ap.add_argument("--many", type=int, default=1000, help="containers created for `ps -a` (1000)")
    ap.add_argument("--starts", type=int, help="repetitions of the concurrent start (3; 1 with --quick)")
    a = ap.parse_args()
    reps, warmup = reps_of(a, 20, 10)
    n = a.count
    starts = a.starts or (1 if a.quick else 3)
    sec = Section("scale", a.quick)
    missing = ensure_debs(PEERS, not a.no_install)
    have_podman = not missing
    if not have_podman:
        sec.skip("podman", f"not installed: {', '.join(missing)}")
    with workspace("ps") as (work, parent):
        d = Palletd(work / "d", parent)
        pm: Podman | None = None
        try:
            d.cli("image", "bootstrap", "busybox")
            if have_podman:
                pm = Podman(work / "p", parent, runtime="runc")
                pm("import", "-q", str(busybox_tar(work / "busybox.tar")), "localhost/busybox")
            # "Idle" is a daemon that has run a container once: the first start imports the
            # networking, monitor and runtime glue (~13 MiB, once per daemon, not per container).
            daemon_cold = pss_kib(d.proc.pid)
            d.cli("run", "--rm", "--network", "none", "busybox", "true")
            time.sleep(1)
            daemon_idle = settled(pss_kib, d.proc.pid)
            anon_idle = settled(pss_anon_kib, d.proc.pid)

            def pallet_running() -> int:
                return len(d.out("ps", "-q").split())

            def podman_running() -> int:
                assert pm is not None
                return len(pm.out("ps", "-q").split())

            start_s: dict[str, list[float]] = {"pallet": [], "podman": []}
            mem: dict[str, list[float]] = {"pallet": [], "podman": []}
            daemon_busy: list[float] = []
            anon_growth: list[float] = []
            mon_anon: dict[str, list[float]] = {"pallet": [], "podman": []}
            ps_n: dict[str, list[float]] = {}
            for k in range(starts):
                print(f"  concurrent start {k + 1}/{starts}: {n} containers each", flush=True)
                argv = [[*d.pallet, "run", "-d", "--network", "none", "busybox", "sleep", "600"]
                        for _ in range(n)]
                start_s["pallet"].append(start_concurrently(argv, d.env, pallet_running, n))
                if pm is not None:
                    argv = [[*pm.base, "run", "-d", *pm.run_args(), "localhost/busybox", "sleep", "600"]
                            for _ in range(n)]
                    start_s["podman"].append(start_concurrently(argv, pm.env, podman_running, n))
                time.sleep(2)  # let the monitors settle after start-up
                cnt, kib = monitor_pss(work / "d")
                mon_anon["pallet"].append(monitor_anon_kib(work / "d"))
                busy = settled(pss_kib, d.proc.pid)
                anon_growth.append(max(settled(pss_anon_kib, d.proc.pid) - anon_idle, 0) / n)
                daemon_busy.append(busy / 1024)
                mem["pallet"].append((kib + max(busy - daemon_idle, 0)) / max(cnt, 1) / 1024)
                if cnt != n:
                    sec.notes.append(f"found {cnt} pallet monitors for {n} containers")
                if pm is not None:
                    cnt_p, kib_p = conmon_pss(work / "p")
                    mon_anon["podman"].append(monitor_anon_kib(work / "p"))
                    mem["podman"].append(kib_p / max(cnt_p, 1) / 1024)
                    if cnt_p != n:
                        sec.notes.append(f"found {cnt_p} conmon processes for {n} containers")
                if k == starts - 1:
                    cmds = {"pallet": lambda: d.ms("ps")}
                    if pm is not None:
                        cmds["podman"] = lambda: pm.ms("ps")
                    ps_n = alternate(cmds, reps, warmup)
                d.rm_all()
                if pm is not None:
                    pm("rm", "-a", "-f", "-t", "0", timeout=600)
            if not pm:
                start_s.pop("podman")
                mem.pop("podman")
                mon_anon.pop("podman")
            sec.add(make_row(f"start {n} containers concurrently, until all run", "s", start_s,
                             target=("podman", "<=", 0.5) if pm else None))
            sec.add(make_row("memory per idle container (PSS: monitor + daemon share)", "MiB", mem,
                             target=("podman", "<=", 1.0) if pm else None))
            sec.add(make_row("monitor anonymous memory per container (conmon Pss_Anon)", "KiB",
                             {k: v for k, v in mon_anon.items() if any(v)}))
            sec.add(make_row("palletd PSS, just started", "MiB", {"pallet": [daemon_cold / 1024]}))
            sec.add(make_row("palletd PSS, idle (after one container)", "MiB",
                             {"pallet": [daemon_idle / 1024]}))
            sec.add(make_row(f"palletd PSS, {n} containers running", "MiB", {"pallet": daemon_busy}))
            sec.add(make_row(f"palletd anonymous memory growth per container ({n} running)", "KiB",
                             {"pallet": anon_growth}))
            sec.add(make_row(f"`ps` with {n} running", "ms", ps_n))

            if a.quick:
                sec.skip(f"`ps -a` with {a.many} created", "full mode only (bench/run scale)")
            else:
                print(f"  creating {a.many} containers each ...", flush=True)
                create_many(lambda nm: d.cli("create", "--network", "none", "--name", nm, "busybox",
                                             "true"), [f"m{i}" for i in range(a.many)])
                if pm is not None:
                    create_many(lambda nm: pm("create", *pm.run_args(), "--name", nm,
                                              "localhost/busybox", "true"), [f"m{i}" for i in range(a.many)])
                cmds = {"pallet": lambda: d.ms("ps", "-a")}
                if pm is not None:
                    cmds["podman"] = lambda: pm.ms("ps", "-a")
                sec.add(make_row(f"`ps -a` with {a.many} created", "ms", alternate(cmds, reps, warmup)))
            sec.extra["daemon_pss_idle_kib"] = daemon_idle
            sec.extra["median_start_s"] = {k: statistics.median(v) for k, v in start_s.items() if v}
        finally:
            for note in d.close():
                sec.notes.append(f"cleanup: {note}")
            if pm is not None:
                pm.close()
    path = sec.write(Path(a.out), tools=["podman", "runc"])
    print(sec.report())
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    main_wrapper(main)
