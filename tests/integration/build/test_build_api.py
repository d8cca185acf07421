"""Builds through palletd (root): `pallet build` (context dir, -f outside it, stdin, --secret, -q,
--iidfile), cache-mount export/import with `pallet builder cache`, `pallet builder prune`, a gzip
context and a git `remote=` on the raw API, bad query values, and a client that hangs up mid-RUN
(its container is killed, nothing is left behind, palletd keeps serving).

palletd runs on private roots with --cgroup-parent /pallet-test-<random>, removed afterwards."""

from __future__ import annotations

import gzip
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))
from palletd_support import PALLET, palletd

from pallet_testlib import rm_cgroups

if os.geteuid() != 0:
    pytest.skip("needs root (overlay mounts, namespaces, cgroups)", allow_module_level=True)
if not os.path.exists("/bin/busybox"):
    pytest.skip("needs Debian's busybox-static (/bin/busybox)", allow_module_level=True)


@pytest.fixture(scope="module")
def daemon():
    parent = f"/pallet-test-{uuid.uuid4().hex[:8]}"
    try:
        with palletd("--cgroup-parent", parent) as d:
            r = pallet(d, "image", "bootstrap", "busybox")
            assert r.returncode == 0, r.stderr
            yield d
    finally:
        rm_cgroups(parent)


def pallet(d, *args: str, input: bytes | None = None, cwd: Path | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([*PALLET, "-H", d.host, *args], input=input, capture_output=True, timeout=120,
                       cwd=cwd, env={**os.environ, **(env or {})})
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"),
                                       r.stderr.decode(errors="replace"))


