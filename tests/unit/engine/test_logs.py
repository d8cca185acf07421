"""The json-file log: Docker's line format, partial lines, rotation, and the reader's options."""

from __future__ import annotations

import json

import pytest

from pallet.engine.logs import MAX_LINE, JsonFileWriter, parse_size, parse_time, read_logs, rfc3339nano


def clock_from(start: int = 1_700_000_000 * 10**9):
    t = [start]

    def tick() -> int:
        t[0] += 10**9
        return t[0]
    return tick


def test_format_is_dockers(tmp_path):
    w = JsonFileWriter(str(tmp_path / "c-json.log"), clock=lambda: 1_700_000_000_123_456_789)
    w.write("stdout", b"hel")
    w.write("stdout", b"lo\nwor")
    w.write("stderr", b"e\xff\n")
    w.close()
    lines = [json.loads(x) for x in (tmp_path / "c-json.log").read_text().splitlines()]
    assert lines == [
        {"log": "hello\n", "stream": "stdout", "time": "2023-11-14T22:13:20.123456789Z"},
        {"log": "e\ufffd\n", "stream": "stderr", "time": "2023-11-14T22:13:20.123456789Z"},
        {"log": "wor", "stream": "stdout", "time": "2023-11-14T22:13:20.123456789Z"},
    ]


def test_a_tty_prompt_is_logged_before_its_newline_without_splitting_characters(tmp_path):
    w = JsonFileWriter(str(tmp_path / "t"))
    w.write("stdout", b"/ # ")
    w.flush_partial("stdout")  # what the monitor does after each read of a Tty container
    w.write("stdout", b"caf\xc3")  # 'é' arrives in two reads
    w.flush_partial("stdout")
    w.write("stdout", b"\xa9 \xe2\x82")  # and a euro sign's first two bytes
    w.flush_partial("stdout")
    w.write("stdout", b"\xac\n")
    w.close()
    logs = [json.loads(x)["log"] for x in (tmp_path / "t").read_text().splitlines()]
    assert logs == ["/ # ", "caf", "\u00e9 ", "\u20ac\n"] and "".join(logs) == "/ # caf\u00e9 \u20ac\n"


def test_long_lines_are_cut(tmp_path):
    w = JsonFileWriter(str(tmp_path / "l"))
    w.write("stdout", b"x" * (MAX_LINE * 2 + 5) + b"\n")
    w.close()
    logs = [json.loads(x)["log"] for x in (tmp_path / "l").read_text().splitlines()]
    assert [len(x) for x in logs] == [MAX_LINE, MAX_LINE, 6] and logs[-1].endswith("\n")


@pytest.mark.parametrize("max_files", [1, 2, 3])
def test_rotation(tmp_path, max_files):
    p = str(tmp_path / "r")
    w = JsonFileWriter(p, max_size=1000, max_files=max_files, clock=clock_from())
    for i in range(100):
        w.write("stdout", f"line {i:03d}\n".encode())
    w.close()
    files = sorted(x.name for x in tmp_path.iterdir())
    assert files == ["r", *[f"r.{i}" for i in range(1, max_files)]]
    assert all((tmp_path / f).stat().st_size <= 1000 for f in files)
    got = [d.decode() for _s, d in read_logs(p, max_files=max_files)]
    assert got[-1] == "line 099\n"
    nums = [int(x.split()[1]) for x in got]
    assert nums == list(range(nums[0], 100))


def test_reader_options(tmp_path):
    p = str(tmp_path / "o")
    w = JsonFileWriter(p, clock=clock_from())
    for i in range(5):
        w.write("stdout" if i % 2 == 0 else "stderr", f"{i}\n".encode())
    w.close()
    assert [d for _s, d in read_logs(p)] == [b"0\n", b"1\n", b"2\n", b"3\n", b"4\n"]
    assert [d for _s, d in read_logs(p, stderr=False)] == [b"0\n", b"2\n", b"4\n"]
    assert [d for _s, d in read_logs(p, tail=2)] == [b"3\n", b"4\n"]
    assert list(read_logs(p, tail=0)) == []
    t2 = (1_700_000_000 + 3)
    assert [d for _s, d in read_logs(p, since=t2)] == [b"2\n", b"3\n", b"4\n"]
    assert [d for _s, d in read_logs(p, until=t2)] == [b"0\n", b"1\n", b"2\n"]
    first = next(read_logs(p, timestamps=True))[1]
    assert first == rfc3339nano((1_700_000_000 + 1) * 10**9).encode() + b" 0\n"
    # A torn last line (being written) is skipped, not an error.
    with open(p, "ab") as f:
        f.write(b'{"log": "partial')
    assert len(list(read_logs(p))) == 5


def test_follow_stops_when_not_running(tmp_path):
    p = str(tmp_path / "f")
    w = JsonFileWriter(p)
    w.write("stdout", b"a\n")
    calls = []

    def running() -> bool:
        calls.append(1)
        if len(calls) == 2:
            w.write("stdout", b"b\n")
        return len(calls) < 3

    assert [d for _s, d in read_logs(p, follow=True, running=running, poll=0)] == [b"a\n", b"b\n"]


@pytest.mark.parametrize("text,n", [("10m", 10 << 20), ("512k", 512 << 10), ("1g", 1 << 30), ("100", 100),
                                    ("2mb", 2 << 20), ("1.5k", 1536)])
def test_parse_size(text, n):
    assert parse_size(text) == n


def test_parse_time():
    assert parse_time("1970-01-01T00:00:01.5Z") == 1_500_000_000
    assert parse_time("1970-01-01T01:00:01+01:00") == 10**9
    assert parse_time(rfc3339nano(123_456_789_123_456_789)) == 123_456_789_123_456_789


def test_follow_ends_when_cancelled_even_without_output(tmp_path):
    import threading
    import time

    p = str(tmp_path / "f")
    JsonFileWriter(p).write("stdout", b"a\n")
    cancel = threading.Event()
    it = read_logs(p, follow=True, running=lambda: True, poll=0.01, cancelled=cancel.is_set)
    assert next(it) == ("stdout", b"a\n")
    threading.Timer(0.2, cancel.set).start()
    t = time.monotonic()
    assert list(it) == []  # returns although the "container" still runs and writes nothing
    assert time.monotonic() - t < 2
