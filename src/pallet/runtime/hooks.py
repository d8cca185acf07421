"""Run OCI lifecycle hooks: each gets the container state as JSON on stdin (config.md "Hooks").

createRuntime, prestart, poststart and poststop run in the runtime's namespaces; createContainer
and startContainer run in the container's (from the init process, before and after pivot_root).
A failing hook fails the operation, except poststop, whose failures are only warnings.
"""

from __future__ import annotations

import os

from pallet import jsonio
from pallet.errors import PalletError


class HookError(PalletError):
    pass


def prepare(hooks: dict) -> None:
    """Import what run_hooks needs now, before the init pivots away from the host's modules, if
    the config has hooks that run in the container's namespaces. Without hooks, `create` saves
    the ~1 ms subprocess import."""
    if hooks.get("createContainer") or hooks.get("startContainer"):
        import subprocess  # noqa: F401


def run_hooks(kind: str, hooks: list[dict], state: dict) -> None:
    if not hooks:
        return
    import subprocess

    payload = jsonio.dumps(state).encode()
    for i, hook in enumerate(hooks):
        args = hook.get("args") or [hook["path"]]
        env = dict(e.split("=", 1) for e in hook.get("env", []) if "=" in e)
        try:
            proc = subprocess.run(
                args, executable=hook["path"], input=payload, env=env, capture_output=True,
                timeout=hook.get("timeout"), close_fds=True,
            )
        except subprocess.TimeoutExpired:
            raise HookError(f"hooks.{kind}[{i}] {hook['path']}: timed out after {hook['timeout']}s") from None
        except OSError as exc:
            raise HookError(f"hooks.{kind}[{i}] {hook['path']}: {exc}") from exc
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip() or proc.stdout.decode(errors="replace").strip()
            raise HookError(f"hooks.{kind}[{i}] {hook['path']}: exit status {proc.returncode}: {err}")


def run_poststop(hooks: list[dict], state: dict, warn) -> None:
    for i, hook in enumerate(hooks):
        try:
            run_hooks("poststop", [hook], state)
        except HookError as exc:
            warn(f"poststop hook {i} failed: {exc}")


def ensure_executable(path: str) -> None:
    if not os.access(path, os.X_OK):
        raise HookError(f"hook {path}: not executable")
