"""Unit tests for pallet.runtime.cli: the command lines containerd, podman and conmon send to runc."""

from __future__ import annotations

import signal

import pytest

from pallet.errors import InvalidArgument
from pallet.runtime.cli import DEFAULT_ROOT, UsageError, build_parser, parse_args, parse_bytes, parse_signal


def parse(*argv: str):
    """The fast parser, checked against argparse on the same table (which --help uses)."""
    try:
        fast = vars(parse_args(list(argv)))
        fast.pop("version")  # argparse's version action prints and exits instead
    except UsageError:
        with pytest.raises(SystemExit):
            build_parser().parse_args(list(argv))
        raise SystemExit(2) from None
    assert fast == vars(build_parser().parse_args(list(argv)))
    return parse_args(list(argv))


# -- global options ------------------------------------------------------------------------------

def test_defaults():
    a = parse("state", "c1")
    assert (a.root, a.log, a.log_format) == (DEFAULT_ROOT, None, "text")
    assert not a.debug and not a.systemd_cgroup


def test_containerd_create():
    # go-runc: runc --root R --log L --log-format json create --bundle B --pid-file P --console-socket S ID
    a = parse("--root", "/run/containerd/runc/k8s.io", "--log", "/run/c/log.json", "--log-format", "json",
              "create", "--bundle", "/run/c/bundle", "--pid-file", "/run/c/init.pid",
              "--console-socket", "/tmp/pty.sock", "c1")
    assert a.command == "create"
    assert (a.root, a.log, a.log_format) == ("/run/containerd/runc/k8s.io", "/run/c/log.json", "json")
    assert (a.bundle, a.pid_file, a.console_socket, a.id) == ("/run/c/bundle", "/run/c/init.pid",
                                                              "/tmp/pty.sock", "c1")
    assert (a.no_pivot, a.preserve_fds) == (False, 0)


def test_create_with_every_option_containerd_may_add():
    a = parse("--root", "R", "create", "--bundle", "B", "--pid-file", "P", "--no-pivot", "--no-new-keyring",
              "--preserve-fds", "2", "c1")
    assert (a.no_pivot, a.no_new_keyring, a.preserve_fds) == (True, True, 2)


def test_systemd_cgroup_and_equals_forms_as_conmon_sends_them():
    # podman hands conmon --runtime-arg values like "--log-format=json" and "--systemd-cgroup".
    a = parse("--systemd-cgroup", "--root=/run/runc", "--log-format=json", "--log=/x/log",
              "create", "--bundle=/b", "--pid-file=/p", "c1")
    assert a.systemd_cgroup
    assert (a.root, a.log_format, a.log, a.bundle, a.pid_file) == ("/run/runc", "json", "/x/log", "/b", "/p")


def test_rootless_and_debug_globals():
    a = parse("--debug", "--rootless", "true", "state", "c1")
    assert a.debug and a.rootless == "true"


def test_short_bundle_and_default_bundle():
    assert parse("create", "-b", "/b", "c1").bundle == "/b"
    assert parse("create", "c1").bundle == "."


def test_run_detached():
    a = parse("run", "-d", "--bundle", "/b", "--pid-file", "/p", "c1")
    assert (a.command, a.detach, a.keep, a.bundle) == ("run", True, False, "/b")


@pytest.mark.parametrize("verb", ["start", "state", "pause", "resume"])
def test_verbs_that_take_an_id(verb):
    a = parse(verb, "c1")
    assert (a.command, a.id) == (verb, "c1")


# -- kill / delete -------------------------------------------------------------------------------

def test_kill_with_a_signal_number():
    a = parse("kill", "c1", "9")
    assert (a.id, a.signal, a.all) == ("c1", "9", False)


def test_kill_all_with_a_signal_name():
    a = parse("--root", "R", "kill", "--all", "c1", "KILL")
    assert (a.id, a.signal, a.all) == ("c1", "KILL", True)


def test_kill_default_signal_is_sigterm():
    assert parse("kill", "c1").signal == "SIGTERM"


def test_delete_force():
    a = parse("delete", "--force", "c1")
    assert (a.id, a.force) == ("c1", True)
    assert parse("delete", "-f", "c1").force
    assert not parse("delete", "c1").force


# -- exec -------------------------------------------------------------------------------------

def test_containerd_exec():
    a = parse("--root", "R", "--log", "L", "--log-format", "json", "exec", "--process", "/run/c/process.json",
              "--detach", "--pid-file", "/run/c/exec.pid", "c1")
    assert (a.process, a.detach, a.pid_file, a.id, a.args) == ("/run/c/process.json", True,
                                                               "/run/c/exec.pid", "c1", [])


def test_exec_with_a_console_socket():
    a = parse("exec", "--process", "P", "--console-socket", "/tmp/s", "--detach", "--pid-file", "F", "c1")
    assert a.console_socket == "/tmp/s"


def test_exec_command_line_form():
    a = parse("exec", "-t", "-e", "A=b", "--env", "C=d", "--cwd", "/", "c1", "sh")
    assert (a.tty, a.env, a.cwd, a.id, a.args) == (True, ["A=b", "C=d"], "/", "c1", ["sh"])


def test_exec_program_arguments_are_not_options_of_exec():
    a = parse("exec", "c1", "sh", "-c", "echo --detach -t")
    assert a.args == ["sh", "-c", "echo --detach -t"]
    assert not a.detach and not a.tty


