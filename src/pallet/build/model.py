"""The builder's shared vocabulary: options, stages, the per-stage state, errors, and the base
of the step mixins (snapshots mounted for a step and committed as its layer)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pallet.build.dockerfile import Instruction, ParseError
from pallet.build.shell import process_word, split_words
from pallet.errors import InvalidArgument, PalletError
from pallet.units import go_duration_ns

Emit = Callable[[dict[str, Any]], None]
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ["/bin/sh", "-c"]
PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
              "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
BUILTIN_BASES = ("busybox", "hello-world")


class BuildError(PalletError):
    """A build failed for a reason in the Dockerfile or the context (a failing RUN, a missing
    file): the message is what Docker prints. `code` is the RUN's exit code where there is one."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class Cancelled(PalletError):
    """The build was stopped because its client went away."""


@dataclass
class BuildOptions:
    dockerfile: str = "Dockerfile"
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    cache_from: list[str] = field(default_factory=list)
    network_mode: str = "default"
    pull: bool = False
    platform: str = ""
    secrets: dict[str, bytes] = field(default_factory=dict)
    dockerfile_text: bytes | None = None   # when the Dockerfile did not come inside the context
    insecure_registries: tuple[str, ...] = ()  # for pulling base images (the daemon's setting)


@dataclass
class Stage:
    index: int
    name: str
    base: str                  # the FROM word as written (expanded later)
    platform: str
    from_ins: Instruction
    instructions: list[Instruction]


@dataclass
class State:
    """Where a stage is: its current image (None only before the first step of a scratch
    stage), the full image config being built, its layers, and the ARGs declared so far."""

    image: Any                                 # pallet.image.service.Image | None
    config: dict[str, Any]
    layers: list[Any]
    docker: bool
    args: dict[str, str] = field(default_factory=dict)
    cmd_set: bool = False

    @property
    def parent_id(self) -> str:
        return str(self.image.id) if self.image is not None else f"scratch:{self.config.get('architecture')}"

    @property
    def run(self) -> dict[str, Any]:
        return self.config.setdefault("config", {})

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for e in self.run.get("Env") or []:
            k, _, v = e.partition("=")
            out[k] = v
        return out


def timestamp(epoch: int | None) -> str:
    ts = datetime.fromtimestamp(epoch, UTC) if epoch is not None else datetime.now(UTC)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if epoch is None else ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def short_id(image_id: str) -> str:
    return image_id.partition(":")[2][:12]


def parse_duration(text: str, what: str) -> int:
    """A Go duration (`30s`, `1m30s`, `500ms`) in nanoseconds."""
    try:
        return go_duration_ns(text)
    except ValueError:
        raise InvalidArgument(f"{what}: invalid duration {text!r}") from None


def split_stages(instructions: Sequence[Instruction]) -> tuple[list[Instruction], list[Stage]]:
    """(ARGs before the first FROM, stages)."""
    meta: list[Instruction] = []
    stages: list[Stage] = []
    for ins in instructions:
        if ins.cmd == "FROM":
            words = ins.text.split()
            if len(words) not in (1, 3) or (len(words) == 3 and words[1].upper() != "AS"):
                raise ParseError(ins.line, 1, "FROM requires either one or three arguments "
                                              "(FROM <image> [AS <name>])")
            name = words[2].lower() if len(words) == 3 else ""
            if name and not re.match(r"^[a-z][a-z0-9_.-]*$", name):
                raise ParseError(ins.line, 1, f"invalid name for build stage: {name!r}, name can't start "
                                              "with a number or contain symbols")
            if name and any(s.name == name for s in stages):
                raise ParseError(ins.line, 1, f"duplicate name {name!r} for build stages")
            stages.append(Stage(len(stages), name, words[0], ins.flag("platform"), ins, []))
        elif not stages:
            if ins.cmd != "ARG":
                raise ParseError(ins.line, 1, f"no build stage in current context: {ins.cmd} before FROM "
                                              "(only ARG may come before the first FROM)")
            meta.append(ins)
        else:
            stages[-1].instructions.append(ins)
    if not stages:
        raise InvalidArgument("the Dockerfile has no FROM instruction (file with no instructions)")
    return meta, stages


def kv_pairs(text: str, env: Mapping[str, str], escape: str, what: str,
             legacy: bool = True) -> list[tuple[str, str]]:
    """The key=value pairs of ENV/LABEL/ARG (or the legacy `KEY value with spaces` form)."""
    words = split_words(text, escape)
    if not words:
        raise InvalidArgument(f"{what} requires at least one argument")
    if legacy and "=" not in words[0]:
        key = words[0]
        rest = text.strip()[len(key):].strip()
        if not rest:
            raise InvalidArgument(f"{what} names must be followed by a value: {what} {key} <value> "
                                  f"or {what} {key}=<value>")
        return [(process_word(key, env, escape), process_word(rest, env, escape))]
    out = []
    for w in words:
        k, eq, v = w.partition("=")
        if not eq or not k:
            raise InvalidArgument(f"{what}: {w!r} is not KEY=VALUE")
        out.append((process_word(k, env, escape), process_word(v, env, escape)))
    return out



