"""Overhead benchmark: the same work inside a container and outside it, as ratios to the host.

    bench/run overhead [--quick] [--rounds N] [--no-install] [--no-image-build]

The classic claim is "almost no overhead". Each figure runs the same binaries three ways, the
engines alternating round by round: on the host (`chroot ROOTFS ...`: the image's own root file
system, unpacked, but in the host's namespaces and root cgroup, so host and container run
byte-identical programs), in a palletd container and in a podman container (runc, private store):

  cpu        a pure-Python loop (python3 of the image), iterations/s
  memory     NumPy copy of a 256 MiB float64 array (read + write counted), GB/s
  linalg     NumPy matrix product 1024x1024 float64, GFLOP/s
  disk       fio: sequential 1 MiB writes with O_DIRECT, MB/s, on the container's overlay root,
             on a bind-mounted volume, and on the host directory the volume comes from
  network    iperf3 (TCP, 3 s; 2 s with --quick) from the host to a server in a container: over the bridge
             (the container's address), through a published port (127.0.0.1:PORT) and with
             `--network host`, against both ends on host loopback. Only when palletd's
             networking works (probed). podman's bridge (netavark) and published port run in
             a network namespace of the harness's own, client included, so netavark's rules
             never touch the host's firewall and go with the namespace. When the host's
             default TCP congestion control is not cubic (BBR: see docs/design/network.md,
             "Throughput"), loopback and the published port run again with `iperf3 -C cubic`
             and two more rows compare like with like.

Timings come from inside the program (perf_counter around the kernel; fio and iperf3 report
their own rates), so container start-up is not part of any figure. A "round" runs the kernel
--inner times in one process; all samples of all rounds make the figure.

The image: Debian bookworm minbase with python3-numpy, fio and iperf3, made once with mmdebstrap
and cached as bench/cache/overhead-bookworm-v1.tar (git-ignored; delete it to rebuild). If
mmdebstrap cannot run here (not installed, no access to the Debian archive), the section skips
with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (
    CACHE,
    BenchError,
    Palletd,
    Podman,
    Section,
    common_args,
    ensure_debs,
    main_wrapper,
    make_row,
    plot_bars,
    ratio,
    reason,
    run,
    stamp,
    workspace,
)

IMAGE_TAR = CACHE / "overhead-bookworm-v1.tar"
IMAGE_PACKAGES = ["python3-numpy", "fio", "iperf3"]
IMAGE = "localhost/bench/overhead:v1"
PEERS = {"podman": "podman", "runc": "runc", "mmdebstrap": "mmdebstrap"}

# Run as `python3 -c KERNELS NAME INNER`; prints one JSON list of rates.
KERNELS = r"""
import json, sys, time
name, inner = sys.argv[1], int(sys.argv[2])
out = []
if name == "cpu":
    n = 2_000_000
    for _ in range(inner):
        t = time.perf_counter(); acc = 0
        for i in range(n):
            acc += i * i % 7
        out.append(n / (time.perf_counter() - t))
else:
    import numpy as np
    if name == "memory":
        a = np.ones(32 * 1024 * 1024); b = np.empty_like(a); np.copyto(b, a)
        for _ in range(inner):
            t = time.perf_counter()
            for _ in range(4):
                np.copyto(b, a)
            out.append(4 * 2 * a.nbytes / (time.perf_counter() - t) / 1e9)
    elif name == "linalg":
        n = 1024; rng = np.random.default_rng(1)
        x = rng.random((n, n)); y = rng.random((n, n)); x @ y
        for _ in range(inner):
            t = time.perf_counter(); x @ y
            out.append(2 * n ** 3 / (time.perf_counter() - t) / 1e9)
