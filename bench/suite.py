"""The benchmark suite: runs the sections one after another and prints one Markdown report.

    bench/run [SECTION ...] [--quick] [--no-install] [--publish]

SECTION is any of: runtime image engine build registry scale growth overhead, or `all` (the
default). Each section is its own program (bench/<section>_bench.py, runnable alone through
`bench/run SECTION [its options]`); the suite starts them with --quick when asked, collects
the JSON each writes into one directory bench/results/suite-<stamp>/, and prints the machine,
every section's table (figure, values, ratio Pallet/peer, target) and where the results are.
A section that fails does not stop the others; its failure is in the report.

--publish copies the PNG plots of this run to docs/benchmarks/<section>[-<kind>].png, the
files docs/benchmarks.md shows.

Summary format (version 1), suite-<stamp>/summary.json:
    {"format": 1, "quick": bool, "machine": {...}, "seconds": {section: float},
     "sections": {section: {"status": "ok"|"failed", "results": [json file, ...],
                            "rows": [...], "skipped": [...], "notes": [...]}}}
with rows as in benchlib's per-section format (runtime and image results are converted).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import RESULTS, machine_info, machine_line, make_row, markdown_table, stamp

HERE = Path(__file__).resolve().parent
DOCS_PLOTS = HERE.parent / "docs" / "benchmarks"
SECTIONS = ("runtime", "image", "engine", "build", "registry", "scale", "growth", "overhead")
SCRIPT = {s: HERE / f"{s}_bench.py" for s in SECTIONS}
QUICK_ARGS = {"runtime": ["--quick", "--no-hyperfine"], "image": ["--quick"]}
SUMMARY_FORMAT = 1


def runtime_rows(doc: dict) -> list[dict]:
    """runtime_bench.py's JSON (its own format) as benchlib rows."""
    rows = []
    for op, per in doc["ops"].items():
        samples = {n: per[n]["samples_ms"] for n in per}
        target = ("runc", "<=", 1.0) if op == "run" else None
        rows.append(make_row(f"pallet-runtime {op}", "ms", samples, target=target))
    return rows


def image_rows(doc: dict) -> list[dict]:
    """image_bench.py's JSON (seconds per engine and operation) as benchlib rows, in ms."""
    rows = []
    for op in ("import", "commit", "save", "load", "load+unpack"):
        per = doc["times_s"].get(op, {})
        # pallet-none is the default store (uncompressed layers): it is "pallet"; gzip and
        # zstd variants keep their names.
        samples = {("pallet" if k in ("pallet", "pallet-none") else k): [v * 1000 for v in vals]
                   for k, vals in per.items() if vals}
        if op == "load+unpack":
            samples["podman"] = [v * 1000 for v in doc["times_s"]["load"]["podman"]]
        target = ("podman", "<=", 0.5) if op == "commit" else None
        if samples:
            rows.append(make_row(f"image {op}", "ms", samples, target=target))
    return rows


def run_section(name: str, quick: bool, no_install: bool, out: Path) -> tuple[str, list[Path], float]:
    before = set(out.glob("*.json"))
    args = [sys.executable, str(SCRIPT[name])]
    if quick:
        args += QUICK_ARGS.get(name, ["--quick"])
    if no_install:
        args.append("--no-install")
    args += ["--out", str(out)]
    print(f"\n=== {name}: {' '.join(args[1:])}", flush=True)
    t0 = time.monotonic()
    code = subprocess.run(args, env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
                          ).returncode
    elapsed = time.monotonic() - t0
    new = sorted(set(out.glob("*.json")) - before)
    return ("ok" if code == 0 else f"failed (exit {code})"), new, elapsed


def rows_of(name: str, files: list[Path]) -> dict:
    got: dict = {"rows": [], "skipped": [], "notes": []}
    for f in files:
        doc = json.loads(f.read_text())
        if name == "runtime":
            got["rows"] += runtime_rows(doc)
            got["notes"] += doc.get("notes", [])
        elif name == "image":
            got["rows"] += image_rows(doc)
        else:
            for k in got:
                got[k] += doc.get(k, [])
    return got


def publish(out: Path) -> list[str]:
    """Copy this run's plots to docs/benchmarks/, named by section (and kind)."""
    DOCS_PLOTS.mkdir(parents=True, exist_ok=True)
    done = []
    for png in sorted(out.glob("*.png")):
        stem = png.stem.rsplit("-", 2)[0] if png.stem.count("-") >= 2 else png.stem
        if stem[:1].isdigit():
            stem = "runtime"
        dest = DOCS_PLOTS / f"{stem}.png"
        shutil.copyfile(png, dest)
        done.append(str(dest))
    return done


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    ap.add_argument("sections", nargs="*", default=["all"], help=f"all, or any of: {' '.join(SECTIONS)}")
    ap.add_argument("--quick", action="store_true", help="every section's quick mode (under 5 minutes)")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get install missing peers")
    ap.add_argument("--publish", action="store_true", help="copy the plots to docs/benchmarks/")
    a = ap.parse_args()
    chosen = list(SECTIONS) if "all" in a.sections else a.sections
    for s in chosen:
        if s not in SECTIONS:
            ap.error(f"unknown section {s!r}: choose from all {' '.join(SECTIONS)}")
    if os.geteuid() != 0:
        print("bench/run: run as root (containers, mounts, cgroups)", file=sys.stderr)
        return 2
    out = RESULTS / f"suite-{stamp()}"
    out.mkdir(parents=True)
    t0 = time.monotonic()
    machine = machine_info(["podman", "runc", "crun", "skopeo", "docker-registry", "hyperfine"])
    summary: dict = {"format": SUMMARY_FORMAT, "quick": a.quick, "machine": machine, "seconds": {},
                     "sections": {}}
    try:
        for s in chosen:
            status, files, secs = run_section(s, a.quick, a.no_install, out)
            summary["seconds"][s] = round(secs, 1)
            summary["sections"][s] = {"status": status, "results": [str(f) for f in files],
                                      **rows_of(s, files)}
    except KeyboardInterrupt:
        print("\ninterrupted: the report covers the sections that finished", file=sys.stderr)
    total = time.monotonic() - t0
    summary["seconds"]["total"] = round(total, 1)
    lines = [f"# Pallet benchmarks{' (quick)' if a.quick else ''}", "",
             f"Machine: {machine_line(machine)}",
             "Versions: " + "; ".join(f"{k}: {v}" for k, v in machine["versions"].items()), ""]
    for s, sec in summary["sections"].items():
        lines += [f"## {s} ({summary['seconds'][s]:.0f} s, {sec['status']})", "",
                  markdown_table(sec["rows"], sec["skipped"]), ""]
        lines += [f"- {n}" for n in sec["notes"]]
        lines.append("")
    met = [r.get("met") for sec in summary["sections"].values() for r in sec["rows"] if "target" in r]
    lines.append(f"Targets: {met.count(True)} met, {met.count(False)} not met, "
                 f"{met.count(None)} without a figure to compare. Took {total:.0f} s.")
    if a.publish:
        lines += ["", "Published plots: " + ", ".join(publish(out))]
    report = "\n".join(lines) + "\n"
    (out / "report.md").write_text(report)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("\n" + report)
    print(f"results: {out}/ (report.md, summary.json, one JSON per section, PNG plots)")
    return 0 if all(sec["status"] == "ok" for sec in summary["sections"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
