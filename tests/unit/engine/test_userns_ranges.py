"""The --userns=auto range allocator and the spec it writes (pallet.engine.userns); no root, no containers."""

from __future__ import annotations

import itertools
import json
import os
import threading

import pytest

from pallet.engine import bundle as B
from pallet.engine.userns import IdRange, RangePool, UsernsManager, UsernsSettings, parse_mode
from pallet.errors import InvalidArgument, NotSupported, Unavailable


@pytest.fixture
def pool(tmp_path):
    return RangePool(tmp_path / "userns")


def test_first_fit_disjoint_ranges_from_10000(pool):
    assert pool.allocate("a") == IdRange(10000, 2000)
    assert pool.allocate("b") == IdRange(12000, 2000)
    assert pool.allocate("c", 500) == IdRange(14000, 500)
    assert pool.allocate("d") == IdRange(14500, 2000)
    assert pool.allocate("a") == IdRange(10000, 2000)  # idempotent: an owner keeps its range
    ranges = sorted(pool.allocations().values(), key=lambda r: r.start)
    for left, right in itertools.pairwise(ranges):
        assert left.end <= right.start


def test_release_frees_and_gap_is_reused(pool):
    for owner in "abc":
        pool.allocate(owner)
    pool.release("b")
    pool.release("b")  # idempotent
    assert pool.get("b") is None
    assert pool.allocate("small", 1000) == IdRange(12000, 1000)  # first fit, into b's gap
    assert pool.allocate("e") == IdRange(16000, 2000)  # 13000..13999 is too small for 2000
    assert pool.allocate("f", 1000) == IdRange(13000, 1000)


def test_persisted_across_restarts(tmp_path, pool):
    pool.allocate("a")
    pool.allocate("b", 100)
    again = RangePool(tmp_path / "userns")
    assert again.allocations() == {"a": IdRange(10000, 2000), "b": IdRange(12000, 100)}
    assert again.allocate("c") == IdRange(12100, 2000)
    rec = json.loads((tmp_path / "userns" / "ranges.json").read_text())
    assert rec == {"version": 1, "ranges": {"a": [10000, 2000], "b": [12000, 100], "c": [12100, 2000]}}
    assert not [n for n in os.listdir(tmp_path / "userns") if ".tmp-" in n]


def test_two_pools_on_one_directory_never_share_a_range(tmp_path):
    """Two processes' pools (here two objects: no shared thread lock) re-read under flock."""
    p1, p2 = RangePool(tmp_path / "u"), RangePool(tmp_path / "u")
    got = [p1.allocate("a"), p2.allocate("b"), p1.allocate("c"), p2.allocate("d")]
    assert [r.start for r in got] == [10000, 12000, 14000, 16000]


