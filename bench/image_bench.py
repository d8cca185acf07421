"""Image benchmark: Pallet's image service against podman, side by side in one run.

    .venv/bin/python bench/image_bench.py [--reps N] [--base-mb 100] [--change-mb 10]
                                          [--podman-driver overlay|vfs] [--compression gzip,zstd,none]
                                          [--quick] [--out DIR]       (or: bench/run image --only ...)

Measures (medians of --reps runs, default 5; the two engines alternate within each round):

  import   a ~100 MB rootfs tarball (busybox + --base-mb of random files, uncompressed)
           Pallet: ImageService.import_image(...)    podman: podman import FILE NAME
  commit   a --change-mb change (random files written into the container's mounted rootfs)
           on top of that image. Pallet: ImageService.commit(...) after prepare_container_rootfs
           and mount; podman: podman create + podman mount + write, then `podman commit`.
           Only the commit itself is timed; making the container and writing the change are not.
  save     that imported image (Pallet: its uncompressed variant) to a docker-archive file.
           Pallet: pallet.image.archive.save(...) into a file; podman: podman save -o FILE
           --format docker-archive. Both timings include an fsync of the file (podman does not
           fsync it itself, so the harness does right after the command, inside the timer).
  load     podman's docker-archive of that image, the same file for both, each into an empty
           store made (and opened) before the timer starts. Pallet: archive.load(...), which
           stores the blobs (hash, fsync, rename) and records the image; podman: podman load -i,
           which also applies the layer into its storage. Pallet applies a layer when the first
           container is made, so `load+unpack` adds ImageService.unpack to compare like with like.

Pallet is timed as the library call the daemon makes; podman as its CLI, whose fixed cost
(process start, storage open) is shown on its own as `floor` (`podman images -q` on the same
store) so that the two can be compared with or without it. Random data does not compress, so
compression costs its worst case here.

podman is confined to a private store under the work directory (--root/--runroot/--tmpdir;
podman refuses a runroot path longer than 50 characters, hence the short "pib-" prefix),
cgroupfs, file events, the ulimits this VM allows (CONTAINERS_CONF), and no network.
Results: a Markdown table on stdout and JSON in bench/results/image-<timestamp>.json.
Throughput is the size of the input (import: the tar; commit: the change; save and load: the
archive) over the median time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))

from pallet.image import archive  # noqa: E402
from pallet.image.builtin import busybox_rootfs, layer_tar  # noqa: E402
from pallet.image.service import ImageService, mount_rootfs, unmount_rootfs  # noqa: E402

RESULTS = HERE / "results"
FILE_MB = 1 << 20


def write_random_files(directory: Path, megabytes: int, prefix: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(megabytes):
        (directory / f"{prefix}{i:04d}.bin").write_bytes(os.urandom(FILE_MB))


def make_base_tar(work: Path, base_mb: int) -> Path:
    rootfs = work / "base-rootfs"
    busybox_rootfs(rootfs)
    write_random_files(rootfs / "data", base_mb, "base")
    tar = work / "base.tar"
    with open(tar, "wb") as f:
        layer_tar(rootfs, f)
    shutil.rmtree(rootfs)
    return tar


class Podman:
    def __init__(self, work: Path, driver: str) -> None:
        self.work = work
        (work / "containers.conf").write_text(
            "[containers]\n"
            'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n'
            'lock_type = "file"\n')
        (work / "storage.conf").write_text(
            f'[storage]\ndriver = "{driver}"\nrunroot = "{work}/runroot"\ngraphroot = "{work}/storage"\n')
        self.env = {**os.environ, "CONTAINERS_CONF": str(work / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(work / "storage.conf")}
        self.base = ["podman", "--root", f"{work}/storage", "--runroot", f"{work}/runroot",
                     "--tmpdir", f"{work}/tmp", "--storage-driver", driver, "--cgroup-manager", "cgroupfs",
                     "--events-backend", "file"]

    def __call__(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run([*self.base, *args], capture_output=True, text=True, env=self.env,
                              stdin=subprocess.DEVNULL, timeout=600)
        if check and proc.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self("rm", "-a", "-f", check=False)
        with contextlib.suppress(Exception):
            self("rmi", "-a", "-f", check=False)
        with contextlib.suppress(Exception):
            self("system", "reset", "-f", check=False)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def unmount_under(path: Path) -> None:
    """Detach whatever is still mounted under `path` (deepest first)."""
    prefix = str(path.resolve())
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--base-mb", type=int, default=100)
    ap.add_argument("--change-mb", type=int, default=10)
    ap.add_argument("--podman-driver", default="overlay", choices=("overlay", "vfs"))
    ap.add_argument("--compression", default="gzip,zstd,none",
                    help="Pallet layer compressions to measure, comma-separated (gzip is level 1)")
    ap.add_argument("--workdir", default="/var/tmp")
    ap.add_argument("--quick", action="store_true",
                    help="3 runs and only the default (uncompressed) layers, for bench/run --quick")
    ap.add_argument("--out", default=str(RESULTS), help="directory for the JSON results")
    ap.add_argument("--no-install", action="store_true", help="accepted for bench/run; installs nothing")
    args = ap.parse_args()
    if args.quick:
        args.reps = min(args.reps, 3)
        if args.compression == "gzip,zstd,none":
            args.compression = "none"
    if os.geteuid() != 0:
        print("image_bench: needs root (overlay mounts, podman's root store)", file=sys.stderr)
        return 2
    if not shutil.which("podman"):
        print("image_bench: podman not found (apt-get install podman)", file=sys.stderr)
        return 2

    comps = [c.strip() for c in args.compression.split(",") if c.strip()]
    for c in comps:
        if c not in ("gzip", "zstd", "none"):
            ap.error(f"unknown compression {c!r}")
    work = Path(tempfile.mkdtemp(prefix="pib-", dir=args.workdir))
    (work / "podman" / "tmp").mkdir(parents=True)
    podman = Podman(work / "podman", args.podman_driver)
    svc = ImageService(work / "pallet")
    who = [f"pallet-{c}" for c in comps] + ["podman"]
    times: dict[str, dict[str, list[float]]] = {
        "import": {w: [] for w in who}, "commit": {w: [] for w in who}, "floor": {"podman": []},
        "save": {"pallet": [], "podman": []}, "load": {"pallet": [], "podman": []},
        "load+unpack": {"pallet": []}}
    archive_mb = 0.0
    try:
        print(f"making a {args.base_mb} MB base tar ...", file=sys.stderr)
        base_tar = make_base_tar(work, args.base_mb)
        tar_mb = base_tar.stat().st_size / FILE_MB

        for i in range(args.reps):
            for c in comps:
                def pallet_import(i: int = i, c: str = c) -> None:
                    with open(base_tar, "rb") as f:
                        svc.import_image(f, f"bench/base-{c}:{i}", compression=c)

                times["import"][f"pallet-{c}"].append(timed(pallet_import))
            times["import"]["podman"].append(
                timed(lambda i=i: podman("import", str(base_tar), f"localhost/bench/base:{i}")))
        pallet_image, podman_image = f"bench/base-{comps[0]}:0", "localhost/bench/base:0"
        svc.unpack(pallet_image)  # as `podman import` leaves an applied layer; not timed

        for i in range(args.reps):
            for c in comps:
                # Pallet: a container, the change written through its mounted rootfs, then commit.
                cid = f"bench{i}-{c}"
                mounts = svc.prepare_container_rootfs(cid, pallet_image)
                target = work / "mnt" / cid
                target.mkdir(parents=True)
                mount_rootfs(mounts, target)
                try:
                    write_random_files(target / "change", args.change_mb, f"c{i}-")
                    os.sync()
                    times["commit"][f"pallet-{c}"].append(
                        timed(lambda cid=cid, i=i, c=c: svc.commit(cid, f"bench/commit-{c}:{i}",
                                                                   compression=c)))
                finally:
                    unmount_rootfs(mounts, target)
                svc.remove_container_rootfs(cid)
                svc.remove(f"bench/commit-{c}:{i}")

            # podman: create + mount + write, then commit.
            name = f"bench{i}"
            podman("create", "--name", name, "--network", "none", podman_image, "/bin/true")
            merged = Path(podman("mount", name))
            write_random_files(merged / "change", args.change_mb, f"c{i}-")
            os.sync()
            times["commit"]["podman"].append(
                timed(lambda name=name, i=i: podman("commit", "-q", name, f"localhost/bench/commit:{i}")))
            podman("umount", name)
            podman("rm", "-f", name)
            podman("rmi", f"localhost/bench/commit:{i}")
            times["floor"]["podman"].append(timed(lambda: podman("images", "-q")))

        # save: the uncompressed import of the base tar, to a docker-archive file
        saved_image = "bench/base-none:0" if "none" in comps else pallet_image
        podman_archive = work / "podman-save-0.tar"
        for i in range(args.reps):
            out = work / f"pallet-save-{i}.tar"

            def pallet_save(out: Path = out) -> None:
                with open(out, "wb") as f:
                    archive.save(svc.content, svc.meta, [saved_image], f, format="docker")
                    f.flush()
                    os.fsync(f.fileno())

            times["save"]["pallet"].append(timed(pallet_save))
            out.unlink()
            pout = work / f"podman-save-{i}.tar"

            def podman_save(pout: Path = pout) -> None:
                podman("save", "-o", str(pout), "--format", "docker-archive", podman_image)
                fd = os.open(pout, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

            times["save"]["podman"].append(timed(podman_save))
            if i:
                pout.unlink()
        archive_mb = podman_archive.stat().st_size / FILE_MB

        # load: podman's archive, into an empty store each time (made before the timer starts)
        for i in range(args.reps):
            fresh = ImageService(work / f"pallet-load-{i}")
            try:
                def pallet_load(fresh: ImageService = fresh) -> None:
                    with open(podman_archive, "rb") as f:
                        archive.load(fresh.content, fresh.meta, f)

                times["load"]["pallet"].append(timed(pallet_load))
                unpack = timed(lambda fresh=fresh: fresh.unpack("localhost/bench/base:0"))
                times["load+unpack"]["pallet"].append(times["load"]["pallet"][-1] + unpack)
            finally:
                fresh.close()
                unmount_under(work / f"pallet-load-{i}")
                shutil.rmtree(work / f"pallet-load-{i}", ignore_errors=True)
            pdir = work / f"pl{i}"
            (pdir / "tmp").mkdir(parents=True)
            other = Podman(pdir, args.podman_driver)
            try:
                other("images", "-q")  # initialize the store before the timer starts
                times["load"]["podman"].append(timed(lambda other=other: other("load", "-q", "-i",
                                                                               str(podman_archive))))
            finally:
                other.cleanup()
                unmount_under(pdir)
                shutil.rmtree(pdir, ignore_errors=True)
    finally:
        svc.close()
        podman.cleanup()
        unmount_under(work)
        shutil.rmtree(work, ignore_errors=True)

    med = {op: {w: statistics.median(v) for w, v in d.items() if v} for op, d in times.items()}
    floor = med["floor"]["podman"]
    out = io.StringIO()
    out.write(f"Image benchmark, {args.reps} runs each, medians; base tar {tar_mb:.0f} MB (busybox + "
              f"random files), change {args.change_mb} MB of random data; podman storage driver "
              f"{args.podman_driver}; gzip is level 1.\n\n")
    out.write("| operation | engine | median | vs podman | vs podman minus CLI floor | throughput |\n")
    out.write("|---|---|---|---|---|---|\n")
    rows = [("import", who, tar_mb), ("commit", who, args.change_mb),
            ("save", ["pallet", "podman"], archive_mb), ("load", ["pallet", "podman"], archive_mb)]
    for op, engines, size in rows:
        q = med[op]["podman"]
        for w in engines:
            p = med[op][w]
            out.write(f"| {op} | {w} | {p * 1000:.0f} ms | {p / q:.2f} | {p / max(q - floor, 1e-9):.2f} | "
                      f"{size / p:.0f} MB/s |\n")
        if op == "load":
            p = med["load+unpack"]["pallet"]
            out.write(f"| load+unpack | pallet | {p * 1000:.0f} ms | {p / q:.2f} | "
                      f"{p / max(q - floor, 1e-9):.2f} | {size / p:.0f} MB/s |\n")
    out.write(f"\npodman CLI floor (`podman images -q` on the same store): {floor * 1000:.0f} ms. "
              f"save/load archive: {archive_mb:.0f} MB (docker-archive, uncompressed layer).\n")
    for c in comps:
        ok = med["commit"][f"pallet-{c}"] <= 0.5 * med["commit"]["podman"]
        default = " (the default: stored uncompressed, compressed on push)" if c == "none" else ""
        verdict = "met" if ok else "NOT met"
        out.write(f"Target (issue 3, commit <= half of podman) with {c}{default}: {verdict}.\n")
    print(out.getvalue())
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    (out_dir / f"image-{stamp}.json").write_text(json.dumps({
        "kind": "image", "when": stamp, "host": platform.node(), "kernel": platform.release(),
        "args": vars(args), "base_tar_mb": tar_mb, "archive_mb": archive_mb, "times_s": times,
        "medians_s": med,
        "podman": subprocess.run(["podman", "--version"], capture_output=True, text=True).stdout.strip(),
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
