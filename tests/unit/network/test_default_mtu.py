"""dockerd's --mtu / daemon.json "mtu": parsed and checked by the daemon's config, applied by
the network manager to the default bridge network (and only to it), kept across restarts."""

from __future__ import annotations

import json
import types

import pytest

from pallet.daemon.main import load_config
from pallet.engine.networking import EngineNetworking, with_ip_forward
from pallet.errors import InvalidArgument
from pallet.network.manager import OPT_MTU, NetworkManager
from pallet.network.netlink import RecordingNetlink
from pallet_testlib import FakeNetns, NullFirewall


def _manager(tmp_path, nl: RecordingNetlink) -> NetworkManager:
    return NetworkManager(str(tmp_path / "data"), str(tmp_path / "run"), netlink=nl,
                          firewall=NullFirewall(), netns=FakeNetns(),  # type: ignore[arg-type]
                          sysctl_root=str(tmp_path / "sys"), sys_root=str(tmp_path / "sys"))


def test_flag_and_file(tmp_path):
    assert load_config(["--mtu", "9000"])[0].mtu == 9000  # type: ignore[union-attr]
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps({"mtu": 1450}))
    assert load_config(["--config", str(cfg)])[0].mtu == 1450  # type: ignore[union-attr]
    cfg.write_text(json.dumps({}))
    assert load_config(["--config", str(cfg)])[0].mtu == 1500  # type: ignore[union-attr]


@pytest.mark.parametrize("value", [-1, 67, 65536, True])
def test_bad_mtu_is_refused(tmp_path, value):
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps({"mtu": value}))
    with pytest.raises(InvalidArgument, match="invalid default MTU"):
        load_config(["--config", str(cfg)])


def test_mtu_must_be_a_number(tmp_path):
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps({"mtu": "9000"}))
    with pytest.raises(InvalidArgument, match="mtu must be a number"):
        load_config(["--config", str(cfg)])


def test_default_bridge_takes_the_mtu_user_networks_do_not(tmp_path):
    nl = RecordingNetlink()
    m = _manager(tmp_path, nl)
    assert m.inspect("bridge")["Options"][OPT_MTU] == "1500"
    m.set_default_mtu(9000)
    assert m.inspect("bridge")["Options"][OPT_MTU] == "9000"
    m.create({"Name": "app"})
    assert OPT_MTU not in m.inspect("app")["Options"]
    cid, other = "a" * 64, "b" * 64
    m.configure(cid, "one", "bridge", {"bridge": {}}, [])
    m.configure(other, "two", "app", {"app": {}}, [])
    m.setup(cid)
    m.setup(other)
    reqs = {c: m.container(c)["endpoints"] for c in (cid, other)}
    mtus = {c: nl.links[next(iter(eps.values()))["veth"]]["req"].mtu for c, eps in reqs.items()}
    assert mtus == {cid: 9000, other: 1500}
    assert ("ensure_bridge", (m.default_bridge, nl.calls[0][1][1], 9000)) in nl.calls
    m.teardown(cid)
    m.teardown(other)
    again = _manager(tmp_path, RecordingNetlink())  # a restarted daemon keeps the record
    assert again.inspect("bridge")["Options"][OPT_MTU] == "9000"
    again.set_default_mtu(0)  # dockerd: 0 is the default
    assert again.inspect("bridge")["Options"][OPT_MTU] == "1500"
    with pytest.raises(InvalidArgument, match="invalid default MTU"):
        again.set_default_mtu(65536)


def test_engine_networking_and_the_daemon_wrapper_apply_it(tmp_path):
    m = _manager(tmp_path, RecordingNetlink())
    net = EngineNetworking(types.SimpleNamespace(), manager=m)  # type: ignore[arg-type]
    net.set_default_mtu(1400)
    assert m.inspect("bridge")["Options"][OPT_MTU] == "1400"
    engine = types.SimpleNamespace(networking=net)
    built = with_ip_forward(lambda _images: engine, False, mtu=1300)(None)
    assert built is engine and m.inspect("bridge")["Options"][OPT_MTU] == "1300"
    assert m.ip_forward is False
