"""palletd as a real process: the CLI and the client against it, socket and pid file, shutdown,
and the TCP policy (refused in plain text, mutual TLS with certificates made by openssl)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from palletd_support import PALLET, palletd, stop, wait_for

from pallet.api.client import Client, TLSConfig
from pallet.errors import InvalidArgument, NotFound, Unavailable


def pallet(host: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PALLET, "-H", host, *args], capture_output=True, text=True, timeout=30,
                          env=env)


@pytest.fixture(scope="module")
def daemon():
    with palletd() as d:
        yield d


def test_cli_version_shows_client_and_server(daemon):
    r = pallet(daemon.host, "version")
    assert r.returncode == 0, r.stderr
    assert "Client:" in r.stdout and "Server: Pallet Engine" in r.stdout
    assert "API version:      1.50 (minimum version 1.24)" in r.stdout


def test_cli_version_json_format(daemon):
    r = pallet(daemon.host, "version", "--format", "{{json .}}")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["Server"]["ApiVersion"] == "1.50" and data["Client"]["ApiVersion"] == "1.50"
    assert pallet(daemon.host, "version", "-f", "{{.Server.MinAPIVersion}}").stdout == "1.24\n"


def test_cli_info(daemon):
    r = pallet(daemon.host, "info")
    assert r.returncode == 0, r.stderr
    assert " Containers: 0" in r.stdout and " Storage Driver: overlayfs" in r.stdout
    assert f" Pallet Root Dir: {daemon.root / 'data'}" in r.stdout
    r = pallet(daemon.host, "info", "--format", "{{.CgroupVersion}}")
    assert r.stdout.strip() in ("1", "2")


def test_cli_uses_pallet_host_env(daemon):
    env = {**os.environ, "PALLET_HOST": daemon.host}
    r = subprocess.run([*PALLET, "version", "-f", "{{.Server.Version}}"], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 0 and r.stdout.strip()


def test_cli_without_daemon_is_one_line_and_exit_1(tmp_path):
    r = pallet(f"unix://{tmp_path}/none.sock", "info")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "is palletd running?" in r.stderr
    assert "Traceback" not in r.stderr


def test_client_negotiates_and_reads(daemon):
    c = Client(daemon.host)
    assert c.ping()["Api-Version"] == "1.50"
    assert c.api_version == "1.50"
    assert c.version()["MinAPIVersion"] == "1.24"
    info = c.info()
    assert info["DockerRootDir"] == str(daemon.root / "data") and info["OSType"] == "linux"


def test_client_older_version_and_errors(daemon):
    old = Client(daemon.host, version="1.24")
    assert old.version()["ApiVersion"] == "1.50"
    with pytest.raises(InvalidArgument, match="too new"):
        Client(daemon.host, version="1.99").version()
    with pytest.raises(NotFound, match="page not found"):
        Client(daemon.host).get_json("/nope/json")
    with pytest.raises(NotFound, match="No such container: nope"):
        Client(daemon.host).get_json("/containers/nope/json")


def test_socket_and_pid_file(daemon):
    st = os.stat(daemon.socket)
    try:
        import grp

        gid = grp.getgrnam("pallet").gr_gid
        assert (st.st_mode & 0o777, st.st_gid) == (0o660, gid)
    except KeyError:
        assert st.st_mode & 0o777 == 0o600
    pid = (daemon.root / "exec" / "palletd.pid").read_text().strip()
    assert pid == str(daemon.proc.pid)


def test_second_daemon_on_same_exec_root_refuses(daemon):
    r = subprocess.run([*PALLET[:1], "-m", "pallet.daemon.main", "--config", str(daemon.root / "daemon.json"),
                        "--data-root", str(daemon.root / "data"), "--exec-root", str(daemon.root / "exec"),
                        "-H", f"unix://{daemon.root}/other.sock"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "already running" in r.stderr
    assert Client(daemon.host).ping()  # the first one is untouched


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_shutdown_removes_socket_and_pid_file(sig):
    with palletd() as d:
        assert stop(d.proc, sig) == 0
        assert not d.socket.exists()
        assert not (d.root / "exec" / "palletd.pid").exists()
        assert "palletd stopped" in d.log()


def test_stale_socket_after_kill_is_replaced():
    with palletd() as d:
        stop(d.proc, signal.SIGKILL)
        assert d.socket.exists()
        with palletd(root=d.root) as again:
            assert Client(again.host).ping()["Api-Version"] == "1.50"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_plain_tcp_is_refused():
    port = free_port()
    with palletd("-H", f"tcp://127.0.0.1:{port}", wait=False) as d:
        assert d.proc.wait(30) == 1
        assert "without mutual TLS" in d.log()
    with palletd("-H", f"tcp://0.0.0.0:{port}", "--insecure-tcp-loopback", wait=False) as d:
        assert d.proc.wait(30) == 1
        assert "only loopback" in d.log()


def test_insecure_loopback_tcp_when_asked():
    port = free_port()
    with palletd("-H", f"tcp://127.0.0.1:{port}", "--insecure-tcp-loopback") as d:
        assert Client(f"tcp://127.0.0.1:{port}", tls=None).version()["ApiVersion"] == "1.50"
        info = Client(f"tcp://127.0.0.1:{port}").info()
        assert any("without encryption" in w for w in info["Warnings"])
        assert "without encryption" in d.log()


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    d = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=pallet test CA", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-out", f"{name}-cert.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return d


def test_mutual_tls(certs):
    port = free_port()
    tls_flags = ["--tlsverify", "--tlscacert", str(certs / "ca.pem"), "--tlscert",
                 str(certs / "server-cert.pem"), "--tlskey", str(certs / "server-key.pem")]
    with palletd("-H", f"tcp://127.0.0.1:{port}", *tls_flags) as d:
        good = TLSConfig(str(certs / "ca.pem"), str(certs / "client-cert.pem"), str(certs / "client-key.pem"))
        assert Client(f"tcp://127.0.0.1:{port}", tls=good).version()["ApiVersion"] == "1.50"
        r = subprocess.run([*PALLET, "-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert",
                            str(certs / "ca.pem"), "--tlscert", str(certs / "client-cert.pem"), "--tlskey",
                            str(certs / "client-key.pem"), "version", "-f", "{{.Server.ApiVersion}}"],
                           capture_output=True, text=True, timeout=30)
        assert (r.returncode, r.stdout) == (0, "1.50\n"), r.stderr
        # No client certificate: the handshake fails, the request never reaches the API.
        with pytest.raises(Unavailable):
            Client(f"tcp://127.0.0.1:{port}", tls=TLSConfig(str(certs / "ca.pem"))).ping()
        # Plain HTTP to the TLS port gets nothing useful either.
        with pytest.raises(Unavailable):
            Client(f"tcp://127.0.0.1:{port}", tls=None).ping()
        assert d.proc.poll() is None  # refused clients do not hurt the daemon
        assert Client(f"tcp://localhost:{port}", tls=good).ping()["Api-Version"] == "1.50"


def test_tls_server_socket_rejects_certless_handshake(certs):
    port = free_port()
    with palletd("-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(certs / "ca.pem"),
                 "--tlscert", str(certs / "server-cert.pem"), "--tlskey", str(certs / "server-key.pem")):
        ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        # TLS 1.3 reports the missing certificate on the first read, not in the handshake.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s, \
                pytest.raises((ssl.SSLError, ConnectionResetError)):
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
            if not s.recv(1024):
                raise ConnectionResetError("closed")


def test_tlsverify_without_files_is_a_clear_error():
    with palletd("-H", f"tcp://127.0.0.1:{free_port()}", "--tlsverify", wait=False) as d:
        assert d.proc.wait(30) == 1
        assert "--tlsverify needs --tlscacert, --tlscert, --tlskey" in d.log()


def test_bad_config_file_is_a_clear_error(tmp_path):
    (tmp_path / "bad.json").write_text('{"data-root": 5}')
    r = subprocess.run([*PALLET[:1], "-m", "pallet.daemon.main", "--config", str(tmp_path / "bad.json")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr == f"palletd: config file {tmp_path}/bad.json: data-root must be a string\n"


def test_daemon_stays_up_under_garbage(daemon):
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(daemon.socket))
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        s.settimeout(5)
        assert s.recv(100).split(b"\r\n")[0].endswith(b" 400 Bad Request")
    wait_for(lambda: Client(daemon.host).ping() is not None, what="ping after garbage")
    time.sleep(0.1)
    assert daemon.proc.poll() is None


def test_a_stopping_daemon_leaves_a_newer_daemons_socket_and_pid_file(tmp_path):
    """The exec-root of a running palletd is wiped and a second palletd starts on the same paths;
    when the first one stops it must not unlink the second one's socket or pid file."""
    root = Path(tempfile.mkdtemp(prefix="pd", dir="/tmp"))
    try:
        with palletd(root=root) as first:
            os.unlink(first.socket)
            os.unlink(root / "exec" / "palletd.pid")
            with palletd(root=root) as second:
                stop(first.proc)
                assert second.socket.exists()
                assert (root / "exec" / "palletd.pid").read_text().strip() == str(second.proc.pid)
                assert Client(second.host).ping()
    finally:
        shutil.rmtree(root, ignore_errors=True)
