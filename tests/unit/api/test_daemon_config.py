"""palletd's flags, config file and listener policy (no sockets bound except in tmp dirs)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from pallet.daemon.config import DaemonConfig, load_file, merge
from pallet.daemon.hostinfo import cgroup_features, os_release
from pallet.daemon.listeners import Address, check_tcp_allowed, parse_address, unix_listener
from pallet.daemon.main import load_config
from pallet.errors import AlreadyExists, InvalidArgument, PermissionDenied


def test_file_and_flags_merge(tmp_path):
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps({"data-root": "/srv/pallet", "labels": ["a=b"], "log-level": "debug"}))
    config, _ = load_config(["--config", str(cfg), "--exec-root", "/run/p", "-H", "unix:///run/p/x.sock"])
    assert config is not None
    assert (config.data_root, config.exec_root, config.labels, config.log_level, config.hosts) == (
        "/srv/pallet", "/run/p", ("a=b",), "debug", ("unix:///run/p/x.sock",))
    assert config.effective_pidfile == "/run/p/palletd.pid"


def test_monitor_flag_and_file():
    config, _ = load_config(["--monitor", "pallet"])
    assert config is not None and config.monitor == "pallet"
    config, _ = load_config([])
    assert config is not None and config.monitor == ""  # conmon when installed (Engine decides)


def test_default_socket_follows_exec_root():
    assert DaemonConfig(exec_root="/run/x").effective_hosts == ("unix:///run/x/pallet.sock",)


def test_same_setting_in_flag_and_file_is_an_error(tmp_path):
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps({"data-root": "/srv/pallet"}))
    with pytest.raises(InvalidArgument, match=r"both as a flag and in .*data-root"):
        load_config(["--config", str(cfg), "--data-root", "/other"])


@pytest.mark.parametrize(("content", "match"), [
    ("{", "not valid JSON"), ("[]", "JSON object"), ('{"data_root": "/x"}', "unknown directive"),
    ('{"tlsverify": "yes"}', "must be a boolean"), ('{"hosts": "unix:///x"}', "list of strings"),
    ('{"log-level": "loud"}', "log-level"), ('{"monitor": "runc"}', "want conmon or pallet")])
def test_bad_config_files(tmp_path, content, match):
    cfg = tmp_path / "daemon.json"
    cfg.write_text(content)
    with pytest.raises(InvalidArgument, match=match):
        merge({}, load_file(str(cfg), required=True), str(cfg))


def test_missing_config_only_matters_when_named(tmp_path):
    assert load_file(str(tmp_path / "none.json"), required=False) == {}
    with pytest.raises(InvalidArgument, match="does not exist"):
        load_file(str(tmp_path / "none.json"), required=True)


def test_relative_roots_are_refused():
    with pytest.raises(InvalidArgument, match="absolute"):
        merge({"data_root": "rel"}, {}, "x")


@pytest.mark.parametrize(("value", "addr"), [
    ("unix:///run/a.sock", Address("unix", path="/run/a.sock")),
    ("unix://", Address("unix", path="/run/pallet/pallet.sock")),
    ("tcp://127.0.0.1:2376", Address("tcp", host="127.0.0.1", port=2376)),
    ("tcp://:2377", Address("tcp", host="0.0.0.0", port=2377)),
    ("tcp://[::1]:5000", Address("tcp", host="::1", port=5000)),
    ("tcp://localhost", Address("tcp", host="localhost", port=2376)),
])
def test_parse_address(value, addr):
    assert parse_address(value, "unix:///run/pallet/pallet.sock") == addr


@pytest.mark.parametrize("value", ["fd://", "/run/x.sock", "unix://rel.sock", "tcp://h:port", "tcp://h:70000"])
def test_parse_address_errors(value):
    with pytest.raises(InvalidArgument):
        parse_address(value, "unix:///run/pallet/pallet.sock")


def test_tcp_policy():
    lo, any_ = Address("tcp", host="127.0.0.1", port=1), Address("tcp", host="0.0.0.0", port=1)
    with pytest.raises(PermissionDenied, match="without mutual TLS"):
        check_tcp_allowed(lo, DaemonConfig())
    with pytest.raises(PermissionDenied, match="only loopback"):
        check_tcp_allowed(any_, DaemonConfig(insecure_tcp_loopback=True))
    assert check_tcp_allowed(lo, DaemonConfig(insecure_tcp_loopback=True)) is False
    assert check_tcp_allowed(any_, DaemonConfig(tlsverify=True)) is True
    assert check_tcp_allowed(Address("tcp", host="::1", port=1), DaemonConfig(insecure_tcp_loopback=True)) \
        is False


def test_unix_listener_mode_and_stale_socket(tmp_path):
    path = str(tmp_path / "s.sock")
    sock = unix_listener(path, group="no-such-group-here")
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # no group: root only
        with pytest.raises(AlreadyExists, match="another daemon"):
            unix_listener(path, group="")
    finally:
        sock.close()
    # The listener is gone, the file stays: a stale socket is replaced.
    sock = unix_listener(path, group="")
    sock.close()
    (tmp_path / "file").write_text("x")
    with pytest.raises(AlreadyExists, match="not a socket"):
        unix_listener(str(tmp_path / "file"), group="")


def test_unix_listener_gives_the_socket_to_an_existing_group(tmp_path):
    import grp

    gid = os.getgid()
    name = grp.getgrgid(gid).gr_name
    sock = unix_listener(str(tmp_path / "g.sock"), group=name)
    try:
        st = os.stat(tmp_path / "g.sock")
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o660, gid)
    finally:
        sock.close()


def test_os_release_and_cgroup_features(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").write_text(
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\n')
    assert os_release(tmp_path / "etc")["PRETTY_NAME"] == "Debian GNU/Linux 12 (bookworm)"
    cg = tmp_path / "cg"
    cg.mkdir()
    (cg / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    feats = cgroup_features(cg, 2)
    assert feats["MemoryLimit"] and feats["CPUSet"] and feats["PidsLimit"]
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text("0")
    feats = cgroup_features(v1, 1)
    assert feats["MemoryLimit"] and not feats["SwapLimit"] and not feats["PidsLimit"]
