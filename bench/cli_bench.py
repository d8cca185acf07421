"""CLI start-up benchmark: `pallet` against the docker CLI on the same palletd, as a Markdown table.

    .venv/bin/python bench/cli_bench.py [--reps 30] [--pallet CMD] [--no-docker]

Starts palletd on temporary roots (tests/integration/daemon/palletd_support.py), then times
whole processes, wall clock from spawn to exit, `--reps` times each (default 30, after two
warm-up runs), and prints the median and the 10th/90th percentiles in milliseconds:

  python -c pass        the interpreter's own floor
  pallet --version      no request: start-up alone (against `docker --version`)
  pallet version        GET /version (plus the /_ping negotiation when no cached version)
  pallet version --format '{{.Server.Version}}'   the same, one field (as `docker version --format`)
  pallet ps             GET /containers/json
  pallet images         GET /images/json
  docker ...            the same commands with the docker CLI (`-H unix://...`), when installed
  podman --version, podman ps   on a private, empty store (benchlib.Podman), when installed

The commands alternate within each round so that a noisy neighbour hits both alike. --pallet
names the pallet executable (default: .venv/bin/pallet next to this interpreter).

Bytecode: by default PYTHONDONTWRITEBYTECODE is dropped from the children's environment, so the
warm-up runs write `__pycache__` and the timed runs load it, as an installed pallet does.
--no-pyc keeps the caller's setting (with PYTHONDONTWRITEBYTECODE=1 and no __pycache__ yet, every run
compiles every pallet module from source, which adds ~25 ms).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "integration" / "daemon"))

from palletd_support import palletd  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from benchlib import Podman  # noqa: E402

VERBS = [["--version"], ["version"], ["version", "--format", "{{.Server.Version}}"], ["ps"], ["images"]]


def _label(verb: list[str]) -> str:
    return " ".join(f"'{v}'" if "{" in v else v for v in verb)


def time_once(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode()}")
    return elapsed * 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--pallet", default=str(Path(sys.executable).parent / "pallet"))
    ap.add_argument("--no-docker", action="store_true")
    ap.add_argument("--no-podman", action="store_true")
    ap.add_argument("--no-pyc", action="store_true", help="keep PYTHONDONTWRITEBYTECODE as it is")
    args = ap.parse_args()
    docker = None if args.no_docker else shutil.which("docker")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "PALLET_"))}
    if not args.no_pyc:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    podman = None if args.no_podman or not shutil.which("podman") else Podman(
        Path(tempfile.mkdtemp(prefix="pcb", dir="/var/tmp")), "/pallet-bench-unused")
    try:
        with palletd() as d:
            cmds: dict[str, list[str]] = {"python -c pass": [sys.executable, "-c", "pass"]}
            for verb in VERBS:
                cmds[f"pallet {_label(verb)}"] = [args.pallet, "-H", d.host, *verb]
            if docker:
                for verb in VERBS:
                    cmds[f"docker {_label(verb)}"] = [docker, "-H", d.host, *verb]
            if podman is not None:
                # podman reads its own (private, empty) store: no daemon, its whole work in-process
                cmds["podman --version"] = [*podman.base, "--version"]
                cmds["podman ps"] = [*podman.base, "ps"]

            def env_of(name: str) -> dict[str, str]:
                return podman.env if podman is not None and name.startswith("podman") else env

            times: dict[str, list[float]] = {name: [] for name in cmds}
            for _ in range(2):
                for name, cmd in cmds.items():
                    time_once(cmd, env_of(name))
            for _ in range(args.reps):
                for name, cmd in cmds.items():
                    times[name].append(time_once(cmd, env_of(name)))
    finally:
        if podman is not None:
            podman.close()
            shutil.rmtree(podman.work, ignore_errors=True)
    pyc = "no bytecode cache" if env.get("PYTHONDONTWRITEBYTECODE") else "bytecode cached"
    print(f"Median of {args.reps} runs, wall clock per process (ms), Python {sys.version.split()[0]}, "
          f"{pyc}\n")
    print("| command | median | p10 | p90 |")
    print("|---|---:|---:|---:|")
    for name, ts in times.items():
        print(f"| `{name}` | {statistics.median(ts):.1f} | {percentile(ts, 0.1):.1f} "
              f"| {percentile(ts, 0.9):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
