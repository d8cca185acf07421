"""Rewrites pip's console scripts for pallet-runtime and pallet as launchers that skip `site`.

pip writes each console script from distlib's template: `#!<venv>/bin/python3`, then
`import re` and `sys.exit(main())`. For a command that lives ~10 ms that costs twice: `site`
(~3 ms here: .pth files, sitecustomize, the distutils shim) and `re` (~4 ms: enum, functools,
collections), only to strip a "-script.pyw" suffix that never occurs on Linux. podman, conmon
and containerd start the runtime three or more times per container (create, start, state,
delete), by path. `python -m pallet.runtime.launcher [BIN_DIR]` (run by scripts/install-deps
after `pip install -e`) replaces those scripts in place (write to a temp file, rename) by:

    #!<venv>/bin/python3 -IS
    # pallet launcher, format 1: made by `python -m pallet.runtime.launcher`; pip may replace it
    import sys
    sys.path[:0] = ['<directory holding the pallet package>']   (editable installs only)
    sys.path.append('<venv site-packages>')
    from pallet.runtime.cli import run
    raise SystemExit(run())

The path stays the same, so whatever runs the runtime by path keeps working; if pip writes its
own script again (a reinstall), that one works too, only slower. Flags (python(1)): -S skips
`site`; the site-packages directory is appended instead, so third-party imports still resolve
(only .pth processing is lost, which pallet does not use). pallet-runtime also gets -I: it runs
as root on behalf of other programs, so PYTHONPATH and friends from their environment must not
change what it imports (runc, a static binary, has no such knob either). The kernel passes the
text after the interpreter as one argument (execve(2), "Interpreter scripts"); Python reads
"-IS" as both flags. palletd keeps pip's script: a daemon starts once, and it uses more of
site-packages than pallet's own code.
"""

from __future__ import annotations

import os
import sys

FORMAT = 1
MARKER = f"# pallet launcher, format {FORMAT}"

# console script -> (python flags, module, function); the same entry points as pyproject.toml.
LAUNCHERS: dict[str, tuple[str, str, str]] = {
    "pallet-runtime": ("-IS", "pallet.runtime.cli", "run"),
    "pallet": ("-S", "pallet.cli.main", "main"),
}


def render(python: str, flags: str, module: str, func: str, package_parent: str,
           site_dirs: list[str]) -> str:
    """The text of one launcher (see the module docstring)."""
    # An editable install's source directory goes first, as its .pth line would put it early;
    # a regular install lives in site-packages, which stays behind the standard library.
    first = [] if package_parent in site_dirs else [f"sys.path[:0] = [{package_parent!r}]"]
    lines = [
        f"#!{python} {flags}",
        f"{MARKER}: made by `python -m pallet.runtime.launcher`; pip may replace it",
        "import sys",
        *first,
        *(f"sys.path.append({d!r})" for d in site_dirs),
        f"from {module} import {func}",
        f"raise SystemExit({func}())",
    ]
    return "\n".join(lines) + "\n"


def site_dirs() -> list[str]:
    """This interpreter's site-packages directories (purelib and platlib, once each)."""
    import sysconfig

    paths = sysconfig.get_paths()
    out: list[str] = []
    for key in ("purelib", "platlib"):
        if paths[key] not in out:
            out.append(paths[key])
    return out


def install(bin_dir: str, python: str | None = None) -> list[str]:
    """Write the launchers into bin_dir, replacing pip's scripts of the same name; returns the
    paths written. Atomic per file, idempotent."""
    import pallet

    # Absolute (a shebang is not looked up in PATH), but not resolved: the venv is found from
    # the symlink's own directory (pyvenv.cfg, docs.python.org/3/library/venv.html).
    python = os.path.abspath(python or os.path.join(bin_dir, "python3"))
    if not os.access(python, os.X_OK):
        raise FileNotFoundError(f"{python}: no such interpreter (pass the venv's bin directory)")
    parent = os.path.dirname(os.path.dirname(os.path.abspath(pallet.__file__)))
    written = []
    for name, (flags, module, func) in LAUNCHERS.items():
        path = os.path.join(bin_dir, name)
        text = render(python, flags, module, func, parent, site_dirs())
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.rename(tmp, path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) > 1 or (argv and argv[0].startswith("-")):
        print("usage: python -m pallet.runtime.launcher [BIN_DIR]   (default: this python's bin)",
              file=sys.stderr)
        return 2
    bin_dir = argv[0] if argv else os.path.dirname(sys.executable)
    try:
        for path in install(bin_dir):
            print(f"launcher: {path}")
    except OSError as exc:
        print(f"launcher: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
