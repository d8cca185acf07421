"""Unit tests for pallet.runtime.state: the on-disk store, the derived status, the OCI state object."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pallet.errors import AlreadyExists, InvalidArgument, NotFound
from pallet.oci.runtime_spec import OCI_VERSION
from pallet.runtime.state import (
    STATE_VERSION,
    ContainerState,
    StateStore,
    oci_state,
    proc_start_time,
    status_of,
)

STATE_SCHEMA = Path(__file__).parents[4] / "shared/specs/oci-runtime/schema_state-schema.json"
# What schema_state-schema.json (runtime spec v1.2) says, kept here so the test runs without it.
REQUIRED = ["ociVersion", "id", "status", "bundle"]
STATUSES = ["creating", "created", "running", "stopped"]


def make_state(cid: str = "c1", **kw) -> ContainerState:
    base = dict(id=cid, bundle="/bundles/c1", rootfs="/bundles/c1/rootfs", created="2024-01-02T03:04:05Z",
                owner="", cgroup_path="/pallet/c1", config={"ociVersion": "1.2.0"})
    base.update(kw)
    return ContainerState(**base)


@pytest.fixture
def store(tmp_path):
    return StateStore(str(tmp_path / "state"))


def dead_pid() -> int:
    """The pid of a child that has exited and been reaped."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# -- the store ---------------------------------------------------------------------------------

def test_reserve_creates_the_directory(store, tmp_path):
    d = store.reserve("c1")
    assert Path(d) == tmp_path / "state" / "c1"
    assert Path(d).is_dir()
    assert Path(store.fifo("c1")) == Path(d) / "exec.fifo"


def test_reserve_twice_is_already_exists(store):
    store.reserve("c1")
    with pytest.raises(AlreadyExists, match="c1"):
        store.reserve("c1")


def test_save_then_load_round_trips(store):
    store.reserve("c1")
    st = make_state(pid=1234, pid_start=99, annotations={"a": "b"}, config={"process": {"args": ["sh"]}})
    store.save(st)
    assert store.load("c1") == st


def test_state_json_is_versioned(store):
    store.reserve("c1")
    store.save(make_state())
    data = json.loads((Path(store.dir("c1")) / "state.json").read_text())
    assert data["version"] == STATE_VERSION == 1
    assert {k: v for k, v in data.items() if k != "version"} == make_state().to_dict()


def test_save_is_atomic_and_leaves_no_temp_file(store):
    store.reserve("c1")
    store.save(make_state(pid=1))
    store.save(make_state(pid=2))
    assert sorted(p.name for p in Path(store.dir("c1")).iterdir()) == ["state.json"]
    assert store.load("c1").pid == 2


def test_a_crash_before_rename_keeps_the_old_state(store, monkeypatch):
    store.reserve("c1")
    store.save(make_state(pid=1))

    def crash(src, dst):
        raise OSError("killed before rename")

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(OSError):
        store.save(make_state(pid=2))
    monkeypatch.undo()
    assert store.load("c1").pid == 1


def test_load_unknown_id_is_not_found(store):
    with pytest.raises(NotFound, match="nope"):
        store.load("nope")


def test_load_of_a_reserved_but_unsaved_container_is_not_found(store):
    store.reserve("c1")
    with pytest.raises(NotFound):
        store.load("c1")


@pytest.mark.parametrize("cid", ["../x", "", "a/b", "..", "/etc"])
def test_ids_that_would_escape_root_are_refused(store, tmp_path, cid):
    for op in (store.reserve, store.load, store.remove, store.dir):
        with pytest.raises(InvalidArgument):
            op(cid)
    assert not (tmp_path / "x").exists()


def test_list_is_sorted_and_skips_reserved_but_unsaved(store):
    assert store.list() == []
    for cid in ("b", "a", "c"):
        store.reserve(cid)
    store.save(make_state("b"))
    store.save(make_state("a"))
    assert store.list() == ["a", "b"]


def test_list_of_a_missing_root_is_empty(tmp_path):
    assert StateStore(str(tmp_path / "absent")).list() == []


