"""The pallet CLI's container verbs against a real palletd (root): run, ps, exec, logs, stop, rm,
exit statuses, and `run -it busybox sh` at a terminal (a pty)."""

from __future__ import annotations

import os
import secrets
import select
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from palletd_support import PALLET, palletd

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (palletd runs containers)")

CGROUP_PARENT = f"/pallet-test-{secrets.token_hex(4)}"


def _has_cgroup_parent_flag() -> bool:
    out = subprocess.run([sys.executable, "-m", "pallet.daemon.main", "--help"], capture_output=True,
                         text=True).stdout
    return "--cgroup-parent" in out


@pytest.fixture(scope="module")
def daemon() -> Iterator[str]:
    if not _has_cgroup_parent_flag():
        pytest.skip("palletd has no --cgroup-parent flag: containers would land under /pallet")
    with palletd("--cgroup-parent", CGROUP_PARENT) as d:
        r = pallet(d.host, "image", "bootstrap", "busybox")
        assert r.returncode == 0, r.stderr + d.log()
        yield d.host
    # The parent and whatever the containers left in every hierarchy (v1 has one per controller).
    from pallet.cgroups import create_cgroup_manager

    create_cgroup_manager(CGROUP_PARENT).destroy()


def pallet(host: str, *args: str, input: str | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PALLET, "-H", host, *args], capture_output=True, text=True, input=input,
                          timeout=timeout)


def test_run_prints_and_exits_with_status(daemon):
    r = pallet(daemon, "run", "--rm", "busybox", "echo", "hi")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")
    r = pallet(daemon, "run", "--rm", "busybox", "sh", "-c", "exit 3")
    assert r.returncode == 3
    r = pallet(daemon, "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (r.stdout, r.stderr) == ("out\n", "err\n")
    assert pallet(daemon, "ps", "-a", "-q").stdout == ""  # --rm removed them


def test_run_stdin_and_errors(daemon):
    r = pallet(daemon, "run", "-i", "--rm", "busybox", "cat", input="piped\n")
    assert (r.returncode, r.stdout) == (0, "piped\n")
    r = pallet(daemon, "run", "--rm", "busybox", "/no/such/cmd")
    assert r.returncode in (126, 127), r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2 and "Traceback" not in r.stderr
    # A registry nobody serves (loopback port 1): the pull fails at once, no traffic leaves.
    r = pallet(daemon, "run", "--rm", "localhost:1/nosuchimage")
    assert r.returncode == 125
    assert r.stderr.startswith("Unable to find image 'localhost:1/nosuchimage:latest' locally\n"
                               "pallet: Error response from daemon:"), r.stderr


def test_detached_lifecycle(daemon):
    r = pallet(daemon, "run", "-d", "--name", "web", "-e", "GREETING=hello", "busybox",
               "sh", "-c", "echo started; exec sleep 1000")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert len(cid) == 64
    try:
        ps = pallet(daemon, "ps")
        lines = ps.stdout.splitlines()
        assert lines[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS",
                                    "NAMES"]
        assert any(ln.startswith(cid[:12]) and ln.endswith("web") and " Up " in ln
                   for ln in lines[1:]), ps.stdout
        assert pallet(daemon, "ps", "--format", "{{.Names}} {{.State}}").stdout == "web running\n"
        r = pallet(daemon, "exec", "web", "echo", "hi")
        assert (r.returncode, r.stdout) == (0, "hi\n")
        r = pallet(daemon, "exec", "-e", "X=1", "web", "sh", "-c", 'echo "$GREETING $X"; exit 7')
        assert (r.returncode, r.stdout) == (7, "hello 1\n")
        deadline = time.monotonic() + 5
        while ("started" not in (logs := pallet(daemon, "logs", "web").stdout)
               and time.monotonic() < deadline):
            time.sleep(0.1)
        assert logs == "started\n"
        fmt = pallet(daemon, "inspect", "--format",
                     "{{.Name}} {{.State.Status}} {{range .Config.Env}}{{.}};{{end}}", "web")
        assert fmt.stdout.startswith("/web running ") and "GREETING=hello;" in fmt.stdout
        assert pallet(daemon, "top", "web").stdout.count("sleep") == 1
        assert pallet(daemon, "stop", "-t", "1", "web").stdout == "web\n"
        assert pallet(daemon, "wait", "web").stdout.strip() in ("137", "143")
        assert "Exited" in pallet(daemon, "ps", "-a").stdout
    finally:
        r = pallet(daemon, "rm", "-f", "web")
    assert (r.returncode, r.stdout) == (0, "web\n")
    r = pallet(daemon, "rm", "web")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert r.stderr.startswith("Error response from daemon: ")


def test_run_it_at_a_terminal(daemon):
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a real terminal
        os.execv(sys.executable, [sys.executable, "-m", "pallet.cli.main", "-H", daemon,
                                  "run", "-it", "--rm", "busybox", "sh"])
    out = b""

    def read_for(seconds: float, until: bytes | None = None) -> None:
        nonlocal out
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until in out):
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # EIO: the CLI exited and closed the terminal
                    return
                if not data:
                    return
                out += data

    read_for(15, until=b"# ")
    assert b"# " in out, out  # the prompt shows before anything is typed (it has no newline)
    os.write(fd, b"echo in-tty; exit 4\r")
    read_for(15)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert b"in-tty\r\n" in out, out
    assert os.waitstatus_to_exitcode(status) == 4
