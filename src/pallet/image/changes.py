"""`--change` instructions of `docker import` and `docker commit`, applied to an image's run config.

The subset Docker accepts there (docker/daemon/commit.go and dockerfile's `ImportChanges`):
CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD is refused, STOPSIGNAL, USER, VOLUME, WORKDIR.
Each change is one Dockerfile line. Forms (Dockerfile reference, "Format" and each instruction):

    CMD ["exec","form"]        a JSON array is taken as is
    CMD echo hi                shell form -> ["/bin/sh", "-c", "echo hi"]
    ENV A=1 B="two words"      key=value pairs (shell-like quoting); legacy `ENV A one two` = "one two"
    LABEL a=b "c d"=e          key=value pairs, as ENV
    EXPOSE 80 53/udp 8000-8002 ports, ranges expanded; "/tcp" is the default protocol
    VOLUME ["/a","/b"] | /a /b JSON array or words
    WORKDIR /srv               relative paths are joined to the current WorkingDir
    USER app[:group]  STOPSIGNAL SIGTERM

`apply_changes` returns a new run-config dict (the `config` object of an OCI image config, Docker
casing: Cmd, Entrypoint, Env, ExposedPorts, Labels, StopSignal, User, Volumes, WorkingDir).
"""

from __future__ import annotations

import copy
import json
import posixpath
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from pallet.errors import InvalidArgument

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")


def _json_or_none(rest: str) -> list[str] | None:
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except json.JSONDecodeError:
        return None  # Docker falls back to the shell form for a malformed array
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return value


def _command(rest: str) -> list[str]:
    value = _json_or_none(rest)
    return value if value is not None else ["/bin/sh", "-c", rest]


def _pairs(instruction: str, rest: str) -> list[tuple[str, str]]:
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise InvalidArgument(f"{instruction} {rest!r}: {exc}") from exc
    if not words:
        raise InvalidArgument(f"{instruction} requires at least one argument")
    if "=" not in words[0]:
        # Legacy form `ENV KEY value with spaces`: one pair, the rest of the line is the value.
        key, _, value = rest.strip().partition(" ")
        if not value.strip():
            raise InvalidArgument(f"{instruction} {key}: missing value (use {key}=value)")
        return [(key, value.strip())]
    out = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"{instruction}: {word!r} is not key=value")
        out.append((key, value))
    return out


def _ports(rest: str) -> list[str]:
    out = []
    for word in rest.split():
        port, _, proto = word.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"EXPOSE {word}: unknown protocol {proto!r}")
        lo, _, hi = port.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise InvalidArgument(f"EXPOSE {word}: invalid port") from None
        if not (0 < first <= last <= 65535):
            raise InvalidArgument(f"EXPOSE {word}: invalid port range")
        out += [f"{p}/{proto}" for p in range(first, last + 1)]
    return out


def parse_change(line: str) -> tuple[str, str]:
    """Split one change into (INSTRUCTION, rest); InvalidArgument for what import/commit refuse."""
    text = line.strip()
    instruction, _, rest = text.partition(" ")
    if "\t" in instruction:
        instruction, _, more = instruction.partition("\t")
        rest = more + " " + rest
    instruction = instruction.upper()
    if instruction not in ALLOWED:
        raise InvalidArgument(f"{instruction or line!r} is not a valid change command "
                              f"(allowed: {', '.join(ALLOWED)})")
    rest = rest.strip()
    if not rest:
        raise InvalidArgument(f"{instruction} requires an argument")
    return instruction, rest


def apply_changes(config: Mapping[str, Any] | None, changes: Iterable[str]) -> dict[str, Any]:
    """A copy of the run config `config` with `changes` applied in order."""
    out: dict[str, Any] = copy.deepcopy(dict(config or {}))
    for line in changes:
        instruction, rest = parse_change(line)
        if instruction == "CMD":
            out["Cmd"] = _command(rest)
        elif instruction == "ENTRYPOINT":
            out["Entrypoint"] = _command(rest)
            # Dockerfile reference: ENTRYPOINT resets a CMD inherited from the base image.
            out.pop("Cmd", None)
        elif instruction == "ENV":
            env = list(out.get("Env") or [])
            for key, value in _pairs(instruction, rest):
                env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
            out["Env"] = env
        elif instruction == "LABEL":
            labels = dict(out.get("Labels") or {})
            labels.update(_pairs(instruction, rest))
            out["Labels"] = labels
        elif instruction == "EXPOSE":
            ports = dict(out.get("ExposedPorts") or {})
            ports.update({p: {} for p in _ports(rest)})
            out["ExposedPorts"] = ports
        elif instruction == "VOLUME":
            paths = _json_or_none(rest) or rest.split()
            volumes = dict(out.get("Volumes") or {})
            volumes.update({p: {} for p in paths if p})
            out["Volumes"] = volumes
        elif instruction == "WORKDIR":
            out["WorkingDir"] = posixpath.normpath(posixpath.join(out.get("WorkingDir") or "/", rest))
        elif instruction == "USER":
            out["User"] = rest
        elif instruction == "STOPSIGNAL":
            out["StopSignal"] = rest
    return out