def _http(d, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
          timeout: float = 60) -> tuple[int, bytes]:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(str(d.socket))
    hdrs = {"Host": "x", "Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
    s.sendall(f"{method} {path} HTTP/1.1\r\n".encode() + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
              .encode() + b"\r\n" + body)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if b"chunked" in head.lower():
        out, buf = b"", rest
        while buf:
            size_line, _, buf = buf.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out, buf = out + buf[:size], buf[size + 2:]
        rest = out
    return status, rest


def _tar(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, text in files.items():
            data = text.encode()
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _lines(body: bytes) -> list[dict]:
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def _leftovers(d) -> list[str]:
    data, exec_root = d.root / "data", d.root / "exec"
    bad = [p.name for p in (exec_root / "build").iterdir() if p.name != "runtime"] \
        if (exec_root / "build").is_dir() else []
    rt = exec_root / "build" / "runtime"
    if rt.is_dir():
        bad += [f"runtime:{p.name}" for p in rt.iterdir() if not p.name.startswith(".")]
    with open("/proc/self/mountinfo") as f:
        bad += [line.split()[4] for line in f if str(d.root) in line.split()[4]]
    tmp = data / "build" / "tmp"
    if tmp.is_dir():
        bad += [f"tmp:{p.name}" for p in tmp.iterdir()]
    return bad


def test_pallet_build_flags(daemon, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f.txt").write_text("context file\n")
    (ctx / "ignored.log").write_text("no\n")
    (ctx / ".dockerignore").write_text("*.log\n")
    df = tmp_path / "elsewhere.Dockerfile"
    df.write_text("FROM busybox\nCOPY . /c/\n"
                  "RUN --mount=type=secret,id=tok cat /run/secrets/tok > /tok.copy; ls /c > /listing\n"
                  "ARG EPOCH_SEEN\n")
    (tmp_path / "token").write_text("s3cret")
    r = pallet(daemon, "build", "-t", "pb:1", "-f", str(df), "--secret", f"id=tok,src={tmp_path / 'token'}",
               "--iidfile", str(tmp_path / "iid"), str(ctx))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Sending build context to Pallet daemon" in r.stdout and "Step 3/4 : RUN" in r.stdout
    assert "Successfully tagged pb:1" in r.stdout
    iid = (tmp_path / "iid").read_text()
    assert iid.startswith("sha256:")
    check = tmp_path / "check"
    check.mkdir()
    (check / "Dockerfile").write_text("FROM pb:1\n"
                                      "RUN cat /tok.copy; echo; cat /listing; ls /run/secrets || true\n")
    r = pallet(daemon, "build", "--no-cache", str(check))
    assert r.returncode == 0, r.stderr
    assert "s3cret" in r.stdout and "f.txt" in r.stdout and "ignored.log" not in r.stdout
    assert ".dockerfile." not in r.stdout    # the Dockerfile from outside is not copied by COPY .
    q = pallet(daemon, "build", "-q", "-", input=b"FROM busybox\nLABEL from=stdin\n")
    assert q.returncode == 0 and q.stdout.strip().startswith("sha256:") and "Step" not in q.stdout
    bad = pallet(daemon, "build", "-", input=b"FROM busybox\nRUN exit 5\n")
    assert bad.returncode == 1 and "returned a non-zero code: 5" in bad.stderr
    assert _leftovers(daemon) == []


def test_cache_mount_export_import_and_prune(daemon, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN --mount=type=cache,id=dl,target=/dl "
                                    "sh -c 'echo payload > /dl/file; ls /dl > /seen'\n")
    assert pallet(daemon, "build", str(ctx)).returncode == 0
    ls = pallet(daemon, "builder", "cache", "ls")
    assert "dl" in ls.stdout
    out = tmp_path / "dl.tar"
    assert pallet(daemon, "builder", "cache", "export", "dl", str(out)).returncode == 0
    with tarfile.open(out) as t:
        assert t.extractfile("file").read() == b"payload\n"
    assert pallet(daemon, "builder", "cache", "import", "restored", str(out)).returncode == 0
    (ctx / "Dockerfile").write_text("FROM busybox\n"
                                    "RUN --mount=type=cache,id=restored,target=/r cat /r/file\n")
    r = pallet(daemon, "build", str(ctx))
    assert "payload" in r.stdout, r.stdout + r.stderr
    pr = pallet(daemon, "builder", "prune", "-f")
    assert pr.returncode == 0 and "cachemount:dl" in pr.stdout and "Total reclaimed space" in pr.stdout
    assert "dl" not in pallet(daemon, "builder", "cache", "ls").stdout
    missing = pallet(daemon, "builder", "cache", "export", "dl", str(out))
    assert missing.returncode == 1 and "no cache mount" in missing.stderr


def test_raw_api_gzip_context_remote_git_and_bad_queries(daemon, tmp_path):
    body = gzip.compress(_tar({"Dockerfile": "FROM busybox\nCOPY x /x\n", "x": "gz\n"}))
    status, out = _http(daemon, "POST", "/v1.43/build?t=gz:1", body, {"Content-Type": "application/x-tar"})
    msgs = _lines(out)
    assert status == 200 and any("aux" in m for m in msgs), msgs
    assert msgs[-1] == {"stream": "Successfully tagged gz:1\n"}
    status, out = _http(daemon, "POST", "/build?buildargs=notjson", body)
    assert status == 400 and b"invalid buildargs" in out
    status, out = _http(daemon, "POST", "/build?version=2", body)
    assert status == 501 and b"DOCKER_BUILDKIT=0" in out
    status, out = _http(daemon, "POST", "/build", _tar({"Dockerfile": "FROM busybox\nNOPE\n"}))
    err = _lines(out)[-1]
    assert status == 200 and "Dockerfile:2:1: unknown instruction: NOPE" in err["error"]
    assert err["errorDetail"]["message"] == err["error"]
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / "sub" / "Dockerfile").write_text("FROM busybox\nCOPY hello /hello\n")
    (repo / "sub" / "hello").write_text("from git\n")
    genv = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@x"}
    for cmd in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-qm", "x"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, env=genv)
    status, out = _http(daemon, "POST", f"/build?t=fromgit:1&remote=git%2Bfile://{repo}%23main:sub")
    assert status == 200 and _lines(out)[-1] == {"stream": "Successfully tagged fromgit:1\n"}, out


def test_client_hanging_up_mid_run_cancels_the_build(daemon):
    body = _tar({"Dockerfile": "FROM busybox\nRUN echo started; sleep 7377\n"})
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(str(daemon.socket))
    s.sendall(f"POST /build?nocache=1 HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
              + body)
    seen = b""
    while b"started" not in seen:
        chunk = s.recv(65536)
        assert chunk, seen
        seen += chunk
    s.close()
    deadline = time.monotonic() + 15
    while _leftovers(daemon) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _leftovers(daemon) == []
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert "sleep 7377" not in ps
    assert "build failed" not in daemon.log()
    assert pallet(daemon, "version").returncode == 0


def test_http_remote_tar_and_lone_dockerfile(daemon, tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    (www / "ctx.tar.gz").write_bytes(gzip.compress(_tar({"Dockerfile": "FROM busybox\nCOPY f /f\n",
                                                         "f": "remote tar\n"})))
    (www / "Dockerfile").write_text("FROM busybox\nLABEL lone=yes\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(www), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        status, out = _http(daemon, "POST", f"/build?t=remote:tar&remote={base}/ctx.tar.gz")
        assert status == 200 and _lines(out)[-1] == {"stream": "Successfully tagged remote:tar\n"}, out
        status, out = _http(daemon, "POST", f"/build?t=remote:df&remote={base}/Dockerfile")
        assert status == 200 and _lines(out)[-1] == {"stream": "Successfully tagged remote:df\n"}, out
        status, out = _http(daemon, "POST", f"/build?remote={base}/missing")
        assert "HTTP Error 404" in _lines(out)[-1]["error"]
    finally:
        server.shutdown()
        server.server_close()
    assert _leftovers(daemon) == []