def test_threads_get_disjoint_ranges(pool):
    out: dict[str, IdRange] = {}

    def take(i: int) -> None:
        out[f"c{i}"] = pool.allocate(f"c{i}")

    threads = [threading.Thread(target=take, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.start for r in out.values()) == [10000 + 2000 * i for i in range(16)]


def test_exhaustion_is_unavailable_and_changes_nothing(tmp_path):
    pool = RangePool(tmp_path / "u", UsernsSettings(base=50000, size=1000, count=2))
    pool.allocate("a")
    pool.allocate("b")
    before = (tmp_path / "u" / "ranges.json").read_bytes()
    with pytest.raises(Unavailable, match=r"no free range of 1000 host ids.*50000-51999"):
        pool.allocate("c")
    with pytest.raises(InvalidArgument, match="larger than the whole pool"):
        pool.allocate("d", 5000)
    assert (tmp_path / "u" / "ranges.json").read_bytes() == before
    pool.release("a")
    assert pool.allocate("c") == IdRange(50000, 1000)


def test_reconcile_frees_ranges_of_unknown_owners(pool):
    for owner in ("live", "dead1", "dead2"):
        pool.allocate(owner)
    assert sorted(pool.reconcile(["live", "other"])) == ["dead1", "dead2"]
    assert list(pool.allocations()) == ["live"]


def test_unreadable_or_foreign_table_is_an_error(tmp_path):
    d = tmp_path / "u"
    d.mkdir()
    (d / "ranges.json").write_text(json.dumps({"version": 9, "ranges": {}}))
    with pytest.raises(Exception, match="version 9 is not 1"):
        RangePool(d).allocate("a")


@pytest.mark.parametrize("value, want", [
    ("", ("", None)), (None, ("", None)), ("private", ("", None)), ("host", ("host", None)),
    ("auto", ("auto", None)), ("auto:size=500", ("auto", 500)), ("auto:", ("auto", None)),
])
def test_parse_mode(value, want):
    assert parse_mode(value) == want


@pytest.mark.parametrize("value, kind", [
    ("auto:size=0", InvalidArgument), ("auto:size=x", InvalidArgument),
    ("auto:uidmapping=0:1:2", InvalidArgument),
    ("keep-id", NotSupported), ("ns:/proc/1/ns/user", NotSupported), (5, InvalidArgument),
])
def test_parse_mode_rejects(value, kind):
    with pytest.raises(kind):
        parse_mode(value)


def test_validate_create_checks_usernsmode():
    B.validate_create({"Image": "x", "HostConfig": {"UsernsMode": "auto:size=100"}})
    with pytest.raises(NotSupported):
        B.validate_create({"Image": "x", "HostConfig": {"UsernsMode": "bogus"}})


@pytest.mark.parametrize("kw", [dict(default="remap"), dict(base=0), dict(size=0), dict(count=0),
                                dict(base=2**32 - 1000, size=2000, count=1)])
def test_settings_are_checked(kw):
    with pytest.raises(InvalidArgument):
        UsernsSettings(**kw)


def test_resolve_fixes_the_mode_at_create(tmp_path):
    m = UsernsManager(str(tmp_path), UsernsSettings(default="auto"))
    hc: dict = {}
    assert m.resolve(hc) == ("auto", None) and hc["UsernsMode"] == "auto"
    hc = {"UsernsMode": "host"}
    assert m.resolve(hc) == ("host", None)
    for bad in ({"NetworkMode": "host"}, {"Privileged": True}, {"PidMode": "host"}):
        with pytest.raises(InvalidArgument):
            m.resolve({"UsernsMode": "auto", **bad})
    m.configure(UsernsSettings())
    hc = {}
    assert m.resolve(hc) == ("host", None) and hc["UsernsMode"] == ""


def test_failed_create_gives_the_range_back(tmp_path):
    m = UsernsManager(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        m.on_create("c1", {"UsernsMode": "auto"}, str(tmp_path / "containers" / "missing"),
                    "pallet-runtime", [])
    assert m.pool.allocations() == {}
    assert m.on_create("c2", {"UsernsMode": "host"}, "/nonexistent", "pallet-runtime", []) is None
    assert m.pool.allocations() == {}


def test_apply_spec_user_namespace_and_idmapped_volumes(tmp_path):
    m = UsernsManager(str(tmp_path))
    m.pool.allocate("c1")
    m.pool.allocate("c2")
    vol = tmp_path / "volumes" / "v" / "_data"
    vol.mkdir(parents=True)
    host = tmp_path / "hostdir"
    host.mkdir()
    spec = {"linux": {"namespaces": [{"type": "pid"}]}, "mounts": [
        {"destination": "/v", "type": "bind", "source": str(vol), "options": ["rbind", "rw", "rprivate"]},
        {"destination": "/h", "type": "bind", "source": str(host), "options": ["rbind", "rw"]},
        {"destination": "/proc", "type": "proc", "source": "proc"}]}
    m.apply_spec("c2", "pallet-runtime", spec, {"/v": str(vol)})
    assert spec["linux"]["namespaces"] == [{"type": "pid"}, {"type": "user"}]
    assert spec["linux"]["uidMappings"] == spec["linux"]["gidMappings"] == \
        [{"containerID": 0, "hostID": 12000, "size": 2000}]
    v, h, _ = spec["mounts"]
    owner = os.stat(vol).st_uid  # a volume's ids on disk: its root's owner when that starts a range
    base = owner if owner >= 10000 and (owner - 10000) % 2000 == 0 else 0
    assert v["options"] == ["rbind", "rw", "rprivate", "idmap"]
    assert v["uidMappings"] == v["gidMappings"] == [{"containerID": base, "hostID": 12000, "size": 2000}]
    assert "uidMappings" not in h and "idmap" not in h["options"]  # host binds: as Docker, not shifted
    plain = {"linux": {}, "mounts": []}
    m.apply_spec("no-range", "pallet-runtime", plain, {})
    assert plain == {"linux": {}, "mounts": []}


def test_inspect_shows_podman_style_idmappings(tmp_path):
    m = UsernsManager(str(tmp_path))
    m.pool.allocate("c1", 65536)
    assert m.inspect_host_config("c1", {"UsernsMode": "auto:size=65536"}) == {
        "UsernsMode": "auto:size=65536",
        "IDMappings": {"UidMap": ["0:10000:65536"], "GidMap": ["0:10000:65536"]}}
    assert m.inspect_host_config("c2", {"UsernsMode": ""}) == {"UsernsMode": ""}


def test_palletd_flags_and_config_keys(tmp_path):
    from pallet.daemon.main import load_config

    conf = tmp_path / "daemon.json"
    conf.write_text(json.dumps({"userns-size": 500, "userns-count": 10}))
    cfg, _ = load_config(["--config", str(conf), "--userns-default", "auto", "--userns-base", "30000"])
    assert cfg is not None
    got = (cfg.userns_default, cfg.userns_base, cfg.userns_size, cfg.userns_count)
    assert got == ("auto", 30000, 500, 10)
    conf.write_text(json.dumps({"userns-default": "remap"}))
    with pytest.raises(InvalidArgument, match="userns-default"):
        load_config(["--config", str(conf)])
    conf.write_text(json.dumps({"userns-base": "10000"}))
    with pytest.raises(InvalidArgument, match="userns-base must be a number"):
        load_config(["--config", str(conf)])


def test_with_settings_configures_the_engine_palletd_builds():
    from pallet.engine.userns import with_settings

    class FakeEngine:
        def __init__(self) -> None:
            self.userns = UsernsManager("/nonexistent")

    built = with_settings(lambda images: FakeEngine(), UsernsSettings(default="auto", base=40000))(None)
    assert built.userns.settings == UsernsSettings(default="auto", base=40000)


def test_palletd_refuses_a_pool_past_the_id_space(tmp_path):
    from pallet.daemon.main import load_config

    conf = tmp_path / "daemon.json"
    conf.write_text("{}")
    with pytest.raises(InvalidArgument, match="passes the largest id"):
        load_config(["--config", str(conf), "--userns-base", "4294000000", "--userns-count", "1000"])


def test_idmapped_overlay_clones_each_lower_layer(tmp_path, monkeypatch):
    """The call sequence, recorded (STYLE.md §2): one idmapped clone per lower layer, relative
    lowerdirs kept short under the workspace, then detached."""
    import contextlib

    from pallet.engine import userns
    from pallet.oci.mount import Mount
    from pallet.syscalls import flags as F
    from pallet.syscalls.recording import RecordingSyscalls

    maps: list = []

    @contextlib.contextmanager
    def fake_userns(uid_maps, gid_maps):
        maps.append((uid_maps, gid_maps))
        yield 7

    monkeypatch.setattr(userns, "userns_fd", fake_userns)
    closed: list[int] = []
    monkeypatch.setattr(userns.os, "close", closed.append)  # the recorder's fds are not real
    rec = RecordingSyscalls()
    ws = tmp_path / "ws"
    m = Mount("overlay", "overlay", "", ("index=off", "lowerdir=2/fs:1/fs", "upperdir=/s/3/fs",
                                         "workdir=/s/3/work", "x-pallet.chdir=/s"))
    out = userns.idmapped_overlay(m, IdRange(12000, 2000), str(ws), rec)
    monkeypatch.undo()
    assert maps == [([{"containerID": 0, "hostID": 12000, "size": 2000}],) * 2]
    assert [(c.call, c.args.get("path") or c.args.get("target")) for c in rec.calls] == [
        ("open_tree", "/s/2/fs"), ("mount_setattr_idmap", None), ("move_mount", str(ws / "0")),
        ("open_tree", "/s/1/fs"), ("mount_setattr_idmap", None), ("move_mount", str(ws / "1"))]
    assert rec.calls[1].args == {"recursive": False}
    assert closed == [101, 102]
    assert out.options == ("index=off", "upperdir=/s/3/fs", "workdir=/s/3/work", "lowerdir=0:1",
                           f"x-pallet.chdir={ws}")
    rec.calls.clear()
    userns.detach_layers(str(ws), rec)
    assert sorted(c.args["target"] for c in rec.calls) == [str(ws / "0"), str(ws / "1")]
    assert {c.args["flags"] for c in rec.calls} == {F.MNT_DETACH}
    assert not ws.exists()


def test_a_host_only_data_root_gets_no_userns_files(tmp_path):
    pool = RangePool(tmp_path / "userns")
    assert (pool.get("x"), pool.allocations(), pool.reconcile([])) == (None, {}, [])
    pool.release("x")
    assert not (tmp_path / "userns").exists()