def test_exec_user_caps_and_gids():
    a = parse("exec", "-u", "1000:1000", "-g", "10", "-g", "20", "--cap", "CAP_NET_ADMIN", "--no-new-privs",
              "c1", "id")
    assert (a.user, a.additional_gids, a.cap) == ("1000:1000", ["10", "20"], ["CAP_NET_ADMIN"])
    assert a.no_new_privs


# -- ps, events, update, list, spec ------------------------------------------------------------------

def test_ps_json():
    a = parse("ps", "--format", "json", "c1")
    assert (a.format, a.id, a.ps_args) == ("json", "c1", [])


def test_ps_with_ps_arguments():
    a = parse("ps", "c1", "-eo", "pid,comm")
    assert (a.format, a.ps_args) == ("table", ["-eo", "pid,comm"])


def test_ps_format_is_checked():
    with pytest.raises(SystemExit):
        parse("ps", "--format", "yaml", "c1")


def test_events_stats():
    a = parse("events", "--stats", "c1")
    assert (a.command, a.stats, a.id) == ("events", True, "c1")
    assert parse("events", "--interval", "1s", "c1").interval == "1s"


def test_update_resources_from_stdin():
    a = parse("update", "--resources", "-", "c1")
    assert (a.resources, a.id) == ("-", "c1")


def test_update_flags():
    a = parse("update", "--memory", "512m", "--cpu-shares", "512", "--pids-limit", "100",
              "--cpuset-cpus", "0-1", "c1")
    assert (a.memory, a.cpu_shares, a.pids_limit, a.cpuset_cpus) == ("512m", 512, 100, "0-1")


def test_list_and_spec_and_features():
    a = parse("list", "--format", "json", "-q")
    assert (a.format, a.quiet) == ("json", True)
    a = parse("spec", "--bundle", "/b", "--rootless")
    assert (a.bundle, a.rootless) == ("/b", True)
    assert parse("features").command == "features"


def test_no_command_is_allowed_for_help():
    assert parse().command is None


def test_log_format_is_checked():
    with pytest.raises(SystemExit):
        parse("--log-format", "xml", "state", "c1")


def test_create_needs_an_id():
    with pytest.raises(SystemExit):
        parse("create", "--bundle", "/b")


@pytest.mark.parametrize("argv", [
    ["ps", "c1", "--", "-ef"], ["exec", "c1", "--", "ls"], ["kill", "c1", "--", "9"],
    ["state", "c1", "extra"], ["nosuchverb", "c1"], ["create", "--nosuch", "c1"], ["--nosuch", "state", "c1"],
    ["update", "--cpu-shares", "x", "c1"], ["exec", "-e"], ["delete", "--force=1", "c1"],
    ["create", "--preserve-fds=3", "c1"], ["exec", "-u", "0", "-e", "A=1", "c1", "-x"],
])
def test_the_fast_parser_agrees_with_argparse(argv):
    try:
        parse(*argv)
    except SystemExit:
        pass


# -- parse_signal ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value,number", [
    ("KILL", signal.SIGKILL),
    ("SIGKILL", signal.SIGKILL),
    ("9", 9),
    ("sigterm", signal.SIGTERM),
    ("term", signal.SIGTERM),
    ("SigHup", signal.SIGHUP),
    ("15", 15),
    ("USR1", signal.SIGUSR1),
    ("WINCH", signal.SIGWINCH),
    ("0", 0),
])
def test_parse_signal(value, number):
    assert parse_signal(value) == number


@pytest.mark.parametrize("value", ["NOPE", "SIGNOPE", "", "-9", "9x", "SIG"])
def test_parse_signal_unknown(value):
    with pytest.raises(InvalidArgument, match="unknown signal"):
        parse_signal(value)


# -- parse_bytes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("value,number", [
    ("0", 0),
    ("1024", 1024),
    ("100b", 100),
    ("1k", 1024),
    ("1kb", 1024),
    ("1K", 1024),
    ("512m", 512 * 1024**2),
    ("512MB", 512 * 1024**2),
    ("2g", 2 * 1024**3),
    ("1.5g", 3 * 1024**3 // 2),
    (" 64m ", 64 * 1024**2),
    ("-1", -1),
])
def test_parse_bytes(value, number):
    assert parse_bytes(value) == number


@pytest.mark.parametrize("value", ["", "m", "lots", "1mk", "1x", "nan"])
def test_parse_bytes_invalid(value):
    with pytest.raises(InvalidArgument, match=r"invalid (size|suffix)"):
        parse_bytes(value)


@pytest.mark.parametrize("value", ["inf", "infg", "1e999"])
def test_parse_bytes_infinite_is_invalid(value):
    with pytest.raises(InvalidArgument):
        parse_bytes(value)


@pytest.mark.parametrize("value,number", [
    ("512MiB", 512 * 1024**2),
    ("1t", 1024**4),
])
def test_parse_bytes_takes_what_runc_takes(value, number):
    assert parse_bytes(value) == number


def test_parse_bytes_reads_as_go_units_v05():
    # runc 1.1 (go-units v0.4's expression) took "1Gi"; go-units v0.5, which runc 1.2 and the
    # docker CLI use, refuses a suffix "i" without "b" (tests/unit/test_units_sizes.py)
    with pytest.raises(InvalidArgument, match="invalid suffix"):
        parse_bytes("1Gi")
