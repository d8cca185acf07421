"""VolumeStore (pallet.engine.volumes) and the volume side of bundle.py, no containers run."""

from __future__ import annotations

import json
import os

import pytest

from pallet.engine import bundle as B
from pallet.engine.volumes import ANONYMOUS_LABEL, VolumeStore
from pallet.errors import Conflict, InvalidArgument, NotFound, NotSupported


@pytest.fixture
def store(tmp_path):
    used: dict[str, list[str]] = {}
    s = VolumeStore(tmp_path, lambda name: used.get(name, []))
    s.used = used  # type: ignore[attr-defined]
    return s


def test_create_get_record(store, tmp_path):
    v = store.create("v1", "local", {"a": "b"})
    assert v == {"CreatedAt": v["CreatedAt"], "Driver": "local", "Labels": {"a": "b"},
                 "Mountpoint": str(tmp_path / "volumes" / "v1" / "_data"), "Name": "v1", "Options": {},
                 "Scope": "local"}
    assert os.path.isdir(v["Mountpoint"])
    rec = json.loads((tmp_path / "volumes" / "v1" / "volume.json").read_text())
    assert rec["version"] == 1 and rec["Name"] == "v1" and rec["Scope"] == "local"
    assert store.get("v1") == v
    assert store.create("v1", labels={"other": "x"}) == v  # existing: returned as it is
    assert VolumeStore(tmp_path).get("v1") == v  # reloaded from disk


def test_create_random_and_anonymous(store):
    v = store.create()
    assert len(v["Name"]) == 64 and int(v["Name"], 16) >= 0 and ANONYMOUS_LABEL not in v["Labels"]
    a = store.create(anonymous=True)
    assert a["Labels"] == {ANONYMOUS_LABEL: ""}


@pytest.mark.parametrize("kw, err", [
    ({"name": "a"}, InvalidArgument), ({"name": "../x"}, InvalidArgument), ({"name": "-x"}, InvalidArgument),
    ({"name": "ok", "driver": "nfs"}, NotFound), ({"name": "ok", "options": {"type": "tmpfs"}}, NotSupported),
])
def test_create_errors(store, kw, err):
    with pytest.raises(err):
        store.create(**kw)
    assert store.list() == []


def test_get_missing(store):
    with pytest.raises(NotFound, match="no such volume"):
        store.get("nope")
    with pytest.raises(NotFound):
        store.get("../etc")


def test_list_filters(store):
    store.create("web-data", labels={"app": "web"})
    store.create("db-data", labels={"app": "db", "tier": "x"})
    store.used["db-data"] = ["c1"]

    def names(**f):
        return [v["Name"] for v in store.list({k: [v] for k, v in f.items()})]

    assert names() == ["db-data", "web-data"]
    assert names(name="web") == ["web-data"]
    assert names(label="app") == ["db-data", "web-data"]
    assert names(label="app=db") == ["db-data"]
    assert store.list({"label!": ["tier"]})[0]["Name"] == "web-data"
    assert names(dangling="true") == ["web-data"]
    assert names(dangling="0") == ["db-data"]
    assert names(driver="local") == ["db-data", "web-data"]
    with pytest.raises(InvalidArgument):
        store.list({"bogus": ["1"]})
    with pytest.raises(InvalidArgument):
        store.list({"dangling": ["maybe"]})


def test_remove_in_use_and_force(store):
    v = store.create("v1")
    store.used["v1"] = ["c1", "c2"]
    with pytest.raises(Conflict, match=r"remove v1: volume is in use - \[c1 c2\]"):
        store.remove("v1")
    with pytest.raises(Conflict):
        store.remove("v1", force=True)
    store.used.clear()
    store.remove("v1")
    assert not os.path.exists(os.path.dirname(v["Mountpoint"]))
    with pytest.raises(NotFound):
        store.remove("v1")
    store.remove("v1", force=True)  # force: a missing volume is fine


def test_prune(store):
    named = store.create("named")
    anon = store.create(anonymous=True)
    busy = store.create(anonymous=True)
    store.used[busy["Name"]] = ["c1"]
    with open(os.path.join(anon["Mountpoint"], "f"), "w") as f:
        f.write("x" * 100)
    assert store.prune() == ([anon["Name"]], 100)
    assert store.prune({"all": ["true"], "label": ["nope"]}) == ([], 0)
    assert store.prune({"all": ["1"]}) == ([named["Name"]], 0)
    assert [v["Name"] for v in store.list()] == [busy["Name"]]
    with pytest.raises(InvalidArgument):
        store.prune({"dangling": ["true"]})


# --- bundle.py ------------------------------------------------------------------------------------

def test_volume_requests():
    hc = {"Binds": ["v1:/data:ro", "/srv:/srv"],
          "Mounts": [{"Type": "volume", "Source": "v2", "Target": "/m"},
                     {"Type": "volume", "Target": "/anon"}],
          "Tmpfs": {"/t": ""}}
    cfg, hc = B.validate_create({"Image": "busybox", "Volumes": {"/req": {}, "/data": {}}, "HostConfig": hc})
    reqs = B.volume_requests({"Volumes": {"/img": {}, "/t": {}, "/srv": {}}}, cfg, hc)
    assert reqs == [{"Name": "v1", "Destination": "/data", "RW": False},
                    {"Name": "v2", "Destination": "/m", "RW": True},
                    {"Name": "", "Destination": "/anon", "RW": True},
                    {"Name": "", "Destination": "/img", "RW": True},
                    {"Name": "", "Destination": "/req", "RW": True}]


def test_build_spec_binds_volumes():
    cfg, hc = B.validate_create({"Image": "busybox", "HostConfig": {
        "Binds": ["v1:/data:ro"],
        "Mounts": [{"Type": "volume", "Source": "v2", "Target": "/m", "ReadOnly": True}]}})
    vols = {"/data": "/vol/v1/_data", "/m": "/vol/v2/_data", "/img": "/vol/x/_data"}
    spec = B.build_spec({"Cmd": ["sh"]}, cfg, hc, cid="ab" * 32, rootfs="/r", cgroup_parent="/p",
                        volumes=vols)
    mounts = {m["destination"]: m for m in spec["mounts"]}
    assert mounts["/data"] == {"destination": "/data", "type": "bind", "source": "/vol/v1/_data",
                               "options": ["rbind", "ro", "rprivate"]}
    assert mounts["/m"]["source"] == "/vol/v2/_data" and "ro" in mounts["/m"]["options"]
    assert mounts["/img"]["source"] == "/vol/x/_data" and "rw" in mounts["/img"]["options"]
    with pytest.raises(InvalidArgument, match="no volume"):
        B.build_spec({"Cmd": ["sh"]}, cfg, hc, cid="ab" * 32, rootfs="/r", cgroup_parent="/p")


@pytest.mark.parametrize("hc", [{"Binds": ["a:/x"]}, {"Binds": ["x y:/x"]},
                                {"Mounts": [{"Type": "volume", "Source": "v1", "Target": "rel"}]},
                                {"Mounts": [{"Type": "volume", "Source": "../x", "Target": "/x"}]}])
def test_invalid_volume_mounts(hc):
    with pytest.raises(InvalidArgument):
        B.validate_create({"Image": "busybox", "HostConfig": hc})
