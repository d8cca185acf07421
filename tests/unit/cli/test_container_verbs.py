"""Container verbs without a daemon: flags to the exact API requests, tables, templates."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from pallet.cli.commands import attach, commit, logs, ps, run, update
from pallet.cli.commands import exec as exec_cmd
from pallet.cli.format import align, execute_template
from pallet.cli.main import Context
from pallet.errors import InvalidArgument, NotFound
from pallet_testlib import python_output


class FakeResponse:
    def __init__(self, body: Any = None) -> None:
        self.body = body
        self.status = 200
        self.content_type = "application/json"

    def read(self) -> bytes:
        return b""

    def json(self) -> Any:
        return self.body


class FakePending:
    def __init__(self, answer: FakeResponse | Exception) -> None:
        self.answer = answer

    def response(self) -> FakeResponse:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class RecordingClient:
    """Records (method, path, params, body); answers from `answers[(method, path)]`."""

    api_version = "1.50"

    def __init__(self, answers: dict[tuple[str, str], Any] | None = None) -> None:
        self.calls: list[tuple[str, str, dict[str, Any] | None, Any]] = []
        self.answers = answers or {}

    def request(self, method: str, path: str, *, params: Any = None, body: Any = None,
                **_: Any) -> FakeResponse:
        self.calls.append((method, path, params, body))
        answer = self.answers.get((method, path))
        if isinstance(answer, Exception):
            raise answer
        return FakeResponse(answer)

    def send(self, method: str, path: str, **kw: Any) -> FakePending:
        """Client.send: the request goes now, its answer (or error) comes with response()."""
        try:
            return FakePending(self.request(method, path, **kw))
        except Exception as exc:  # handed back as the daemon's answer
            return FakePending(exc)

    def post_json(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, body=body, **kw).json()

    def get_json(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw).json()


def ctx_for(client: RecordingClient) -> Context:
    ctx = Context()
    ctx._client = client  # type: ignore[assignment]
    return ctx


def body_for(argv: list[str], detach: bool = True) -> dict[str, Any]:
    return run.create_request(run.build_parser().parse_args(argv), detach=detach)


def test_run_flags_to_create_request():
    argv = ["-m", "64m", "--cpus", "0.5", "-e", "A=1", "-v", "/h:/c:ro", "busybox", "sh"]
    body = body_for(argv, detach=False)
    assert body == {
        "Image": "busybox", "AttachStdin": False, "AttachStdout": True, "AttachStderr": True,
        "Tty": False, "OpenStdin": False, "StdinOnce": False, "Cmd": ["sh"], "Env": ["A=1"],
        "HostConfig": {"Binds": ["/h:/c:ro"], "Memory": 64 * 1024 * 1024, "NanoCpus": 500_000_000},
    }


def test_run_more_flags():
    body = body_for(["-it", "--rm", "--name", "x", "-w", "/tmp", "-u", "1000:1000", "--read-only",
                     "--tmpfs", "/run:size=64m", "--pids-limit", "50", "--cap-add", "NET_ADMIN",
                     "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                     "--ulimit", "nofile=1024:2048",
                     "--sysctl", "net.ipv4.ip_forward=1", "-h", "box", "--entrypoint", "/bin/sh", "-l", "a=b",
                     "--init", "--privileged", "--network", "none", "--restart", "on-failure:3",
                     "--stop-signal", "SIGINT", "--stop-timeout", "5", "--runtime", "crun",
                     "--log-opt", "max-size=1m", "--ipc", "host", "--pid", "host", "-c", "512",
                     "--memory-swap", "-1", "-v", "/anon", "busybox", "sh", "-c", "exit 3"], detach=False)
    hc = body.pop("HostConfig")
    assert body == {"Image": "busybox", "AttachStdin": True, "AttachStdout": True, "AttachStderr": True,
                    "Tty": True, "OpenStdin": True, "StdinOnce": True, "Cmd": ["sh", "-c", "exit 3"],
                    "Entrypoint": ["/bin/sh"], "WorkingDir": "/tmp", "User": "1000:1000", "Hostname": "box",
                    "StopSignal": "SIGINT", "StopTimeout": 5, "Labels": {"a": "b"}, "Volumes": {"/anon": {}}}
    assert hc == {"AutoRemove": True, "ReadonlyRootfs": True, "Tmpfs": {"/run": "size=64m"}, "PidsLimit": 50,
                  "CapAdd": ["NET_ADMIN"], "CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"],
                  "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
                  "Sysctls": {"net.ipv4.ip_forward": "1"}, "Init": True, "Privileged": True,
                  "NetworkMode": "none", "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3},
                  "Runtime": "crun", "LogConfig": {"Type": "", "Config": {"max-size": "1m"}},
                  "IpcMode": "host", "PidMode": "host", "CpuShares": 512, "MemorySwap": -1}


def test_detached_run_body_and_env_passthrough(monkeypatch, tmp_path):
    monkeypatch.setenv("FROM_HOST", "yes")
    envfile = tmp_path / "env"
    envfile.write_text("# comment\nB=2\n\nFROM_HOST\n")
    body = body_for(["-d", "--env-file", str(envfile), "-e", "C", "-e", "FROM_HOST", "busybox"])
    assert body["Env"] == ["B=2", "FROM_HOST=yes", "C", "FROM_HOST=yes"]
    assert body["AttachStdout"] is False and "Cmd" not in body and body["HostConfig"] == {}


@pytest.mark.parametrize(("value", "size"), [("64m", 64 << 20), ("1g", 1 << 30), ("512k", 512 << 10),
                                             ("100", 100), ("1.5g", 3 << 29), ("2MB", 2 << 20)])
def test_ram_in_bytes(value, size):
    assert run.ram_in_bytes(value) == size


def test_bad_flags_are_one_line_125(capsys):
    assert run.main(ctx_for(RecordingClient()), ["-m", "lots", "busybox"]) == 125
    err = capsys.readouterr().err
    assert err.startswith("pallet: invalid size: 'lots'") and "Traceback" not in err


def test_run_detached_requests(capsys):
    client = RecordingClient({("POST", "/containers/create"): {"Id": "abc123", "Warnings": ["careful"]}})
    assert run.main(ctx_for(client), ["-d", "--name", "web", "busybox", "sleep", "1000"]) == 0
    assert [(m, p, prm) for m, p, prm, _ in client.calls] == [
        ("POST", "/containers/create", {"name": "web", "platform": None}),
        ("POST", "/containers/abc123/start", None)]
    out = capsys.readouterr()
    assert out.out == "abc123\n" and out.err == "WARNING: careful\n"


def test_run_missing_image(capsys):
    from pallet.api.client import error_for

    client = RecordingClient({
        ("POST", "/containers/create"): error_for(404, "No such image: nope:latest"),
        ("POST", "/images/create"): error_for(501, "no registry configured")})
    assert run.main(ctx_for(client), ["-d", "nope"]) == 125
    err = capsys.readouterr().err
    assert err.splitlines() == ["Unable to find image 'nope:latest' locally",
                                "pallet: Error response from daemon: no registry configured",
                                "See 'pallet run --help'."]


@pytest.mark.parametrize(("message", "status"), [
    ("exec: \"nope\": executable file not found in $PATH", 127), ("open /x: permission denied", 126),
    ("cgroup trouble", 125)])
def test_start_error_status(message, status):
    assert run.start_error_status(message) == status


def test_stop_kill_rm_requests(capsys):
    from pallet.cli.commands import kill, rm, stop

    client = RecordingClient({("POST", "/containers/gone/stop"): NotFound("No such container: gone")})
    client.answers[("POST", "/containers/gone/stop")].status = 404  # type: ignore[attr-defined]
    ctx = ctx_for(client)
    assert stop.main(ctx, ["-t", "3", "-s", "SIGINT", "web", "gone"]) == 1
    assert kill.main(ctx, ["-s", "HUP", "web"]) == 0
    assert rm.main(ctx, ["-f", "-v", "web"]) == 0
    assert [c[:3] for c in client.calls] == [
        ("POST", "/containers/web/stop", {"t": 3, "signal": "SIGINT"}),
        ("POST", "/containers/gone/stop", {"t": 3, "signal": "SIGINT"}),
        ("POST", "/containers/web/kill", {"signal": "HUP"}),
        ("DELETE", "/containers/web", {"force": True, "v": True, "link": None})]
    out = capsys.readouterr()
    assert out.out == "web\nweb\nweb\n"
    assert out.err == "Error response from daemon: No such container: gone\n"


def test_exec_config():
    args = exec_cmd.build_parser().parse_args(["-it", "-e", "A=1", "-w", "/tmp", "-u", "nobody", "web",
                                               "sh", "-c", "echo hi"])
    assert exec_cmd.exec_config(args) == {
        "AttachStdin": True, "AttachStdout": True, "AttachStderr": True, "Tty": True,
        "Cmd": ["sh", "-c", "echo hi"], "Env": ["A=1"], "WorkingDir": "/tmp", "User": "nobody"}
    detached = exec_cmd.exec_config(exec_cmd.build_parser().parse_args(["-d", "web", "true"]))
    assert detached["AttachStdout"] is False and detached["AttachStdin"] is False


def test_update_body_and_commit_query():
    p_args = ["-m", "128m", "--cpus", "1.5", "--pids-limit", "10", "--restart", "always", "web"]
    import argparse

    ns = argparse.Namespace(memory="128m", memory_reservation=None, kernel_memory=None, cpus="1.5",
                            restart="always", memory_swap=None, cpu_shares=None, cpu_period=None,
                            cpu_quota=None, cpu_rt_period=None, cpu_rt_runtime=None, cpuset_cpus=None,
                            cpuset_mems=None, blkio_weight=None, pids_limit=10)
    assert p_args and update.update_body(ns) == {"Memory": 128 << 20, "NanoCpus": 1_500_000_000,
                                                 "RestartPolicy": {"Name": "always"}, "PidsLimit": 10}
    q = commit.commit_query("web", "me/img:v1", author="A", message="m", changes=["ENV X=1", "CMD sh"],
                            pause=True)
    assert q == ("container=web&repo=me%2Fimg&tag=v1&comment=m&author=A&pause=1"
                 "&changes=ENV+X%3D1&changes=CMD+sh")


SUMMARY = {"Id": "6914c80a69c2797ac7208b51e9d598e1765b9b2a4f86d570ae9e63df90709179",
           "Names": ["/web"], "Image": "busybox@sha256:" + "a" * 64,
           "Command": "sh -c 'while true; do sleep 1; done'",
           "Created": 1000, "State": "running", "Status": "Up 2 minutes", "Ports": [],
           "Labels": {"b": "2", "a": "1"}}


def test_ps_row_truncation():
    r = ps.row(SUMMARY, now=1000 + 125)
    assert r["ID"] == "6914c80a69c2" and r["Image"] == "busybox"
    assert r["Command"] == '"sh -c \'while true; …"' and len(r["Command"]) == 22
    assert r["RunningFor"] == "2 minutes ago" and r["Names"] == "web" and r["Labels"] == "a=1,b=2"
    full = ps.row(SUMMARY, no_trunc=True, now=1125)
    assert full["ID"] == SUMMARY["Id"] and full["Command"] == f'"{SUMMARY["Command"]}"'
    assert ps.row({**SUMMARY, "Image": "sha256:" + "b" * 64})["Image"] == "b" * 12


def test_ps_table_layout(capsys, monkeypatch):
    monkeypatch.setattr("time.time", lambda: 1125.0)
    client = RecordingClient({("GET", "/containers/json"): [SUMMARY]})
    assert ps.main(ctx_for(client), ["-a", "-f", "status=running"]) == 0
    assert client.calls[0][2] == {"all": True, "limit": None, "size": None,
                                  "filters": {"status": {"running": True}}}
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("CONTAINER ID   IMAGE     COMMAND                  CREATED         STATUS         "
                        "PORTS     NAMES")
    assert lines[1] == ("6914c80a69c2   busybox   \"sh -c 'while true; …\"   2 minutes ago   Up 2 minutes"
                        "             web")


def test_ps_quiet_last_and_format(capsys):
    client = RecordingClient({("GET", "/containers/json"): [SUMMARY]})
    assert ps.main(ctx_for(client), ["-q", "-l"]) == 0
    assert client.calls[0][2]["limit"] == 1 and client.calls[0][2]["all"] is True
    assert capsys.readouterr().out == "6914c80a69c2\n"
    assert ps.main(ctx_for(client), ["--format", "{{.Names}}: {{.Status}}"]) == 0
    assert capsys.readouterr().out == "web: Up 2 minutes\n"
    assert ps.main(ctx_for(client), ["--format", "table {{.ID}}\t{{.Names}}"]) == 0
    assert capsys.readouterr().out == "CONTAINER ID   NAMES\n6914c80a69c2   web\n"


def test_align_minwidth():
    assert align([["A", "B"], ["xx", "y"]], minwidth=10) == "A         B\nxx        y\n"


DATA = {"Name": "/web", "State": {"Status": "running", "Pid": 42},
        "Config": {"Env": ["A=1", "B=2"], "Labels": {"z": "26", "a": "1"}},
        "Mounts": [{"Source": "/h", "Destination": "/c"}], "NetworkSettings": {"Ports": {}}}


@pytest.mark.parametrize(("template", "out"), [
    ("{{.State.Status}} {{.State.Pid}}", "running 42"),
    ("{{json .Config.Labels}}", '{"z":"26","a":"1"}'),
    ("{{range .Config.Env}}{{.}};{{end}}", "A=1;B=2;"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}} {{end}}", "a=1 z=26 "),
    ("{{index .Config.Labels \"z\"}}", "26"),
    ("{{index .Config.Env 1}}", "B=2"),
    ("{{range .Mounts}}{{.Source}}:{{.Destination}}{{end}}", "/h:/c"),
    ("{{.Config.Labels}}", "map[a:1 z:26]"),
    ("{{if .State.Pid}}up{{else}}down{{end}}", "up"),
    ("{{with .State}}{{.Status}}{{end}}", "running"),
    ("{{.Name | json}}", '"/web"'),
    ("{{join .Config.Env \",\"}}", "A=1,B=2"),
    ("{{len .Config.Env}}", "2"),
    ("{{range .NetworkSettings.Ports}}x{{else}}none{{end}}", "none"),
    ("{{- range .Config.Env }}\n  {{.}}\n{{- end }}", "\n  A=1\n  B=2"),
    ("{{printf \"%s-%d\" .Name .State.Pid}}", "/web-42"),
    ("{{$.Name}}{{range .Config.Env}}{{$.Name}}{{end}}", "/web/web/web"),
])
def test_templates(template, out):
    assert execute_template(template, DATA) == out


def test_template_errors():
    with pytest.raises(ValueError, match="can't evaluate field Nope"):
        execute_template("{{.Nope}}", DATA)
    with pytest.raises(ValueError, match='function "bogus" not defined'):
        execute_template("{{bogus .Name}}", DATA)
    with pytest.raises(ValueError, match=r"missing \{\{end\}\}"):
        execute_template("{{range .Config.Env}}", DATA)


def test_inspect_falls_back_to_images(capsys):
    from pallet.cli.commands import inspect

    client = RecordingClient({("GET", "/containers/busybox/json"): NotFound("No such container: busybox"),
                              ("GET", "/images/busybox/json"): {"Id": "sha256:1"}})
    assert inspect.main(ctx_for(client), ["-f", "{{.Id}}", "busybox"]) == 0
    assert capsys.readouterr().out == "sha256:1\n"
    client.answers[("GET", "/images/busybox/json")] = NotFound("No such image: busybox")
    assert inspect.main(ctx_for(client), ["busybox"]) == 1
    out = capsys.readouterr()
    assert out.err == "Error: No such object: busybox\n" and json.loads(out.out) == []


def test_detach_keys_and_matcher():
    assert attach.parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert attach.parse_detach_keys("a,ctrl-[") == b"a\x1b"
    m = attach._DetachMatcher(b"\x10\x11")
    assert m.feed(b"ab\x10") == b"ab"
    assert m.feed(b"c") == b"\x10c"
    m.feed(b"\x10")
    with pytest.raises(attach.Detached):
        m.feed(b"\x11")


def test_demuxer_splits_streams_across_chunks():
    import io

    out, err = io.BytesIO(), io.BytesIO()
    d = attach._Demuxer(out, err)
    stream = struct.pack(">BxxxL", 1, 2) + b"hi" + struct.pack(">BxxxL", 2, 3) + b"err"
    for i in range(len(stream)):
        d.feed(stream[i:i + 1])
    assert out.getvalue() == b"hi" and err.getvalue() == b"err"


def test_logs_timestamps():
    assert logs.timestamp("1700000000") == "1700000000"
    assert logs.timestamp("10m", now=1000.0) == "400.000000000"
    assert logs.timestamp("1h30m", now=10000.0) == "4600.000000000"
    assert logs.timestamp("1970-01-01T00:01:00Z") == "60.000000000"


def test_container_aliases_and_help(capsys):
    from pallet.cli.commands import container
    from pallet.cli.main import usage

    client = RecordingClient({("GET", "/containers/json"): []})
    assert container.main(ctx_for(client), ["ls", "-a"]) == 0
    assert client.calls[0][:2] == ("GET", "/containers/json")
    text = usage()
    for verb in ("run", "ps", "exec", "logs", "stop", "rm", "container", "attach"):
        assert f"  {verb} " in text


def test_startup_imports_stay_small():
    """`pallet --help`, `pallet ps` and `pallet run` parsing load no server stack, no ctypes,
    no engine or image packages; termios/tty only in the verbs that put a terminal in raw mode."""

    code = ("import sys, pallet.cli.main; import pallet.cli.commands.ps, pallet.cli.commands.run; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ctypes', 'aiohttp', 'asyncio', "
            "'termios', 'tty') or m.startswith(('pallet.engine', 'pallet.image', 'pallet.api.server'))))")
    assert python_output(code) == "[]"


def test_ram_in_bytes_refusal_is_a_clear_invalid_argument():
    # the reading itself: tests/unit/test_units_sizes.py and, against the docker CLI,
    # tests/compat/test_docker_cli_sizes.py
    with pytest.raises(InvalidArgument, match="invalid suffix: 'x'"):
        run.ram_in_bytes("9x")
