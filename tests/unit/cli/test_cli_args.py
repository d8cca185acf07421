"""pallet.cli.args parses as argparse does: the same namespace for every command line, argparse's
own help and errors for what the fast path leaves to it, and the fast path taken for the
command lines people type (every option of run/create, bundles, `=` forms, commands)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pallet.cli import args as fastargs
from pallet.cli.commands import exec as exec_
from pallet.cli.commands import images, inspect, kill, logs, ps, rm, run, start, stop, wait

FACTORIES: dict[str, Callable[[], fastargs.Parser]] = {
    "run": lambda: run.build_parser("pallet run"),
    "create": lambda: run.build_parser("pallet create", run=False),
    "exec": lambda: exec_.build_parser(),
    "ps": lambda: ps.build_parser(),
    "rm": lambda: rm.build_parser(),
    "stop": lambda: stop.build_parser(),
    "restart": lambda: stop.build_parser("pallet restart", "restart"),
    "start": lambda: start.build_parser(),
    "kill": lambda: kill.build_parser(),
    "wait": lambda: wait.build_parser(),
    "logs": lambda: logs.build_parser(),
    "inspect": lambda: inspect.build_parser(),
    "images": lambda: images.build_parser(),
}

_PARSERS: dict[str, tuple[fastargs.Parser, object]] = {}


def parsers(verb: str) -> tuple[fastargs.Parser, object]:
    """(pallet's parser, a real argparse parser from the same calls), built once per verb."""
    if verb not in _PARSERS:
        _PARSERS[verb] = (FACTORIES[verb](), FACTORIES[verb]().argparse())
    return _PARSERS[verb]


def outcome(parse: Callable[[list[str]], object], argv: list[str]) -> tuple[object, ...]:
    """What a parse gives: the namespace's attributes, or the exit status with what was printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            return ("ok", vars(parse(argv)))
        except SystemExit as exc:
            return ("exit", exc.code, out.getvalue(), err.getvalue())


def same_as_argparse(verb: str, argv: list[str]) -> tuple[object, ...]:
    fast, real = parsers(verb)
    got = outcome(fast.parse_args, argv)
    assert got == outcome(real.parse_args, argv), argv  # type: ignore[attr-defined]
    return got


def fast_path(verb: str, argv: list[str]) -> dict[str, object]:
    """The fast path's own answer (no fallback allowed), checked against argparse."""
    fast, _ = parsers(verb)
    got = vars(fast._parse(argv))
    assert same_as_argparse(verb, argv) == ("ok", got), argv
    return got


def value_for(action: fastargs._Action) -> str:
    if action.choices:
        return str(action.choices[-1])
    return "5" if action.type is int else "A=b c"


def every_option(verb: str) -> list[list[str]]:
    """Each option of the verb's parser in each of its spellings (`--opt v`, `--opt=v`, `-o v`,
    `-ov`), before an image and a command."""
    fast, _ = parsers(verb)
    out: list[list[str]] = []
    for flag, action in fast._options.items():
        if action.kind == "help":
            continue
        if not action.takes_value:
            out.append([flag, "busybox", "true"])
            continue
        v = value_for(action)
        out.append([flag, v, "busybox", "true"])
        out.append([f"{flag}={v}", "busybox"])
        if not flag.startswith("--"):
            out.append([flag + v, "busybox", "sh", "-c", "echo hi"])
    return out


@pytest.mark.parametrize("verb", ["run", "create"])
def test_every_run_and_create_option_takes_the_fast_path(verb):
    cases = every_option(verb)
    assert len(cases) > 150
    for argv in cases:
        fast_path(verb, argv)


COMMON_RUN = [
    ["busybox"],
    ["--rm", "busybox", "true"],
    ["--rm", "--network", "none", "busybox", "true"],
    ["-d", "--name", "web", "-p", "8080:80", "-p", "443:443", "nginx"],
    ["-it", "busybox", "sh"],
    ["-ti", "--rm", "busybox"],
    ["-ite", "A=1", "busybox", "env"],
    ["-iteA=1", "busybox", "env"],
    ["-eA=1", "-e", "B=2", "--env=C=3", "--env", "D", "busybox"],
    ["-e", "A=1", "-e", "A=2", "busybox"],
    ["-v", "/a:/b:ro", "-v", "/anon", "--mount", "type=tmpfs,target=/t", "busybox"],
    ["--memory", "64m", "--memory-swap", "-1", "--pids-limit", "-1", "--cpu-shares", "512", "busybox"],
    ["--cpus", "0.5", "--cpus", "1.5", "busybox"],
    ["--sig-proxy=false", "-a", "stdout", "-a", "STDERR", "busybox"],
    ["busybox", "sh", "-c", "echo hi; exit 3"],
    ["busybox", "ls", "-l", "--rm", "-e", "X"],
    ["busybox", "--help"],
    ["busybox", "-it"],
    ["--name=x", "--hostname", "h", "-h", "h2", "-w", "/tmp", "-u", "1000:1000", "busybox", "id"],
    ["--entrypoint", "", "busybox", "true"],
    ["-e", "", "busybox"],
    ["--label", "a=b", "-l", "c=d", "--restart", "on-failure:3", "busybox"],
    ["--health-cmd", "true", "--health-interval", "1s", "--health-retries", "3", "busybox"],
    ["--stop-timeout", "-5", "busybox"],
    ["--systemd", "always", "--init", "--read-only", "--privileged", "busybox"],
    ["-P", "-dit", "busybox"],
    ["--cpu-shares", " 7 ", "busybox"],
    ["-c7", "busybox"],
    ["--network=container:abc", "--ip", "10.0.0.2", "--network-alias", "a", "busybox"],
    ["--net", "host", "--net-alias", "x", "--dns-opt", "ndots:1", "busybox"],
    ["-e", "-1", "busybox"],
    ["-e", "-x y", "busybox"],
    ["-", "x"],
    ["", ""],
    ["busybox", "-", "x"],
    ["img", "-5", "-1.5", "-.5"],
]


@pytest.mark.parametrize("argv", COMMON_RUN, ids=" ".join)
def test_common_run_lines_take_the_fast_path(argv):
    fast_path("run", argv)


COMMON_OTHERS = [
    ("exec", ["web", "true"]),
    ("exec", ["-it", "web", "sh"]),
    ("exec", ["-e", "A=1", "-u", "0", "-w", "/", "web", "sh", "-c", "x"]),
    ("exec", ["-d", "web", "sleep", "1"]),
    ("exec", ["web"]),
    ("ps", []),
    ("ps", ["-a"]),
    ("ps", ["-aq"]),
    ("ps", ["-qa", "--no-trunc"]),
    ("ps", ["-n", "3", "-s"]),
    ("ps", ["-n3", "--last=-1"]),
    ("ps", ["-f", "status=exited", "--filter", "name=x", "--format", "{{.ID}}"]),
    ("ps", ["--format", "table {{.ID}}\t{{.Names}}"]),
    ("rm", ["a"]),
    ("rm", ["-f", "a", "b"]),
    ("rm", ["a", "b", "-fv"]),
    ("rm", ["-fvl", "a"]),
    ("stop", ["a"]),
    ("stop", ["-t", "0", "a", "b"]),
    ("stop", ["--timeout=3", "a"]),
    ("stop", ["--time", "3", "-s", "SIGINT", "a"]),
    ("restart", ["-t0", "a"]),
    ("start", ["a", "b"]),
    ("start", ["-ai", "a"]),
    ("start", ["-a", "--detach-keys", "ctrl-x", "a"]),
    ("kill", ["a"]),
    ("kill", ["-s", "HUP", "a", "b"]),
    ("kill", ["--signal=9", "a"]),
    ("wait", ["a", "b", "c"]),
    ("logs", ["a"]),
    ("logs", ["-f", "a"]),
    ("logs", ["-ft", "--tail", "10", "a"]),
    ("logs", ["-n", "5", "--since", "10m", "a"]),
    ("logs", ["a", "-f"]),
    ("inspect", ["a"]),
    ("inspect", ["-f", "{{.State.Status}}", "a", "b"]),
    ("inspect", ["--type", "image", "-s", "busybox"]),
    ("inspect", ["--format={{json .}}", "a"]),
    ("images", []),
    ("images", ["busybox"]),
    ("images", ["-aq", "busybox:latest"]),
    ("images", ["--digests", "--no-trunc", "-f", "dangling=true"]),
]


def _ids(v: object) -> str:
    return v if isinstance(v, str) else " ".join(v)  # type: ignore[arg-type]


@pytest.mark.parametrize(("verb", "argv"), COMMON_OTHERS, ids=_ids)
def test_other_verbs_take_the_fast_path(verb, argv):
    fast_path(verb, argv)


# What the fast path leaves to argparse: results and messages are argparse's own.
EDGES = [
    ("run", []),  # the image is required
    ("run", ["--rm"]),
    ("run", ["--help"]),
    ("run", ["--rm", "--help", "busybox"]),
    ("run", ["--ne", "none", "busybox"]),  # ambiguous: --network, --net, --network-alias...
    ("run", ["--netw", "none", "busybox"]),  # ambiguous too (--network, --network-alias)
    ("run", ["--priv", "busybox"]),  # a unique abbreviation
    ("run", ["--oom", "busybox"]),
    ("run", ["busybox", "ls", "--ne"]),  # argparse refuses ambiguous words even in the command
    ("run", ["--", "busybox", "true"]),
    ("run", ["busybox", "--", "true"]),
    ("run", ["busybox", "sh", "--", "true"]),
    ("run", ["--rm", "--", "busybox"]),
    ("run", ["--rm=1", "busybox"]),
    ("run", ["-it=x", "busybox"]),
    ("run", ["-ix", "busybox"]),
    ("run", ["-i-", "busybox"]),
    ("run", ["-e", "--rm", "busybox"]),
    ("run", ["-e"]),
    ("run", ["--cpu-shares", "x", "busybox"]),
    ("run", ["--cpu-shares", "1.5", "busybox"]),
    ("run", ["--systemd", "maybe", "busybox"]),
    ("run", ["-a", "stdinx", "busybox"]),
    ("run", ["--sig-proxy", "no", "busybox"]),
    ("run", ["--bogus", "busybox"]),
    ("run", ["-Z", "busybox"]),
    ("run", ["--pids-limit", "-\u0661", "busybox"]),  # an Arabic-Indic digit: \d in argparse's pattern
    ("run", ["--pids-limit", "-1\n", "busybox"]),
    ("run", ["-e", "-x", "busybox"]),
    ("run", ["-e", "--", "busybox"]),
    ("create", ["-d", "busybox"]),  # create has no -d
    ("create", ["--detach-keys", "x", "busybox"]),
    ("exec", ["-it"]),
    ("exec", ["--", "web", "sh"]),
    ("ps", ["extra"]),
    ("ps", ["-n", "x"]),
    ("ps", ["-h"]),
    ("ps", ["--al"]),
    ("ps", ["-aqz"]),
    ("rm", []),
    ("rm", ["a", "-f", "b"]),  # argparse: unrecognized arguments: b
    ("rm", ["-f"]),
    ("rm", ["--", "-f"]),
    ("stop", ["-t", "x", "a"]),
    ("stop", ["--t", "3", "a"]),
    ("start", ["-a"]),
    ("logs", ["a", "b"]),
    ("logs", []),
    ("inspect", ["--type", "volume", "a"]),
    ("images", ["a", "b"]),
]


@pytest.mark.parametrize(("verb", "argv"), EDGES, ids=_ids)
def test_edge_cases_are_argparses(verb, argv):
    fast, _ = parsers(verb)
    with pytest.raises(fastargs._Fallback):
        fast._parse(argv)
    same_as_argparse(verb, argv)


def test_errors_print_argparses_message_and_exit_2():
    got = same_as_argparse("run", ["--cpu-shares", "x", "busybox"])
    assert got[:2] == ("exit", 2)
    assert "argument -c/--cpu-shares: invalid int value: 'x'" in str(got[3])
    got = same_as_argparse("rm", [])
    assert "the following arguments are required: CONTAINER" in str(got[3])
    got = same_as_argparse("run", ["--help"])
    assert got[:2] == ("exit", 0)
    assert "--network" in str(got[2])


def test_defaults_and_repeats():
    got = fast_path("run", ["-e", "A", "-e", "B", "--name", "a", "--name", "b", "busybox"])
    assert got["env"] == ["A", "B"] and got["name"] == "b"
    assert got["sig_proxy"] == "true" and got["command"] == [] and got["label"] == []
    again = fast_path("run", ["busybox"])
    assert again["env"] == []  # the shared default list was not appended to


def test_any_other_use_of_the_parser_goes_to_argparse():
    p = fastargs.Parser(prog="x", description="d")
    p.add_argument("-a", action="store_true")
    p.set_defaults(a="set")
    assert vars(p.parse_args([])) == {"a": "set"}
    p.add_argument("b", nargs="?")  # recorded and passed on
    assert vars(p.parse_args(["-a", "B"])) == {"a": True, "b": "B"}


@pytest.mark.parametrize("kw", [{"action": "count"}, {"action": "store_const", "const": 1},
                                {"nargs": 2}, {"type": float}, {"action": "extend", "nargs": "+"},
                                {"const": 1}, {"deprecated": True}])
def test_unusual_options_make_the_parser_argparses(kw):
    p = fastargs.Parser(prog="x")
    p.add_argument("-a", **kw)
    assert p._slow
    real = fastargs.Parser(prog="x")
    real.add_argument("-a", **kw)
    for argv in (["-a", "1", "2"], ["-a", "1"], ["-a"], []):
        try:
            expected = outcome(real.argparse().parse_args, argv)
        except (TypeError, ValueError) as exc:  # a call argparse refuses: its error, at parse time
            with pytest.raises(type(exc)):
                p.parse_args(argv)
            continue
        assert outcome(p.parse_args, argv) == expected


def test_single_dash_long_options_go_to_argparse():
    p = fastargs.Parser(prog="x")
    p.add_argument("-foo", action="store_true")
    p.add_argument("-f")
    assert p._slow
    assert vars(p.parse_args(["-foo", "-fx"])) == {"foo": True, "f": "x"}


def test_namespace_behaves_like_argparses():
    ns = fastargs.Namespace(a=1)
    ns.b = 2
    assert vars(ns) == {"a": 1, "b": 2} and "a" in ns and ns.b == 2
    assert ns == fastargs.Namespace(a=1, b=2)
    with pytest.raises(AttributeError):
        _ = ns.c


# Random command lines from each verb's vocabulary: whatever the outcome, both parsers agree.
def _vocabulary(verb: str) -> list[str]:
    fast, _ = parsers(verb)
    words = [f for f in fast._options if f not in ("--help",)]
    words += ["busybox", "web", "true", "sh", "-c", "echo hi", "A=1", "5", "-1", "-1.5", "", "-", "--",
              "-it", "-ti", "-ite", "-eA=1", "--env=X", "--rm=1", "--ne", "--na", "-x", "-Zq", "none",
              "stdout", "true", "false", "always", "image", "container", "10m", "-aq", "-fv", "-t0"]
    return words


@pytest.mark.parametrize("verb", sorted(FACTORIES))
def test_random_command_lines_parse_as_argparse_does(verb):
    words = _vocabulary(verb)

    @settings(max_examples=150, deadline=None, database=None)
    @given(st.lists(st.sampled_from(words), max_size=7))
    def check(argv: list[str]) -> None:
        same_as_argparse(verb, argv)

    check()


def test_an_option_like_a_negative_number_goes_to_argparse():
    """argparse reads "-1" as an option once the parser has one that looks like a number."""
    p = fastargs.Parser(prog="x")
    p.add_argument("-1", dest="one", action="store_true")
    p.add_argument("-n")
    assert p._slow
    real = fastargs.Parser(prog="x")
    real.add_argument("-1", dest="one", action="store_true")
    real.add_argument("-n")
    for argv in (["-1"], ["-n", "-1"], ["-n", "5"]):
        assert outcome(p.parse_args, argv) == outcome(real.argparse().parse_args, argv)
