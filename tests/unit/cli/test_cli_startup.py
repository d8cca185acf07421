"""What keeps `pallet` quick to start and to finish: the modules the hot verbs load, argparse's
terminal width read once, container paths without urllib, the exit without interpreter teardown,
and `pallet run` overlapping its attach with its wait (issue 4: `run --rm` latency)."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from pallet.api.client import Client
from pallet.cli.commands import container, run
from pallet_testlib import FakeDaemon


def _python(code: str, *, argv: list[str] | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *(argv or [])], capture_output=True, text=True,
                          timeout=60, env=env)


def test_hot_verbs_load_no_typing_shutil_or_urllib():
    """`pallet run`, `ps`, `version` and `images`: parsing their flags, building a container path
    and a request load none of typing (~3 ms), shutil (~2.5 ms with bz2/lzma), urllib.parse
    (~2 ms), socket (~2 ms: the client uses _socket)."""
    code = ("import sys\n"
            "from pallet.cli.commands import run, ps, version, images, attach, container\n"
            "import pallet.cli.format, pallet.cli.main\n"
            "run.build_parser().parse_args(['--rm', '--network', 'none', 'busybox', 'true'])\n"
            "images.build_parser()\n"
            "container.parser('pallet ps', 'List containers').add_argument('-a')\n"
            "container.path('0123abcd', '/wait')\n"
            "from pallet.api.client import Client\n"
            "c = Client('unix:///nonexistent.sock', version='1.50')\n"
            "c._prepare('/x', {'a': 1}, {}, None, None, True)\n"
            "print([m for m in ('typing', 'shutil', 'urllib.parse', 'socket') if m in sys.modules])\n")
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_version_and_help_load_nothing_beyond_the_cli_main():
    code = ("import sys\n"
            "before = set(sys.modules)\n"
            "import pallet.cli.main as m\n"
            "m._main(['--version'])\n"
            "m._main(['--help'])\n"
            "new = set(sys.modules) - before\n"
            "print(sorted(n for n in new if n in ('re', 'argparse', 'json', 'socket', 'typing')))\n")
    out = _python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize("ref", ["0123456789abcdef" * 4, "my_name.1-2~x", "a/b", "x y", "caf\u00e9",
                                 "%2F", ""])
def test_container_path_quotes_as_urllib(ref):
    assert container.path(ref, "/start") == f"/containers/{urllib.parse.quote(ref, safe='')}/start"


@pytest.fixture
def fresh_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(container.HelpFormatter, "_cached_width", None)


def _plain_argparse_help() -> str:
    """`pallet create --help` as argparse's own formatter lays it out (it reads the width
    through shutil.get_terminal_size each time)."""
    p = argparse.ArgumentParser(prog="pallet create", description="Create a new container", add_help=False,
                                usage="pallet create [OPTIONS] IMAGE [COMMAND] [ARG...]")
    run.add_create_flags(p)
    return p.format_help()


@pytest.mark.parametrize("columns", ["60", "132", None])
def test_help_is_laid_out_as_argparse_does(fresh_width, monkeypatch, columns):
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)  # the terminal of stdout, else 80
    else:
        monkeypatch.setenv("COLUMNS", columns)
    text = run.build_parser("pallet create", run=False).format_help()
    assert text == _plain_argparse_help()
    assert "--network" in text


def test_help_width_is_read_once(fresh_width, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    assert container.HelpFormatter.terminal_width() == 58
    monkeypatch.setenv("COLUMNS", "100")
    assert container.HelpFormatter.terminal_width() == 58
    monkeypatch.setattr(container.HelpFormatter, "_cached_width", None)
    monkeypatch.setenv("COLUMNS", "junk")
    monkeypatch.setattr(sys, "__stdout__", None)  # no terminal either: argparse's 80
    assert container.HelpFormatter.terminal_width() == 78


# The interpreter's teardown finalizes __main__'s globals: `probe.__del__` then writes TEARDOWN.
EXIT_PROBE = ("import os, sys\n"
              "{pre}"
              "class Probe:\n"
              "    def __del__(self):\n"
              "        os.write(1, b'TEARDOWN')\n"
              "probe = Probe()\n"
              "import pallet.cli.main as m\n"
              "sys.argv = ['pallet', *sys.argv[1:]]\n"
              "sys.stdout.write('unflushed ')\n"
              "m.main()\n")


def test_console_entry_exits_without_teardown_and_flushes():
    out = _python(EXIT_PROBE.format(pre=""), argv=["--version"])
    assert out.returncode == 0
    assert out.stdout.startswith("unflushed Pallet version ")
    assert "TEARDOWN" not in out.stdout


def test_console_entry_keeps_the_status_and_stderr():
    out = _python(EXIT_PROBE.format(pre=""), argv=["--bogus"])
    assert out.returncode == 125
    assert "unknown flag: --bogus" in out.stderr
    assert "TEARDOWN" not in out.stdout


@pytest.mark.parametrize("pre", ["import logging\n", "import tempfile\n", "import atexit\n",
                                 "import threading, time\n"
                                 "threading.Thread(target=time.sleep, args=(0.2,)).start()\n"])
def test_exit_duties_get_the_normal_exit(pre):
    out = _python(EXIT_PROBE.format(pre=pre), argv=["--version"])
    assert out.returncode == 0
    assert out.stdout.rstrip().endswith("TEARDOWN")


def test_in_process_main_returns():
    from pallet.cli.main import main

    assert main(["--version"]) == 0  # with argv: a plain return, the caller's process lives on


# --- `pallet run`: wait and attach side by side -----------------------------------------------------

class RunDaemon(FakeDaemon):
    """A scripted daemon for one `pallet run`: the wait's headers come only after WAIT_DELAY,
    the attach upgrades at once, and stdout then the wait's body follow the start. Records when
    each request arrived and when the wait's headers went out."""

    WAIT_DELAY = 0.3

    def __init__(self, path: Path) -> None:
        self.events: list[tuple[str, float]] = []
        self.started = threading.Event()
        super().__init__(path, self._handle)

    def _handle(self, _method: str, target: str, _headers: dict[str, str], _body: bytes,
                conn: socket.socket) -> None:
        what = target.split("?")[0].rsplit("/", 1)[-1]
        self.events.append((what, time.monotonic()))
        if what == "wait":
            time.sleep(self.WAIT_DELAY)
            self.events.append(("wait-headers", time.monotonic()))
            self.send_chunked_wait(conn, self.started, 7)
        elif what == "attach":
            conn.sendall(b"HTTP/1.1 101 UPGRADED\r\n"
                         b"Content-Type: application/vnd.docker.multiplexed-stream\r\n"
                         b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
            self.started.wait(10)
            conn.sendall(b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n")
        elif what == "start":
            conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
            self.started.set()

    def at(self, what: str) -> float:
        return next(t for w, t in self.events if w == what)


@pytest.fixture
def run_daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunDaemon]:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    d = RunDaemon(tmp_path / "d.sock")
    yield d
    d.close()


def test_run_attaches_while_the_wait_is_armed_and_starts_after_it(run_daemon, capfd):
    client = Client(f"unix://{run_daemon.path}", version="1.50")
    code = run.attach_start_wait(client, "c0ffee", tty=False, stdin=False, auto_remove=True,
                                 detach_keys=None, sig_proxy=False)
    assert code == 7
    assert capfd.readouterr().out == "hi\n"
    # the attach did not queue behind the wait's headers...
    assert run_daemon.at("attach") < run_daemon.at("wait-headers")
    # ...but the start did: a container that exits at once still meets an armed wait
    assert run_daemon.at("start") >= run_daemon.at("wait-headers")


def test_signals_reach_the_container_by_name():
    """--sig-proxy through `_signal`: a signal the CLI gets becomes POST /kill?signal=NAME."""
    import os
    import signal

    sent: list[tuple[str, str, dict[str, str]]] = []

    class Recorder:
        def request(self, method: str, path: str, *, params: dict[str, str]) -> Recorder:
            sent.append((method, path, params))
            return self

        def read(self) -> bytes:
            return b""

    proxied = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
    saved = {sig: signal.getsignal(sig) for sig in proxied}
    try:
        run._proxy_signals(Recorder(), "c0ffee")  # type: ignore[arg-type]
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    assert sent == [("POST", "/containers/c0ffee/kill", {"signal": "SIGUSR1"}),
                    ("POST", "/containers/c0ffee/kill", {"signal": "SIGTERM"})]


# --- the API version cache stays small: every command reads it -----------------------------------

def test_version_cache_keeps_live_sockets_only_and_finds_its_line(tmp_path, monkeypatch):
    from pallet.api.client import _VersionCache

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    socks = []
    for i in range(3):
        path = tmp_path / f"s{i}.sock"
        path.write_text("")
        socks.append(path)
    for path in socks:
        cache = _VersionCache(str(path))
        cache.store(cache.socket_identity(), "1.4" + path.name[1])  # type: ignore[arg-type]
    assert [_VersionCache(str(p)).lookup() for p in socks] == ["1.40", "1.41", "1.42"]
    socks[0].unlink()  # that daemon is gone: its entry goes at the next write
    socks[1].write_text("x")  # a new socket file: its entry no longer holds
    assert _VersionCache(str(socks[1])).lookup() is None
    cache = _VersionCache(str(socks[1]))
    cache.store(cache.socket_identity(), "1.45")  # type: ignore[arg-type]
    text = (tmp_path / "run" / "pallet" / "api-versions").read_text()
    assert text.splitlines()[0] == "pallet-api-versions 1"
    assert [ln.split("\t")[0] for ln in text.splitlines()[1:]] == [str(socks[2]), str(socks[1])]
    assert _VersionCache(str(socks[1])).lookup() == "1.45"
    assert _VersionCache(str(socks[2])).lookup() == "1.42"
    # a path that is a prefix of another's is not mistaken for it
    assert _VersionCache(str(tmp_path / "s")).lookup() is None


def test_version_cache_is_bounded(tmp_path, monkeypatch):
    from pallet.api.client import _VersionCache

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    for i in range(_VersionCache.MAX_ENTRIES + 10):
        path = tmp_path / f"s{i}.sock"
        path.write_text("")
        cache = _VersionCache(str(path))
        cache.store(cache.socket_identity(), "1.50")  # type: ignore[arg-type]
    lines = (tmp_path / "run" / "pallet" / "api-versions").read_text().splitlines()[1:]
    assert len(lines) == _VersionCache.MAX_ENTRIES
    assert lines[-1].startswith(str(tmp_path / f"s{_VersionCache.MAX_ENTRIES + 9}.sock\t"))
    assert _VersionCache(str(tmp_path / "s0.sock")).lookup() is None  # the oldest went