class StepBase:
    """What the step mixins (run_step.RunSteps, copy_step.CopySteps) share with the build that
    runs them (builder._Build): its attributes, and the snapshot helpers both kinds of step use.
    Methods the build defines are declared here and implemented there."""

    b: Any                      # builder.Builder
    svc: Any                    # pallet.image.service.ImageService
    ctx: str
    opt: BuildOptions
    cancel: threading.Event
    lease: str
    epoch: int | None
    escape: str
    global_args: dict[str, str]
    stage_images: dict[int, Any]

    def say(self, text: str) -> None:
        raise NotImplementedError

    def check_cancel(self) -> None:
        raise NotImplementedError

    def _env_for_expansion(self, state: State) -> dict[str, str]:
        raise NotImplementedError

    def _stage_ref(self, word: str, stages: list[Stage], before: int) -> Stage | None:
        raise NotImplementedError

    def _base_image(self, word: str) -> Any:
        raise NotImplementedError

    def _cached(self, state: State, key: str) -> State | None:
        raise NotImplementedError

    def _from_cache_source(self, state: State, created_by: str, empty: bool) -> State | None:
        raise NotImplementedError

    def _history(self, created_by: str, empty: bool) -> dict[str, Any]:
        raise NotImplementedError

    def _layer_step_done(self, state: State, layer: Any, diff_id: str, created_by: str, key: str) -> State:
        """The image a layer step made: `state` plus `layer` and its history entry, stored, and
        entered in the build cache under `key`."""
        new = State(state.image, json.loads(json.dumps(state.config)), [*state.layers, layer], state.docker,
                    dict(state.args), state.cmd_set)
        new.config["rootfs"]["diff_ids"] = [*state.config["rootfs"]["diff_ids"], diff_id]
        new.config.setdefault("history", []).append(self._history(created_by, False))
        made = self._create(new, state)
        self.b.cache.put(key, str(made.image.id), created_by)
        return made

    def _layer_step_hit(self, state: State, key: str, created_by: str) -> State | None:
        """A step that makes a layer (RUN, COPY, ADD), found in the build cache or in an image of
        --cache-from (which then enters the cache): its result; None when it must run."""
        hit = self._cached(state, key)
        if hit is not None:
            hit.args, hit.cmd_set = dict(state.args), state.cmd_set
            return hit
        hit = self._from_cache_source(state, created_by, False)
        if hit is not None:
            self.b.cache.put(key, str(hit.image.id), created_by)
        return hit

    def _create(self, new: State, parent: State) -> State:
        raise NotImplementedError

    def _context_path(self, unsafe: str) -> str:
        """A path of the context (symlinks resolved inside it); BuildError outside it or missing."""
        full = os.path.realpath(os.path.join(self.ctx, unsafe.lstrip("/")))
        if full != self.ctx and not full.startswith(self.ctx + os.sep):
            raise BuildError(f"forbidden path outside the build context: {unsafe} ({full})")
        if not os.path.lexists(full):
            raise BuildError(f"file not found in build context or excluded by .dockerignore: stat {unsafe}: "
                             "file does not exist")
        return full

    @contextlib.contextmanager
    def _mounted(self, image: Any, readonly: bool) -> Iterator[tuple[str, str]]:
        """A snapshot of `image` mounted on a private directory: yields (key, rootfs path). The
        snapshot is removed on error, or after use when `readonly`; otherwise the caller
        commits it."""
        token = secrets.token_hex(12)
        key = f"build-{token}"
        work = os.path.join(self.b.exec_root, "build", token)
        rootfs = os.path.join(work, "rootfs")
        os.makedirs(rootfs, mode=0o700)
        mounted = False
        ok = False
        try:
            mounts = self.svc.prepare_build_rootfs(self.lease, key, image, readonly=readonly)
            self.svc.mount(mounts, rootfs)
            mounted = True
            try:
                yield key, rootfs
            finally:
                self.svc.unmount(mounts, rootfs)
                mounted = False
            ok = True
        finally:
            if mounted:
                with contextlib.suppress(OSError):
                    self.svc.unmount(mounts, rootfs)
            if readonly or not ok:
                self.svc.remove_build_rootfs(key)
            shutil.rmtree(work, ignore_errors=True)

    def _commit(self, key: str, state: State) -> tuple[Any, str]:
        try:
            return self.svc.commit_build_layer(self.lease, key, state.image, source_date_epoch=self.epoch)
        except BaseException:
            self.svc.remove_build_rootfs(key)
            raise


__all__ = ["BUILTIN_BASES", "DEFAULT_PATH", "DEFAULT_SHELL", "PROXY_ARGS", "BuildError",
           "BuildOptions", "Cancelled", "Emit", "Stage", "State", "StepBase", "kv_pairs",
           "parse_duration", "short_id", "split_stages", "timestamp"]