def test_remove_deletes_everything_and_is_idempotent(store):
    store.reserve("c1")
    store.save(make_state())
    Path(store.fifo("c1")).write_text("")
    store.remove("c1")
    assert not Path(store.dir("c1")).exists()
    store.remove("c1")
    assert store.list() == []
    store.reserve("c1")  # the id is free again


# -- status ---------------------------------------------------------------------------------------

def test_proc_start_time_of_self_and_of_a_dead_pid():
    assert isinstance(proc_start_time(os.getpid()), int)
    assert proc_start_time(dead_pid()) is None


def test_proc_start_time_of_a_zombie_is_none():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
        assert proc_start_time(p.pid) is None
    finally:
        p.wait()


def test_status_of_a_dead_pid_is_stopped(store):
    store.reserve("c1")
    Path(store.fifo("c1")).write_text("")
    assert status_of(store, make_state(pid=dead_pid(), pid_start=1)) == "stopped"


def test_status_without_a_pid_is_stopped(store):
    store.reserve("c1")
    assert status_of(store, make_state(pid=0)) == "stopped"


def test_status_of_a_reused_pid_is_stopped(store):
    store.reserve("c1")
    me = os.getpid()
    assert status_of(store, make_state(pid=me, pid_start=proc_start_time(me) + 1)) == "stopped"


def test_status_created_running_paused(store):
    store.reserve("c1")
    me = os.getpid()
    st = make_state(pid=me, pid_start=proc_start_time(me))
    Path(store.fifo("c1")).write_text("")
    assert status_of(store, st) == "created"
    Path(store.fifo("c1")).unlink()
    assert status_of(store, st) == "running"
    assert status_of(store, st, frozen=lambda: True) == "paused"


# -- the OCI state object --------------------------------------------------------------------------

def test_schema_facts_match_the_spec_file():
    if not STATE_SCHEMA.exists():
        pytest.skip(f"{STATE_SCHEMA} is not here")
    schema = json.loads(STATE_SCHEMA.read_text())
    assert schema["required"] == REQUIRED
    assert schema["properties"]["status"]["enum"] == STATUSES
    assert schema["properties"]["pid"] == {"type": "integer", "minimum": 0}


def check_against_schema(state: dict) -> None:
    """The checks of schema_state-schema.json, without a JSON Schema library."""
    for key in REQUIRED:
        assert key in state, key
    assert isinstance(state["id"], str)
    assert isinstance(state["bundle"], str)
    # runc's "paused" is an extension the spec allows ("additional values MAY be defined").
    assert state["status"] in [*STATUSES, "paused"]
    # runtime.md: pid is REQUIRED when status is created or running.
    if state["status"] in ("created", "running"):
        assert "pid" in state and state["pid"] > 0
    if "pid" in state:
        assert isinstance(state["pid"], int) and state["pid"] >= 0
    if "annotations" in state:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in state["annotations"].items())
    assert state["ociVersion"].startswith("1.")


@pytest.mark.parametrize("status", ["created", "running", "paused"])
def test_oci_state_of_a_live_container_has_its_pid(status):
    out = oci_state(make_state(pid=4242, pid_start=7), status)
    check_against_schema(out)
    assert out["pid"] == 4242
    assert out["status"] == status
    assert out["ociVersion"] == OCI_VERSION
    assert (out["id"], out["bundle"]) == ("c1", "/bundles/c1")
    # runc's extra fields, which podman and containerd read.
    assert (out["rootfs"], out["created"], out["owner"]) == ("/bundles/c1/rootfs", "2024-01-02T03:04:05Z", "")


def test_oci_state_of_a_stopped_container_has_pid_zero():
    out = oci_state(make_state(pid=4242), "stopped")
    check_against_schema(out)
    assert out["pid"] == 0


def test_oci_state_annotations_only_when_set():
    assert "annotations" not in oci_state(make_state(), "stopped")
    out = oci_state(make_state(annotations={"org.example/key": "v"}), "stopped")
    check_against_schema(out)
    assert out["annotations"] == {"org.example/key": "v"}


def test_oci_state_is_json():
    out = oci_state(make_state(pid=1, annotations={"a": "b"}), "running")
    assert json.loads(json.dumps(out)) == out
