"""The benchmark suite's pure helpers (bench/benchlib.py, bench/suite.py): statistics, ratios,
targets, tables and the conversion of the older runtime and image result files."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod  # dataclasses look their module up there
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BENCH))


benchlib = _load("benchlib")


def test_summarize_median_min_max() -> None:
    s = benchlib.summarize([5.0, 1.0, 3.0, 100.0])
    assert s["median"] == 4.0
    assert (s["min"], s["max"], s["n"]) == (1.0, 100.0, 4)
    assert s["samples"] == [5.0, 1.0, 3.0, 100.0]
    with pytest.raises(ValueError):
        benchlib.summarize([])


def test_ratio_and_verdict() -> None:
    assert benchlib.ratio(50.0, 200.0) == 0.25
    assert benchlib.ratio(1.0, 0.0) is None
    assert benchlib.verdict(0.5, "<=", 0.5) is True
    assert benchlib.verdict(0.51, "<=", 0.5) is False
    assert benchlib.verdict(0.97, ">=", 0.98) is False
    assert benchlib.verdict(None, ">=", 0.98) is None
    with pytest.raises(ValueError):
        benchlib.verdict(1.0, "<", 1.0)


def test_make_row_ratios_against_every_peer_and_target() -> None:
    row = benchlib.make_row("run", "ms", {"pallet": [10, 20, 30], "podman": [40, 40, 50], "runc": [],
                                          "crun": [10, 10, 10]}, target=("podman", "<=", 0.5))
    assert set(row["values"]) == {"pallet", "podman", "crun"}  # no samples, no column
    assert row["ratio"] == {"pallet/podman": 0.5, "pallet/crun": 2.0}
    assert row["target"] == "pallet/podman <= 0.5"
    assert row["met"] is True


def test_make_row_higher_is_better_target() -> None:
    row = benchlib.make_row("cpu", "GB/s", {"host": [10.0], "pallet": [9.7]}, better="higher",
                            target=("host", ">=", 0.98))
    assert row["ratio"] == {"pallet/host": 0.97}
    assert row["met"] is False


def test_markdown_table_rows_and_skips() -> None:
    rows = [benchlib.make_row("run", "ms", {"pallet": [1.0, 2.0, 3.0], "podman": [4.0]},
                              target=("podman", "<=", 0.5))]
    text = benchlib.markdown_table(rows, [{"figure": "build", "reason": "no build verb"}])
    lines = text.splitlines()
    assert lines[0] == "| figure | values: median (min-max) | ratio | target |"
    assert lines[2] == ("| run | pallet: 2.0 (1.0-3.0) ms<br>podman: 4.0 (4.0-4.0) ms | pallet/podman 0.50x "
                        "| pallet/podman <= 0.5: met |")
    assert lines[3] == "| build | skipped: no build verb | - | |"


def test_fmt_value_precision() -> None:
    assert benchlib.fmt_value({"median": 1234.4, "min": 0.5, "max": 12.34}, "ms") == "1234 (0.500-12.3) ms"


def test_alternate_orders_engines_and_drops_warmup() -> None:
    calls: list[str] = []
    counter = iter(range(100))

    def fn(name: str):
        def run() -> float:
            calls.append(name)
            return float(next(counter))
        return run

    got = benchlib.alternate({"a": fn("a"), "b": fn("b")}, reps=2, warmup=1)
    assert calls == ["a", "b"] * 3
    assert got == {"a": [2.0, 4.0], "b": [3.0, 5.0]}


def test_alternate_tolerant_counts_failures() -> None:
    def bad() -> float:
        raise benchlib.BenchError("Traceback (most recent call last):\n  File x\nTimeoutError: timed out")

    notes: list[str] = []
    got = benchlib.alternate_tolerant({"ok": lambda: 1.0, "bad": bad}, reps=3, warmup=0, notes=notes,
                                      what="run")
    assert got == {"ok": [1.0, 1.0, 1.0]}
    assert notes == ["FAILED: bad run failed 3 of 3 times; last error: TimeoutError: timed out"]


def test_reason_picks_the_telling_line() -> None:
    assert benchlib.reason(Exception("a\nb\nValueError: bad")) == "ValueError: bad"
    tb = "Traceback (most recent call last):\n x\nKeyError: 'k'"
    assert benchlib.reason(Exception(tb)) == "KeyError: 'k'"
    assert benchlib.reason(Exception("pallet: Error response from daemon: no\nSee help")) == \
        "pallet: Error response from daemon: no"
    assert benchlib.reason(Exception("")) == "Exception"


def test_section_write_format(tmp_path: Path) -> None:
    sec = benchlib.Section("engine", quick=True)
    sec.add(benchlib.make_row("create", "ms", {"pallet": [1.0], "podman": [2.0]}))
    sec.skip("crun", "refuses hybrid cgroups")
    doc = json.loads(sec.write(tmp_path).read_text())
    assert doc["format"] == benchlib.RESULTS_FORMAT
    assert doc["section"] == "engine" and doc["quick"] is True
    assert doc["rows"][0]["ratio"] == {"pallet/podman": 0.5}
    assert doc["skipped"] == [{"figure": "crun", "reason": "refuses hybrid cgroups"}]
    assert {"nproc", "kernel", "cgroup_mode"} <= set(doc["machine"])


def test_suite_converts_runtime_and_image_results() -> None:
    suite = _load("suite")
    runtime = {"ops": {"run": {"pallet": {"samples_ms": [90.0, 100.0]},
                               "runc": {"samples_ms": [40.0, 50.0]}}}}
    rows = suite.runtime_rows(runtime)
    assert rows[0]["figure"] == "pallet-runtime run"
    assert rows[0]["ratio"] == {"pallet/runc": 2.11}
    assert rows[0]["met"] is False
    image = {"times_s": {"commit": {"pallet-none": [0.07], "pallet-gzip": [0.3], "podman": [0.27]},
                         "load": {"pallet": [0.5], "podman": [1.3]}, "load+unpack": {"pallet": [1.0]}}}
    by_fig = {r["figure"]: r for r in suite.image_rows(image)}
    assert by_fig["image commit"]["ratio"] == {"pallet/pallet-gzip": 0.23, "pallet/podman": 0.26}
    assert by_fig["image commit"]["met"] is True
    assert by_fig["image load+unpack"]["ratio"] == {"pallet/podman": 0.77}


def test_layered_archive_is_a_docker_save_archive(tmp_path: Path) -> None:
    growth = _load("growth_bench")
    base = tmp_path / "base.tar"
    with tarfile.open(base, "w") as tf:
        ti = tarfile.TarInfo("bin/x")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"abc"))
    arch = growth.layered_archive(tmp_path / "a.tar", base, 5, "localhost/bench/layers:5")
    with tarfile.open(arch) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == ["localhost/bench/layers:5"]
        assert len(manifest[0]["Layers"]) == 5
        config = json.load(tf.extractfile(manifest[0]["Config"]))
        assert len(config["rootfs"]["diff_ids"]) == 5
        import hashlib

        for layer, diff_id in zip(manifest[0]["Layers"], config["rootfs"]["diff_ids"]):
            assert "sha256:" + hashlib.sha256(tf.extractfile(layer).read()).hexdigest() == diff_id


def test_random_layer_archive_one_layer_per_entry(tmp_path: Path) -> None:
    registry = _load("registry_bench")
    base = tmp_path / "base.tar"
    with tarfile.open(base, "w") as tf:
        tf.addfile(tarfile.TarInfo("empty"), io.BytesIO(b""))
    arch = registry.random_layer_archive(tmp_path / "r.tar", base, [1, 1], "bench/r:1")
    with tarfile.open(arch) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
        layers = manifest[0]["Layers"]
        assert len(layers) == 3  # the base and two random ones
        sizes = [tf.getmember(name).size for name in layers[1:]]
        assert all(size > 1 << 20 for size in sizes)  # 1 MiB of data plus tar headers
        assert len(set(layers)) == 3  # random data: distinct digests
