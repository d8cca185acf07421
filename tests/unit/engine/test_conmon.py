"""conmon's side of the engine without conmon: its command line, exit file, k8s-file log lines,
and the attach bridge against a recording stand-in for conmon's SEQPACKET attach socket."""

from __future__ import annotations

import os
import socket
import time

import pytest

from pallet.engine import conmon
from pallet.engine.logs import parse_line, read_logs


def test_argv_passes_the_runtime_its_root_and_log(tmp_path):
    args = conmon.argv(cid="c" * 64, runtime=["/usr/bin/python3", "-m", "pallet.runtime.cli"],
                       runtime_root="/run/p/runtime/x", bundle="/var/lib/p/c", exec_dir="/run/p/c",
                       log_path="/var/lib/p/c/c-json.log", log_max_size=3000, tty=False,
                       open_stdin=True, stdin_once=False)
    assert args[:2] == ["conmon", "--api-version"]
    assert args[args.index("-r") + 1] == "/usr/bin/python3"
    runtime_args = [args[i + 1] for i, a in enumerate(args) if a == "--runtime-arg"]
    assert runtime_args == ["-m", "pallet.runtime.cli", "--root", "/run/p/runtime/x", "--log",
                            "/run/p/c/runtime.log", "--log-format", "json"]
    assert args[args.index("-l") + 1] == "k8s-file:/var/lib/p/c/c-json.log"
    assert args[args.index("--log-size-max") + 1] == "3000"
    assert "-i" in args and "--leave-stdin-open" in args and "-t" not in args  # OpenStdin, not StdinOnce
    # Nothing the engine does not use: each string costs conmon heap (issue 4, see conmon.argv).
    assert not {"-n", "-0", "--persist-dir", "--socket-dir-path"} & set(args)
    once = conmon.argv(cid="c", runtime=["runc"], runtime_root="/r", bundle="/b", exec_dir="/x", log_path="",
                       log_max_size=0, tty=True, open_stdin=True, stdin_once=True)
    assert "--leave-stdin-open" not in once and "-t" in once
    assert once[once.index("-l") + 1] == "none:"  # LogConfig "none"
    assert os.path.isabs(once[once.index("-r") + 1])  # conmon refuses a bare name


def test_read_exit(tmp_path):
    assert conmon.read_exit(str(tmp_path), "abc") is None  # conmon died without writing it
    (tmp_path / "abc").write_text("137")
    code, finished = conmon.read_exit(str(tmp_path), "abc")  # type: ignore[misc]
    assert code == 137 and abs(finished - time.time_ns()) < 60 * 10**9
    (tmp_path / "abc").write_text("")
    assert conmon.read_exit(str(tmp_path), "abc") is None


def test_k8s_file_lines_read_as_dockers_records(tmp_path):
    log = tmp_path / "c.log"
    log.write_bytes(b"2024-05-01T12:00:00.000000001+02:00 stdout F hello\n"
                    b"2024-05-01T12:00:00.000000002+02:00 stdout P / # \n"
                    b"2024-05-01T12:00:00.000000003+02:00 stderr F  two  spaces\n"
                    b'{"log":"old json\\n","stream":"stdout","time":"2024-05-01T10:00:00.5Z"}\n'
                    b"garbage\n"
                    b"2024-05-01T12:00:01+02:00 stdout F torn")  # no newline yet: not read
    assert list(read_logs(str(log))) == [("stdout", b"hello\n"), ("stdout", b"/ # "),
                                         ("stderr", b" two  spaces\n"), ("stdout", b"old json\n")]
    stamped = list(read_logs(str(log), timestamps=True, stdout=False))
    assert stamped == [("stderr", b"2024-05-01T10:00:00.000000003Z  two  spaces\n")]  # UTC, as Docker
    assert parse_line(b"2024-05-01T12:00:00Z stdin F x") is None


@pytest.fixture
def fake_conmon(tmp_path):
    """A listening SEQPACKET socket at <bundle>/attach, as conmon's --full-attach makes it."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    srv.bind(str(tmp_path / "attach"))
    srv.listen(4)
    srv.settimeout(5)
    yield tmp_path, srv
    srv.close()


def _read_all(s: socket.socket) -> bytes:
    s.settimeout(5)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def test_bridge_reframes_output_and_forwards_stdin_and_its_eof(fake_conmon):
    bundle, srv = fake_conmon
    client = conmon.attach(str(bundle), tty=False)
    peer, _ = srv.accept()
    peer.settimeout(5)
    peer.send(bytes([conmon.STDOUT_PIPE]) + b"out\n")
    peer.send(bytes([conmon.STDERR_PIPE]) + b"err\n")
    client.sendall(b"typed")
    assert peer.recv(100) == b"typed"  # stdin goes to conmon as is
    client.shutdown(socket.SHUT_WR)
    assert peer.recv(100) == b""  # stdin's EOF reaches conmon as a shutdown
    peer.send(bytes([conmon.STDOUT_PIPE]) + b"after eof\n")  # output still comes
    peer.close()
    data = _read_all(client)
    assert data == (bytes([1, 0, 0, 0]) + (4).to_bytes(4, "big") + b"out\n"
                    + bytes([2, 0, 0, 0]) + (4).to_bytes(4, "big") + b"err\n"
                    + bytes([1, 0, 0, 0]) + (10).to_bytes(4, "big") + b"after eof\n")


def test_bridge_tty_is_raw_and_a_gone_caller_lets_go(fake_conmon):
    bundle, srv = fake_conmon
    client = conmon.attach(str(bundle), tty=True)
    peer, _ = srv.accept()
    peer.settimeout(5)
    peer.send(bytes([conmon.STDOUT_PIPE]) + b"\x1b[1m/ # ")
    client.settimeout(5)
    assert client.recv(100) == b"\x1b[1m/ # "
    client.close()
    assert peer.recv(100) == b""  # the bridge closed its connection to conmon
    peer.close()


def test_attach_without_conmon_is_an_oserror(tmp_path):
    with pytest.raises(OSError):
        conmon.attach(str(tmp_path), tty=False)