print(json.dumps(out))
"""
UNITS = {"cpu": ("M iterations/s", 1e-6), "memory": ("GB/s", 1.0), "linalg": ("GFLOP/s", 1.0)}


def build_image(install: bool) -> Path:
    """The cached Debian tar, made with mmdebstrap when missing; raises Skip-worthy BenchError."""
    if IMAGE_TAR.exists():
        return IMAGE_TAR
    if not shutil.which("mmdebstrap"):
        raise BenchError("mmdebstrap is not installed (apt-get install mmdebstrap)")
    CACHE.mkdir(parents=True, exist_ok=True)
    part = IMAGE_TAR.with_suffix(".part")
    cmd = ["mmdebstrap", "--variant=minbase", f"--include={','.join(IMAGE_PACKAGES)}", "--format=tar",
           "--quiet"]
    # As pallet.image.builtin.rootfs: merge /usr with the hook instead of pulling in usrmerge+perl.
    hook = "/usr/share/mmdebstrap/hooks/maybe-merged-usr"
    if os.path.isdir(hook):
        cmd.append(f"--hook-dir={hook}")
    print(f"  building {IMAGE_TAR.name} with mmdebstrap (once; cached) ...", flush=True)
    proc = subprocess.run([*cmd, "bookworm", str(part)], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        part.unlink(missing_ok=True)
        tail = " / ".join((proc.stdout + proc.stderr).strip().splitlines()[-3:])
        raise BenchError(f"mmdebstrap failed (exit {proc.returncode}): {tail}")
    part.rename(IMAGE_TAR)
    return IMAGE_TAR


def extract(tar: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    # GNU tar keeps owners, modes and device nodes of our own mmdebstrap output.
    run(["tar", "-C", str(dest), "--numeric-owner", "-xpf", str(tar)])
    # NumPy's BLAS and fio read /proc (CPU count, meminfo) as they would in a container; the
    # mount goes with the work directory (benchlib.unmount_under).
    (dest / "proc").mkdir(exist_ok=True)
    run(["mount", "-t", "proc", "proc", str(dest / "proc")])
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ways:
    """The three ways to run one argv: host (chroot), pallet, podman."""

    def __init__(self, rootfs: Path, d: Palletd, pm: Podman | None) -> None:
        self.rootfs, self.d, self.pm = rootfs, d, pm

    def names(self) -> list[str]:
        return ["host", "pallet", *(["podman"] if self.pm else [])]

    def argv(self, way: str, cmd: list[str], opts: list[str] = ()) -> list[str]:  # type: ignore[assignment]
        if way == "host":
            return ["chroot", str(self.rootfs), *cmd]
        if way == "pallet":
            return [*self.d.pallet, "run", "--rm", "--network", "none", *opts, IMAGE, *cmd]
        assert self.pm is not None
        return [*self.pm.base, "run", "--rm", *self.pm.run_args(), *opts, IMAGE, *cmd]

    def out(self, way: str, cmd: list[str], opts: list[str] = (), timeout: float = 300) -> str:  # type: ignore[assignment]
        env = self.pm.env if way == "podman" and self.pm else self.d.env
        return run(self.argv(way, cmd, opts), env=env, timeout=timeout).stdout.decode()


def kernels(ways: Ways, sec: Section, rounds: int, inner: int) -> dict[str, dict[str, list[float]]]:
    got: dict[str, dict[str, list[float]]] = {}
    for name, (unit, scale) in UNITS.items():
        samples: dict[str, list[float]] = {w: [] for w in ways.names()}
        print(f"  {name}: {rounds} rounds x {inner}", flush=True)
        for _ in range(rounds):
            for w in ways.names():
                text = ways.out(w, ["python3", "-c", KERNELS, name, str(inner)])
                vals = json.loads(text.strip().splitlines()[-1])
                samples[w].extend(v * scale for v in vals)
        got[name] = samples
        titles = {"cpu": "CPU: Python loop", "memory": "memory bandwidth: NumPy copy",
                  "linalg": "linear algebra: NumPy 1024² matmul"}
        sec.add(_row(titles[name], unit, samples, 0.98, short=name))
    return got


def _row(title: str, unit: str, samples: dict[str, list[float]], limit: float, short: str) -> dict:
    """A row against the host; `limit` 0: no target."""
    row = make_row(title, unit, {k: v for k, v in samples.items() if v}, better="higher",
                   target=("host", ">=", limit) if limit else None)
    row["short"] = short  # the plot's label
    if "podman" in row["values"] and "host" in row["values"]:
        v = row["values"]
        row["ratio"]["podman/host"] = ratio(v["podman"]["median"], v["host"]["median"])
    return row


FIO = ["fio", "--name=seq", "--rw=write", "--bs=1M", "--direct=1", "--ioengine=psync", "--end_fsync=1",
       "--output-format=json"]


def disk(ways: Ways, sec: Section, work: Path, rounds: int, size_mb: int) -> None:
    vol = work / "vol"
    vol.mkdir()
    hostdir = ways.rootfs / "iotest"
    hostdir.mkdir()
    job = [*FIO, f"--size={size_mb}M"]

    def mbps(text: str) -> float:
        return json.loads(text[text.index("{"):])["jobs"][0]["write"]["bw_bytes"] / 1e6

    variants = {
        "host": ("host", [*job, "--directory=/iotest"], []),
        "pallet overlay root": ("pallet", [*job, "--directory=/tmp"], []),
        "pallet volume": ("pallet", [*job, "--directory=/vol"], ["-v", f"{vol}:/vol"]),
    }
    if ways.pm:
        variants["podman overlay root"] = ("podman", [*job, "--directory=/tmp"], [])
        variants["podman volume"] = ("podman", [*job, "--directory=/vol"], ["-v", f"{vol}:/vol"])
    samples: dict[str, list[float]] = {k: [] for k in variants}
    print(f"  disk: fio {size_mb} MB sequential O_DIRECT writes, {rounds} rounds", flush=True)
    for _ in range(rounds):
        for k, (way, cmd, opts) in variants.items():
            try:
                samples[k].append(mbps(ways.out(way, cmd, opts)))
            except (BenchError, ValueError, KeyError) as exc:
                sec.notes.append(f"disk {k}: {reason(exc)}")
    for where in ("overlay root", "volume"):
        vals = {"host": samples["host"], "pallet": samples[f"pallet {where}"],
                "podman": samples.get(f"podman {where}", [])}
        if not vals["pallet"]:
            sec.skip(f"disk, {where}", "fio failed (see notes)")
            continue
        # the volume is on the same file system as the host directory: expect 1.0x; the overlay
        # root's upper directory is on palletd's data root, also /var/tmp here.
        sec.add(_row(f"disk: fio seq write O_DIRECT, {where} vs host dir", "MB/s", vals, 0.9,
                     short="disk " + where.split()[0]))


def network(ways: Ways, sec: Section, rounds: int, seconds: int = 3) -> None:
    d = ways.d
    probe = run([*d.pallet, "run", "--rm", IMAGE, "sh", "-c", "cat /sys/class/net/eth0/address"],
                env=d.env, check=False, timeout=120)
    if probe.returncode != 0:
        sec.skip("network", "palletd's bridge networking does not work here: "
                 + reason(BenchError(probe.stderr.decode(errors="replace"))))
        return
    client = ["chroot", str(ways.rootfs), "iperf3", "-J", "-t", str(seconds), "-c"]

    def measure_once(addr: str, port: int, prefix: list[str] | None = None, cc: str = "") -> float:
        """Gbit/s received; retried: wait_port's probe connection can leave the server busy
        for a moment, and iperf3 then answers "the server is busy running a test". `prefix`
        runs the client elsewhere (podman_network: in its namespace); the retries there also
        wait for the server to come up. `cc` picks the client's TCP congestion control
        (iperf3 -C)."""
        err = ""
        for _attempt in range(3 if prefix is None else 30):
            proc = run([*(prefix or []), *client, addr, "-p", str(port), *(["-C", cc] if cc else [])],
                       timeout=60, check=False)
            doc = json.loads(proc.stdout.decode() or "{}")
            if "error" not in doc and "end" in doc:
                return float(doc["end"]["sum_received"]["bits_per_second"]) / 1e9
            err = str(doc.get("error") or proc.stderr.decode(errors="replace").strip())
            time.sleep(0.5)
        raise BenchError(f"iperf3 -c {addr} -p {port}: {err}")

    def serve(way: str, opts: list[str], port: int) -> tuple[subprocess.Popen[bytes] | None, str]:
        """Start iperf3 -s; returns (host process or None, container name or '')."""
        if way == "host":
            p = subprocess.Popen(["chroot", str(ways.rootfs), "iperf3", "-s", "-p", str(port)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return p, ""
        name = f"iperf-{port}"
        if way == "pallet":
            run([*d.pallet, "run", "-d", "--name", name, *opts, IMAGE, "iperf3", "-s", "-p", str(port)],
                env=d.env, timeout=120)
        else:
            assert ways.pm is not None
            ways.pm("run", "-d", "--name", name, "--cgroup-parent", ways.pm.cgroup_parent, *opts, IMAGE,
                    "iperf3", "-s", "-p", str(port))
        return None, name

    def stop(way: str, p: subprocess.Popen[bytes] | None, name: str) -> None:
        if p is not None:
            p.terminate()
            p.wait()
        elif way == "pallet":
            run([*d.pallet, "rm", "-f", name], env=d.env, check=False)
        elif ways.pm is not None:
            ways.pm("rm", "-f", "-t", "0", name, check=False)

    def wait_port(host: str, port: int) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex((host, port)) == 0:
                    return
            time.sleep(0.1)
        raise BenchError(f"iperf3 server at {host}:{port} did not come up")

    # The host's default TCP congestion control decides much of these figures: with BBR (common
    # on cloud hosts; Debian's default is cubic) loopback itself runs at a third of cubic's rate,
    # and a client sending at the 1500-byte MTU loses a third more. Pallet's bridge routes use
    # cubic (pallet.network.manager.SUBNET_CONGCTL), so the bridge row compares cubic with the
    # host default; the "cubic" rows repeat loopback and the published port with `iperf3 -C
    # cubic`, like for like. See docs/design/network.md, "Throughput".
    host_cc = Path("/proc/sys/net/ipv4/tcp_congestion_control").read_text().strip()
    sec.notes.append(f"network: host's default TCP congestion control: {host_cc}")
    cc_of: dict[str, str] = {}
    variants: dict[str, tuple[str, list[str], str]] = {
        "host loopback": ("host", [], "127.0.0.1"),
        "pallet bridge": ("pallet", [], "bridge"),
        "pallet published port": ("pallet", ["-p", "127.0.0.1:{port}:{port}"], "127.0.0.1"),
        "pallet --network host": ("pallet", ["--network", "host"], "127.0.0.1"),
    }
    if ways.pm:
        variants["podman --network host"] = ("podman", ["--network", "host"], "127.0.0.1")
    # The same bridge with a loopback-sized MTU (Docker's -o com.docker.network.driver.mtu): how
    # much of the bridge's cost is the 1500-byte MTU against loopback's 65536. No target.
    jumbo = run([*d.pallet, "network", "create", "-o", "com.docker.network.driver.mtu=65520", "benchjumbo"],
                env=d.env, check=False)
    if jumbo.returncode == 0:
        variants["pallet bridge, MTU 65520"] = ("pallet", ["--network", "benchjumbo"], "bridge")
    offered = Path("/proc/sys/net/ipv4/tcp_available_congestion_control").read_text().split()
    if host_cc != "cubic" and "cubic" in offered:
        variants["host loopback, cubic"] = ("host", [], "127.0.0.1")
        variants["pallet published port, cubic"] = ("pallet", ["-p", "127.0.0.1:{port}:{port}"], "127.0.0.1")
        cc_of = {"host loopback, cubic": "cubic", "pallet published port, cubic": "cubic"}
    samples: dict[str, list[float]] = {k: [] for k in variants}
    print(f"  network: iperf3, {rounds} rounds", flush=True)
    for _ in range(rounds):
        for k, (way, opts, addr) in variants.items():
            port = free_port()
            opts = [o.format(port=port) for o in opts]
            p, name = None, ""
            try:
                p, name = serve(way, opts, port)
                if addr == "bridge":
                    addr_ = run([*d.pallet, "inspect", "-f",
                                 "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name],
                                env=d.env).stdout.decode().strip()
                else:
                    addr_ = addr
                wait_port(addr_, port)
                samples[k].append(measure_once(addr_, port, cc=cc_of.get(k, "")))
            except (BenchError, ValueError, KeyError) as exc:
                sec.notes.append(f"network {k}: {reason(exc)}")
            finally:
                stop(way, p, name)
    podman = podman_network(ways, sec, rounds, measure_once) if ways.pm else {}
    base = samples["host loopback"]
    cubic = samples.get("host loopback, cubic")
    # Issue 5's targets: "bridge at least 0.9x of loopback, host network 1.0x" (0.98: the noise
    # of one 2-core machine). The published port is measured beside them, against loopback and
    # podman's published port, with no target of its own (the issue sets none; session 4's
    # suite had put the bridge's 0.9x on it too, see docs/design/network.md "Throughput").
    # With a host default other than cubic the bridge's route runs cubic and loopback does not:
    # the bridge's target then applies to the like-for-like row below, not to this one.
    like = {"pallet bridge": "pallet bridge", "pallet published port": "pallet published port, cubic"}
    for k, limit in (("pallet bridge", 0.9), ("pallet published port", 0.0), ("pallet --network host", 0.98)):
        if cubic and samples.get(like.get(k, "")):
            limit = 0.0
        if not samples[k]:
            sec.skip(f"network: {k}", "failed (see notes)")
            continue
        vals = {"host": base, "pallet": samples[k]}
        if k == "pallet --network host" and samples.get("podman --network host"):
            vals["podman"] = samples["podman --network host"]
        elif podman.get(k.removeprefix("pallet ")):
            vals["podman"] = podman[k.removeprefix("pallet ")]
        title = f"network: iperf3 TCP, {k.removeprefix('pallet ')} vs host loopback"
        sec.add(_row(title, "Gbit/s", vals, limit, short="net " + k.split()[-1]))
    if samples.get("pallet bridge, MTU 65520"):
        row = make_row("network: iperf3 TCP, bridge with MTU 65520 vs host loopback", "Gbit/s",
                       {"host": base, "pallet": samples["pallet bridge, MTU 65520"]}, better="higher")
        row["short"] = "net jumbo"
        sec.add(row)
    for k, what, short, limit in (("pallet bridge", "bridge", "net bridge/cubic", 0.9),
                                  ("pallet published port, cubic", "published port", "net port/cubic", 0.0)):
        if cubic and samples.get(k):
            sec.add(_row(f"network: iperf3 TCP, {what} vs host loopback, both with cubic", "Gbit/s",
                         {"host": cubic, "pallet": samples[k]}, limit, short=short))
    if jumbo.returncode == 0:
        run([*d.pallet, "network", "rm", "benchjumbo"], env=d.env, check=False)


def podman_network(ways: Ways, sec: Section, rounds: int, measure_once: Any) -> dict[str, list[float]]:
    """podman's bridge (netavark) and a published port, in a network namespace of the bench's
    own: netavark's bridge, addresses and firewall rules live there and go with it, so the
    host's firewall is never touched. The iperf3 client runs in that namespace too. The rows
    compare podman's figures with the host's loopback, like Pallet's; the namespace's own
    loopback is measured as well and given in a note (the same kernel path: it should match)."""
    assert ways.pm is not None
    ns = f"pallet-bench-{os.getpid()}"
    out: dict[str, list[float]] = {"loopback": [], "bridge": [], "published port": []}
    enter = ["nsenter", f"--net=/run/netns/{ns}"]
    try:
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
    except BenchError as exc:
        sec.notes.append(f"network podman: no namespace of our own: {reason(exc)}")
        return {}
    pm = ways.pm
    saved = pm.base
    pm.base = [*enter, *saved]
    try:
        for _ in range(rounds):
            for k in out:
                port = free_port()
                name = f"iperf-pm-{port}"
                server = None
                try:
                    if k == "loopback":
                        server = subprocess.Popen([*enter, "chroot", str(ways.rootfs), "iperf3", "-s", "-p",
                                                   str(port)], stdout=subprocess.DEVNULL,
                                                  stderr=subprocess.DEVNULL)
                        addr = "127.0.0.1"
                    else:
                        opts = ["-p", f"127.0.0.1:{port}:{port}"] if k == "published port" else []
                        pm("run", "-d", "--name", name, "--cgroup-parent", pm.cgroup_parent, *opts, IMAGE,
                           "iperf3", "-s", "-p", str(port))
                        addr = "127.0.0.1" if opts else pm.out(
                            "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name)
                    out[k].append(float(measure_once(addr, port, prefix=enter)))
                except (BenchError, ValueError, KeyError) as exc:
                    sec.notes.append(f"network podman {k}: {reason(exc)}")
                finally:
                    if server is not None:
                        server.terminate()
                        server.wait()
                    else:
                        pm("rm", "-f", "-t", "0", name, check=False)
    finally:
        pm.base = saved
        run(["ip", "netns", "del", ns], check=False)
    loop = out.pop("loopback")
    if loop:
        sec.notes.append(f"network podman: loopback inside its namespace {sorted(loop)[len(loop) // 2]:.1f} "
                         "Gbit/s (the host's loopback row is the reference for both engines)")
    return {k: v for k, v in out.items() if v}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(ap, default_reps=5, quick_reps=3)
    ap.add_argument("--inner", type=int, help="kernel repetitions per process (4; 3 with --quick)")
    ap.add_argument("--io-mb", type=int, help="fio write size (512; 128 with --quick)")
    a = ap.parse_args()
    rounds = a.reps or (3 if a.quick else 5)
    sec = Section("overhead", a.quick)
    missing = ensure_debs(PEERS, not a.no_install)
    try:
        tar = build_image(not a.no_install)
    except BenchError as exc:
        sec.skip("overhead (all figures)", f"no Debian image with NumPy: {exc}")
        path = sec.write(Path(a.out))
        print(sec.report())
        print(f"results: {path}")
        return 0
    with workspace("po") as (work, parent):
        d = Palletd(work / "d", parent)
        pm: Podman | None = None
        try:
            # The three copies of the 300 MB image are made side by side (untimed set-up).
            t0 = time.monotonic()
            with ThreadPoolExecutor(3) as ex:
                unpacked = ex.submit(extract, tar, work / "hostroot")
                jobs: list[Future[object]] = [ex.submit(d.cli, "import", str(tar), IMAGE, timeout=600)]
                if "podman" in missing or "runc" in missing:
                    sec.skip("podman", "podman or runc is not installed")
                else:
                    pm = Podman(work / "p", parent, runtime="runc")
                    jobs.append(ex.submit(pm, "import", "-q", str(tar), IMAGE))
                rootfs = unpacked.result()
                for j in jobs:
                    j.result()
            print(f"  set-up: image imported and unpacked in {time.monotonic() - t0:.0f} s", flush=True)
            ways = Ways(rootfs, d, pm)
            got = kernels(ways, sec, rounds, a.inner or (3 if a.quick else 4))
            # --quick: fewer disk and network rounds, they are the slow part (each a container
            # start plus seconds of transfer); the kernels keep 3 rounds.
            slow_rounds = 2 if a.quick and not a.reps else rounds
            disk(ways, sec, work, slow_rounds, a.io_mb or (128 if a.quick else 512))
            network(ways, sec, slow_rounds, seconds=2 if a.quick else 3)
        finally:
            for note in d.close():
                sec.notes.append(f"cleanup: {note}")
            if pm is not None:
                pm.close()
    groups = [r["short"] for r in sec.rows]
    series = {f"{e}/host": [r["ratio"].get(f"{e}/host") or 0 for r in sec.rows] for e in ("pallet", "podman")}
    png = plot_bars(Path(a.out) / f"overhead-{stamp()}.png", "inside / outside a container (1.0 = host)",
                    "ratio to host", groups, series, hline=1.0)
    if png:
        sec.plots.append(png)
    sec.extra["kernel_samples"] = got
    path = sec.write(Path(a.out), tools=["podman", "runc", "fio", "iperf3"])
    print(sec.report())
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    main_wrapper(main)
