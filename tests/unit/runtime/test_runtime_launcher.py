"""The console-script launchers (pallet.runtime.launcher) and the import budget of pallet-runtime.

The budget: what each command imports decides most of its start-up (docs/design/runtime.md
"Start-up"), so these tests fail when a heavy module creeps back onto a command's path.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import pallet
from pallet.runtime import launcher

SRC = str(Path(pallet.__file__).resolve().parent.parent)
# Stdlib modules that cost milliseconds each (with what they pull in) and that no short command needs.
HEAVY = ("json", "re", "enum", "pathlib", "contextlib", "signal", "typing", "dataclasses", "argparse",
         "functools", "collections", "subprocess", "socket", "hashlib", "inspect", "datetime", "shutil",
         "tempfile")


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    (d / "python3").symlink_to(sys.executable)  # the venv's python, as in <venv>/bin
    for name in launcher.LAUNCHERS:  # what pip left there
        (d / name).write_text("#!python\nimport re\n")
    return d


def test_install_replaces_pips_scripts_in_place(bin_dir: Path):
    written = launcher.install(str(bin_dir))
    assert sorted(written) == sorted(str(bin_dir / n) for n in launcher.LAUNCHERS)
    text = (bin_dir / "pallet-runtime").read_text()
    lines = text.splitlines()
    assert lines[0] == f"#!{bin_dir / 'python3'} -IS"  # absolute, not resolved: the venv's symlink
    assert lines[1].startswith(launcher.MARKER)
    assert f"sys.path[:0] = [{SRC!r}]" in lines
    assert "import re" not in text
    assert (bin_dir / "pallet").read_text().splitlines()[0] == f"#!{bin_dir / 'python3'} -S"
    for name in launcher.LAUNCHERS:
        assert os.access(bin_dir / name, os.X_OK)
    # Idempotent: a second run writes the same text and leaves no temp file.
    launcher.install(str(bin_dir))
    assert (bin_dir / "pallet-runtime").read_text() == text
    assert sorted(p.name for p in bin_dir.iterdir()) == sorted(["python3", *launcher.LAUNCHERS])


def test_launched_runtime_runs_from_anywhere_without_site(bin_dir: Path, tmp_path: Path):
    launcher.install(str(bin_dir))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": "/nonexistent/evil"}  # -I: ignored
    out = subprocess.run([str(bin_dir / "pallet-runtime"), "--version"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"pallet-runtime version {pallet.__version__}")
    # Usage errors keep runc's exit status 2 through the launcher.
    bad = subprocess.run([str(bin_dir / "pallet-runtime"), "no-such-command"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
    # The pallet CLI through its launcher (stdlib and pallet.api.client only; no daemon needed).
    cli = subprocess.run([str(bin_dir / "pallet"), "--help"], cwd=tmp_path, env=env, capture_output=True,
                         text=True)
    assert cli.returncode == 0 and "pallet" in cli.stdout


def test_launched_runtime_does_not_run_site(bin_dir: Path, tmp_path: Path):
    launcher.install(str(bin_dir))
    probe = tmp_path / "probe"
    # The same launcher text, with a probe in place of the command: which modules were loaded.
    text = (bin_dir / "pallet-runtime").read_text().replace(
        "from pallet.runtime.cli import run\nraise SystemExit(run())\n",
        "print(' '.join(sorted(sys.modules)))\n")
    probe.write_text(text)
    probe.chmod(0o755)
    mods = subprocess.run([str(probe)], capture_output=True, text=True, check=True).stdout.split()
    assert "site" not in mods and "re" not in mods


def test_main_rejects_options(capsys):
    assert launcher.main(["--help"]) == 2
    assert "usage" in capsys.readouterr().err


def _imported_after(code: str) -> set[str]:
    """Modules loaded by `code` in a fresh `python -IS` with pallet on the path, as the launcher runs."""
    prog = f"import sys\nsys.path[:0] = [{SRC!r}]\n{code}\nprint(' '.join(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-IS", "-c", prog], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_start_state_and_kill_import_no_heavy_module():
    mods = _imported_after(
        "from pallet.runtime import cli, commands, container, state\n"
        "from pallet.runtime.cli import parse_args\n"
        "parse_args(['--root', '/r', 'start', 'c1'])\n"
        "container.Runtime('/r').store.fifo('c1')\n"
        "from pallet import jsonio\n"
        "jsonio.dumps(state.oci_state(state.ContainerState('c', '/b', '/b/r', 'now', 'root', '/p', {}), "
        "'created'), indent=2)")
    assert sorted(mods & set(HEAVY)) == []
    assert "_socket" not in mods and "ctypes" not in mods  # create's and exec's, not start's


def test_create_and_delete_import_no_heavy_module(tmp_path: Path):
    # The v1 driver over a fake cgroupfs (the v2 driver still uses pathlib and typing).
    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "cgroup.procs").write_text("")
    mods = _imported_after(
        "from pallet.runtime import commands, container, init, rootfs, seccomp, process, hooks\n"
        "from pallet.syscalls import real\n"
        "real()\n"
        f"cg = container.Runtime('/r', cgroup_root={str(tmp_path)!r})._cgroup('/pallet/x')\n"
        "cg.validate({'memory': {'limit': 1 << 20}})\n"
        "cg.exists(); cg.pids()\n"
        "from pallet.cgroups import conversions, devices\n"
        "devices.parse_rules([{'allow': False, 'access': 'rwm'}])\n"
        "conversions.valid_cpu_list('0-1'); conversions.hugepage_size_suffix('2MB')\n")
    assert sorted(mods & set(HEAVY)) == []


def test_regular_install_keeps_site_packages_behind_the_stdlib():
    site = "/venv/lib/python3.11/site-packages"
    text = launcher.render("/venv/bin/python3", "-IS", "pallet.runtime.cli", "run", site, [site])
    assert "sys.path[:0]" not in text and f"sys.path.append({site!r})" in text
    editable = launcher.render("/venv/bin/python3", "-IS", "pallet.runtime.cli", "run", "/src", [site])
    assert "sys.path[:0] = ['/src']" in editable


def test_real_start_delete_state_kill_commands_import_no_heavy_module(tmp_path: Path):
    """The commands themselves (cli.main), on a stopped container's state: state, start and kill
    (refused: it is stopped) and delete (its cgroup, under a name no host has, is absent)."""
    from pallet.runtime.state import ContainerState, StateStore

    root = tmp_path / "root"
    store = StateStore(str(root))
    store.reserve("c1")
    absent = f"/pallet-unit-absent-{os.getpid()}/c1"  # under a name no host has
    store.save(ContainerState(id="c1", bundle="/b", rootfs="/b/rootfs", created="now", owner="root",
                              cgroup_path=absent, config={},
                              cgroup_dirs=[f"/sys/fs/cgroup/pids{absent}", f"/sys/fs/cgroup/memory{absent}"]))
    for argv in (["state", "c1"], ["start", "c1"], ["kill", "c1", "KILL"], ["delete", "c1"]):
        mods = _imported_after(
            "import io\nfrom pallet.runtime import cli\n"
            "sys.stdout, sys.stderr = io.StringIO(), io.StringIO()\n"  # state's JSON, kill's refusal
            f"rc = cli.main(['--root', {str(root)!r}, *{argv!r}])\n"
            "sys.stdout = sys.__stdout__\n")
        assert sorted(mods & set(HEAVY)) == [], argv
        # create's and exec's code (pallet.runtime.spawn), ctypes and the cgroup helper stay out
        assert not mods & {"ctypes", "pallet.runtime.spawn", "pallet.runtime.cgwarm", "_socket",
                           "pallet.syscalls.flags"}, argv
        # delete of a stopped container rmdirs the directories create recorded: no driver
        assert not {m for m in mods if m.startswith("pallet.cgroups")}, argv
    assert not (root / "c1").exists()  # delete did its work


def test_owner_comes_from_etc_passwd_without_nss(tmp_path: Path):
    from pallet.runtime.spawn import _owner

    passwd = tmp_path / "passwd"
    passwd.write_text(f"daemon:x:1:1::/:/bin/false\nme:x:{os.getuid()}:0::/root:/bin/sh\n")
    assert _owner(str(passwd)) == "me"
    mods = _imported_after(f"from pallet.runtime.spawn import _owner\n_owner({str(passwd)!r})")
    assert "pwd" not in mods  # glibc's NSS (nscd's socket first) is asked only when the file lacks us


def test_delete_path_of_the_v2_driver_imports_no_heavy_module(tmp_path: Path):
    """What `delete` asks of a cgroup v2 manager (a fake unified tree): no pathlib, typing or
    controller modules (pure v2 is most hosts; this VM is v1, so the real command cannot say)."""
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids")
    (tmp_path / "pallet" / "c1").mkdir(parents=True)
    mods = _imported_after(
        "from pallet.runtime import container\n"
        f"cg = container.Runtime('/r', cgroup_root={str(tmp_path)!r})._cgroup('/pallet/c1')\n"
        "assert cg.version == 2 and cg.exists() and cg.pids() == []\n"
        "cg.destroy()\n")
    assert sorted(mods & set(HEAVY)) == []
    assert not {m for m in mods if m.startswith("pallet.cgroups.v2.")}
    assert not (tmp_path / "pallet" / "c1").exists()
