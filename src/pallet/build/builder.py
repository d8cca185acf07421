"""The builder: a parsed Dockerfile and a context directory become an image, step by step, with a cache.

It behaves as Docker's classic builder where a user can see it (the `Step N/M : ...` stream,
one image per step with the previous as its parent, `---> Using cache`, history entries with
`empty_layer` for metadata steps, `created_by` texts) and as BuildKit where the classic
builder falls short (stages the target does not need are skipped, RUN --mount, heredocs,
SOURCE_DATE_EPOCH, COPY --chmod/--link).

Steps:
- FROM: a stage by name, `scratch`, or an image: the store's, else (the built-in busybox and
  hello-world are bootstrapped) pulled through pallet.registry.client. ONBUILD triggers of the
  base run right after it.
- Metadata steps (ENV, LABEL, CMD, ...) make an image with the same layers and a new config.
- RUN drives the OCI runtime directly (`<runtime> run --bundle`) on a fresh snapshot of the
  parent: one runtime process per step, no monitor, no engine record. The snapshot is diffed
  into the new layer and then committed as that layer's chain snapshot, so the next step
  starts at once (no unpack). Measured here: see docs/design/build.md.
- COPY/ADD copy into a mounted snapshot of the parent (so existing directories and symlinks
  in the destination path behave as in the image) and the snapshot becomes the layer.

Modules: model.py (options, stages, state, errors), run_step.py (RUN), copy_step.py (COPY, ADD),
files.py (tree hashing and copying), cache.py (the step cache and cache mounts).

Variable substitution happens where Docker's does (Dockerfile reference, "Environment
replacement"; moby's replaceEnvAllowed): ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER,
VOLUME, WORKDIR, ARG, each handler calling pallet.build.shell itself; RUN, CMD and ENTRYPOINT are
left to the shell, ONBUILD triggers are kept as written.

Cache (pallet.build.cache): a step's key is its parent image id, its `created_by` (which names
the copied content's hash, or the command and build args in effect) and its extra inputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from pallet.build.cache import BuildCache, step_key
from pallet.build.copy_step import CopySteps
from pallet.build.dockerfile import Instruction, ParseError, parse, parse_kv_flag
from pallet.build.model import (
    BUILTIN_BASES,
    DEFAULT_PATH,
    DEFAULT_SHELL,
    PROXY_ARGS,
    BuildError,
    BuildOptions,
    Cancelled,
    Emit,
    Stage,
    State,
    kv_pairs,
    parse_duration,
    short_id,
    split_stages,
    timestamp,
)
from pallet.build.run_step import RunSteps
from pallet.build.shell import process_word, process_words, split_words
from pallet.errors import InvalidArgument, NotFound, NotSupported, PalletError

# --- the builder --------------------------------------------------------------------------------

class Builder:
    """Builds on one image store. `runtime` is the OCI runtime's argv (pallet-runtime, runc);
    its state goes under `<exec_root>/build/runtime`; RUN containers get cgroups under
    `cgroup_parent`."""

    def __init__(self, images: Any, cache: BuildCache, *, exec_root: str, runtime: Sequence[str],
                 cgroup_parent: str = "/pallet") -> None:
        self.images = images
        self.cache = cache
        self.exec_root = os.path.abspath(exec_root)
        self.runtime = list(runtime)
        self.runtime_root = os.path.join(self.exec_root, "build", "runtime")
        self.cgroup_parent = "/" + cgroup_parent.strip("/")
        os.makedirs(self.runtime_root, mode=0o700, exist_ok=True)
        self.recovered = self.recover()

    def recover(self) -> list[str]:
        """Clean what a build cut short by a crash left (palletd killed mid-RUN): RUN containers
        in the build runtime root (deleted with --force, which kills them), mounted rootfs
        directories under `<exec_root>/build/`, active build snapshots, and context directories
        under `<data-root>/build/tmp/`. Run once, when the daemon makes its builder, before any
        build of its own; returns what was removed."""
        import shutil
        import subprocess

        from pallet.syscalls import flags as F

        done: list[str] = []
        for name in sorted(os.listdir(self.runtime_root)):
            if not name.startswith("."):
                subprocess.run([*self.runtime, "--root", self.runtime_root, "delete", "--force", name],
                               capture_output=True, timeout=60)
                shutil.rmtree(os.path.join(self.runtime_root, name), ignore_errors=True)
                done.append(f"container {name}")
        build_dir = os.path.join(self.exec_root, "build")
        for token in sorted(os.listdir(build_dir)):
            if token == "runtime":
                continue
            rootfs = os.path.join(build_dir, token, "rootfs")
            if os.path.ismount(rootfs):
                from pallet.syscalls import real

                with contextlib.suppress(OSError):
                    (self.images.syscalls or real()).umount2(rootfs, F.MNT_DETACH)
            shutil.rmtree(os.path.join(build_dir, token), ignore_errors=True)
            done.append(f"rootfs {token}")
        for info in list(self.images.snapshots.walk()):
            if info.kind != "committed" and info.name.startswith("build-") and "pallet.build" in info.labels:
                self.images.remove_build_rootfs(info.name)
                done.append(f"snapshot {info.name}")
        for name in os.listdir(self.cache.tmp):
            shutil.rmtree(os.path.join(self.cache.tmp, name), ignore_errors=True)
            done.append(f"tmp {name}")
        return done

    def build(self, context_dir: str, options: BuildOptions, emit: Emit,
              cancel: threading.Event | None = None) -> str:
        """Build; returns the image id. Progress goes to `emit` as Docker's JSON messages
        ({"stream": ...}, {"aux": {"ID": ...}}). Raises BuildError for a failing step."""
        return _Build(self, context_dir, options, emit, cancel or threading.Event()).run()


class _Build(RunSteps, CopySteps):
    def __init__(self, b: Builder, context_dir: str, options: BuildOptions, emit: Emit,
                 cancel: threading.Event) -> None:
        self.b = b
        self.svc = b.images
        self.ctx = os.path.realpath(context_dir)
        self.opt = options
        self.emit = emit
        self.cancel = cancel
        self.stage_images: dict[int, Any] = {}
        self.used_args: set[str] = set()
        self.cache_from: list[Any] = []
        self.epoch: int | None = None
        from pallet.image.builtin.rootfs import oci_platform

        self.arch, self.variant = oci_platform(None)

    def say(self, text: str) -> None:
        self.emit({"stream": text})

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("the build was cancelled: its client went away")

    # --- plan ---------------------------------------------------------------------------------

    def _dockerfile(self) -> Any:
        if self.opt.dockerfile_text is not None:
            return parse(self.opt.dockerfile_text, self.opt.dockerfile)
        name = self.opt.dockerfile or "Dockerfile"
        path = os.path.realpath(os.path.join(self.ctx, name))
        if not path.startswith(self.ctx + os.sep) or not os.path.isfile(path):
            # Docker also tries the lower-case name for the default one.
            alt = os.path.join(self.ctx, "dockerfile")
            if name == "Dockerfile" and os.path.isfile(alt):
                path = alt
            else:
                raise NotFound(f"Cannot locate specified Dockerfile: {name}")
        with open(path, "rb") as f:
            return parse(f.read(), os.path.basename(name))

    def _platform_args(self) -> dict[str, str]:
        plat = f"linux/{self.arch}" + (f"/{self.variant}" if self.variant else "")
        out = {}
        for pre in ("TARGET", "BUILD"):
            out.update({f"{pre}PLATFORM": plat, f"{pre}OS": "linux", f"{pre}ARCH": self.arch,
                        f"{pre}VARIANT": self.variant or ""})
        return out

    def run(self) -> str:
        if self.opt.platform:
            self._check_platform(self.opt.platform, "--platform")
        df = self._dockerfile()
        self.escape = df.escape
        meta, stages = split_stages(df.instructions)
        raw_epoch = self.opt.build_args.get("SOURCE_DATE_EPOCH")
        if raw_epoch:
            if not raw_epoch.isdigit():
                raise InvalidArgument(f"SOURCE_DATE_EPOCH {raw_epoch!r}: want seconds since the epoch")
            self.epoch = int(raw_epoch)
            self.used_args.add("SOURCE_DATE_EPOCH")
        # Global scope: ARGs before FROM (build args override their defaults), platform args.
        self.global_args = self._platform_args()
        for ins in meta:
            for w in split_words(ins.text, self.escape):
                k, eq, v = w.partition("=")
                k = process_word(k, self.global_args, self.escape)
                given = self.opt.build_args.get(k)
                if k in self.opt.build_args and given is not None:
                    self.global_args[k] = given
                    self.used_args.add(k)
                elif eq:
                    self.global_args[k] = process_word(v, self.global_args, self.escape)
        target = self._target(stages)
        needed = self._needed(stages, target)
        todo = [s for s in stages if s.index in needed]
        total = len(meta) + sum(1 + len(s.instructions) for s in todo) + (1 if self.opt.labels else 0)
        self.total = total
        self.step = 0
        for ins in meta:
            self._step_header(ins)
        for ref in self.opt.cache_from:
            with contextlib.suppress(NotFound, InvalidArgument):
                self.cache_from.append(self.svc.get(ref))
        with self.svc.build_lease() as lease:
            self.lease = lease
            state: State | None = None
            for s in todo:
                state = self._stage(s, stages, final=s.index == target.index)
                self.stage_images[s.index] = state.image
            assert state is not None
            if state.image is None:
                raise BuildError("No image was generated. Is your Dockerfile empty?")
            image_id = str(state.image.id)
            unused = sorted(k for k in self.opt.build_args
                            if k not in self.used_args and k not in PROXY_ARGS)
            if unused:
                self.say(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
            self.emit({"aux": {"ID": image_id}})
            self.say(f"Successfully built {short_id(image_id)}\n")
            for t in self.opt.tags:
                name = self.svc.tag(image_id, t)
                from pallet.oci.reference import parse_normalized

                self.say(f"Successfully tagged {parse_normalized(name).familiar()}\n")
        return image_id

    def _check_platform(self, plat: str, what: str) -> None:
        """Only the host's platform can be built (no emulation here)."""
        host = self._platform_args()["BUILDPLATFORM"]
        want = {host, f"linux/{self.arch}", "linux"}
        if plat.lower() not in want:
            raise NotSupported(f"{what}={plat}: only the host platform ({host}) can be built here")

    def _target(self, stages: list[Stage]) -> Stage:
        if not self.opt.target:
            return stages[-1]
        for s in stages:
            if s.name == self.opt.target.lower():
                return s
        raise InvalidArgument(f"failed to reach build target {self.opt.target} in Dockerfile")

    def _stage_ref(self, word: str, stages: list[Stage], before: int) -> Stage | None:
        """The stage a --from / FROM word names (by name, or index for --from), if any."""
        low = word.lower()
        for s in stages[:before]:
            if s.name and s.name == low:
                return s
        if word.isdigit():
            i = int(word)
            if i >= before:
                raise InvalidArgument(f"invalid from flag value {word}: refers to the current or a "
                                      "later build stage")
            return stages[i]
        return None

    def _needed(self, stages: list[Stage], target: Stage) -> set[int]:
        """The stages `target` depends on (FROM a stage, COPY --from, RUN --mount from=)."""
        need: set[int] = set()
        todo = [target]
        while todo:
            s = todo.pop()
            if s.index in need:
                continue
            need.add(s.index)
            words = [self._expand_global(s.base)]
            for ins in s.instructions:
                if ins.cmd == "COPY" and ins.flag("from"):
                    words.append(self._expand_global(ins.flag("from")))
                if ins.cmd == "RUN":
                    for m in ins.flags.get("mount", []):
                        src = parse_kv_flag(m).get("from")
                        if src:
                            words.append(self._expand_global(src))
            for w in words:
                with contextlib.suppress(InvalidArgument):
                    dep = self._stage_ref(w, stages, s.index)
                    if dep is not None:
                        todo.append(dep)
        return need

    def _expand_global(self, word: str) -> str:
        return process_word(word, self.global_args, self.escape)

    def _step_header(self, ins: Instruction) -> None:
        self.step += 1
        self.say(f"Step {self.step}/{self.total} : {ins.original}\n")

    # --- stages -------------------------------------------------------------------------------

    def _base_image(self, word: str) -> Any:
        """The image `word` names: the local one (unless --pull), a built-in one bootstrapped
        when missing, else pulled through the registry client."""
        from pallet.oci.reference import parse_normalized

        try:
            local = self.svc.get(word)
        except NotFound:
            local = None
        if local is not None and not self.opt.pull:
            return local
        ref = parse_normalized(word)
        base = ref.path.removeprefix("library/")
        if local is None and base in BUILTIN_BASES and ref.domain == "docker.io" and \
                ref.tag in (None, "latest") and ref.digest is None:
            self.say(f"Bootstrapping the built-in image {base}\n")
            self.svc.bootstrap(base)
            return self.svc.get(word)
        try:
            from pallet.registry.client import RegistryClient

            self.say(f"Pulling {ref.familiar()}\n")
            pulled = RegistryClient(self.svc, insecure=self.opt.insecure_registries).pull(word)
            return self.svc.get(pulled[0].image_id)
        except (PalletError, OSError) as exc:
            if local is not None:  # --pull on a machine that cannot reach the registry
                self.say(f"[Warning] could not pull {ref.familiar()} ({exc}); using the local image\n")
                return local
            raise NotFound(f"pull access denied for {word}: not in the store and the pull failed: "
                           f"{exc}") from exc

    def _stage(self, s: Stage, stages: list[Stage], final: bool) -> State:
        self._step_header(s.from_ins)
        if s.platform:
            self._check_platform(self._expand_global(s.platform), "FROM --platform")
        base_word = self._expand_global(s.base)
        dep = None
        low = base_word.lower()
        for prev in stages[:s.index]:
            if prev.name and prev.name == low:
                dep = prev
        if dep is not None:
            if dep.index not in self.stage_images:
                raise InvalidArgument(f"stage {dep.name} was not built")
            img = self.stage_images[dep.index]
        elif low == "scratch":
            img = None
        else:
            img = self._base_image(base_word)
        if img is None:
            config: dict[str, Any] = {"architecture": self.arch, "os": "linux",
                                      "config": {"Env": [DEFAULT_PATH]},
                                      "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
            if self.variant:
                config["variant"] = self.variant
            state = State(None, config, [], docker=True)
        else:
            config = img.config.to_json()
            config.setdefault("config", {})
            state = State(img, config, list(img.manifest.layers), docker=img.manifest.is_docker)
            self.say(f" ---> {short_id(str(img.id))}\n")
        triggers = list(state.run.get("OnBuild") or [])
        if triggers:
            self.say(f"# Executing {len(triggers)} build trigger{'s' if len(triggers) > 1 else ''}\n")
            state.run["OnBuild"] = None
            for t in triggers:
                for ins in parse(t, "ONBUILD").instructions:
                    state = self._instruction(state, ins, stages, s, header=False)
        instructions = list(s.instructions)
        if final and self.opt.labels:
            text = " ".join(f"{json.dumps(k)}={json.dumps(v)}" for k, v in sorted(self.opt.labels.items()))
            instructions.append(Instruction("LABEL", [text], False, {}, 0, f"LABEL {text}"))
        for ins in instructions:
            state = self._instruction(state, ins, stages, s)
        return state

    # --- instructions ---------------------------------------------------------------------------

    def _env_for_expansion(self, state: State) -> dict[str, str]:
        return {**state.args, **state.env()}

    def _instruction(self, state: State, ins: Instruction, stages: list[Stage], stage: Stage,
                     header: bool = True) -> State:
        self.check_cancel()
        if header:
            self._step_header(ins)
        try:
            handler = getattr(self, f"_do_{ins.cmd.lower()}")
            new: State = handler(state, ins, stages, stage)
        except InvalidArgument as exc:
            if isinstance(exc, ParseError):
                raise
            where = f"Dockerfile:{ins.line}: " if ins.line else ""
            raise BuildError(f"{where}{ins.cmd}: {exc}") from exc
        if new.image is not None:
            self.say(f" ---> {short_id(str(new.image.id))}\n")
        return new

    def _history(self, created_by: str, empty: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"created": timestamp(self.epoch), "created_by": created_by}
        if empty:
            entry["empty_layer"] = True
        return entry

    def _cached(self, state: State, key: str) -> State | None:
        if self.opt.no_cache:
            return None
        image_id = self.b.cache.get(key)
        if image_id is None:
            return None
        try:
            img = self.svc.get(image_id)
        except NotFound:
            self.b.cache.forget(key)
            return None
        self.say(" ---> Using cache\n")
        return self._state_of(img, state)

    def _state_of(self, img: Any, prev: State) -> State:
        cfg = img.config.to_json()
        cfg.setdefault("config", {})
        return State(img, cfg, list(img.manifest.layers), img.manifest.is_docker, dict(prev.args),
                     prev.cmd_set)

    def _from_cache_source(self, state: State, created_by: str, empty: bool) -> State | None:
        """--cache-from: an image whose history continues this state's with `created_by` gives
        the step's result (its layer, if the step made one) without running it."""
        if self.opt.no_cache or not self.cache_from:
            return None
        hist = state.config.get("history") or []
        n_layers = len(state.layers)
        for img in self.cache_from:
            ih = img.config.to_json().get("history") or []
            if len(ih) <= len(hist):
                continue
            if [h.get("created_by") for h in ih[:len(hist)]] != [h.get("created_by") for h in hist]:
                continue
            if [str(d) for d in img.config.diff_ids[:n_layers]] != \
                    [str(d) for d in state.config["rootfs"]["diff_ids"]]:
                continue
            nxt = ih[len(hist)]
            if nxt.get("created_by") != created_by or bool(nxt.get("empty_layer")) != empty:
                continue
            if empty:
                return state  # the caller makes the config; nothing to reuse but the match
            if len(img.manifest.layers) <= n_layers:
                continue
            self.say(" ---> Using cache (from --cache-from)\n")
            layer = img.manifest.layers[n_layers]
            diff_id = str(img.config.diff_ids[n_layers])
            new = State(state.image, json.loads(json.dumps(state.config)), [*state.layers, layer],
                        state.docker, dict(state.args), state.cmd_set)
            new.config["rootfs"]["diff_ids"] = [*state.config["rootfs"]["diff_ids"], diff_id]
            new.config.setdefault("history", []).append(self._history(created_by, False))
            return self._create(new, state)
        return None

    def _create(self, new: State, parent: State) -> State:
        new.config["created"] = timestamp(self.epoch)
        img = self.svc.create_built_image(self.lease, new.config, new.layers, docker=new.docker,
                                          parent=str(parent.image.id) if parent.image is not None else "")
        return State(img, img.config.to_json(), list(img.manifest.layers), new.docker, dict(new.args),
                     new.cmd_set)

    def _commit_meta(self, state: State, created_by: str,
                     change: Callable[[dict[str, Any]], None] | None = None, extra: str = "",
                     author: str | None = None) -> State:
        """A metadata-only step: same layers, the execution config changed by `change` (and the
        image's `author` set when given), an empty_layer history entry."""
        key = step_key(state.parent_id, created_by, extra, str(self.epoch))
        hit = self._cached(state, key)
        if hit is not None:
            hit.args, hit.cmd_set = dict(state.args), state.cmd_set
            return hit
        new = State(state.image, json.loads(json.dumps(state.config)), list(state.layers), state.docker,
                    dict(state.args), state.cmd_set)
        new.config.setdefault("config", {})
        if change is not None:
            change(new.config["config"])
        if author is not None:
            new.config["author"] = author
        if created_by:
            new.config.setdefault("history", []).append(self._history(created_by, True))
        made = self._create(new, state)
        self.b.cache.put(key, str(made.image.id), created_by)
        return made

    def _nop(self, text: str) -> str:
        return f"/bin/sh -c #(nop)  {text}"

    # metadata instructions

    def _do_env(self, state: State, ins: Instruction, *_a: Any) -> State:
        pairs = kv_pairs(ins.text, self._env_for_expansion(state), self.escape, "ENV")

        def change(c: dict[str, Any]) -> None:
            env = list(c.get("Env") or [])
            for k, v in pairs:
                env = [e for e in env if e.partition("=")[0] != k] + [f"{k}={v}"]
            c["Env"] = env

        text = "ENV " + " ".join(f"{k}={v}" for k, v in pairs)
        return self._commit_meta(state, self._nop(text), change=change)

    def _do_label(self, state: State, ins: Instruction, *_a: Any) -> State:
        pairs = kv_pairs(ins.text, self._env_for_expansion(state), self.escape, "LABEL")

        def change(c: dict[str, Any]) -> None:
            c["Labels"] = {**(c.get("Labels") or {}), **dict(pairs)}

        text = "LABEL " + " ".join(f"{k}={v}" for k, v in pairs)
        return self._commit_meta(state, self._nop(text), change=change)

    def _do_maintainer(self, state: State, ins: Instruction, *_a: Any) -> State:
        return self._commit_meta(state, self._nop(f"MAINTAINER {ins.text}"), author=ins.text)

    def _cmd_value(self, state: State, ins: Instruction) -> list[str]:
        if ins.json:
            return list(ins.args)
        shell = list(state.run.get("Shell") or DEFAULT_SHELL)
        return [*shell, ins.text] if ins.text else []

    def _do_cmd(self, state: State, ins: Instruction, *_a: Any) -> State:
        value = self._cmd_value(state, ins)
        new = self._commit_meta(state, self._nop(f"CMD {json.dumps(value)}"),
                                change=lambda c: c.__setitem__("Cmd", value))
        new.cmd_set = True
        return new

    def _do_entrypoint(self, state: State, ins: Instruction, *_a: Any) -> State:
        value = self._cmd_value(state, ins)
        reset_cmd = not state.cmd_set

        def change(c: dict[str, Any]) -> None:
            c["Entrypoint"] = value or None
            if reset_cmd:  # "If CMD is defined from the base image, setting ENTRYPOINT will reset CMD"
                c["Cmd"] = None

        return self._commit_meta(state, self._nop(f"ENTRYPOINT {json.dumps(value)}"), change=change,
                                 extra=str(reset_cmd))

    def _do_expose(self, state: State, ins: Instruction, *_a: Any) -> State:
        ports: list[str] = []
        for w in process_words(ins.text, self._env_for_expansion(state), self.escape):
            port, _, proto = w.partition("/")
            proto = (proto or "tcp").lower()
            if proto not in ("tcp", "udp", "sctp"):
                raise InvalidArgument(f"invalid proto: {proto}")
            lo, _, hi = port.partition("-")
            if not lo.isdigit() or (hi and not hi.isdigit()):
                raise InvalidArgument(f"invalid containerPort: {port}")
            for p in range(int(lo), int(hi or lo) + 1):
                ports.append(f"{p}/{proto}")

        def change(c: dict[str, Any]) -> None:
            c["ExposedPorts"] = {**(c.get("ExposedPorts") or {}), **{p: {} for p in ports}}

        return self._commit_meta(state, self._nop("EXPOSE " + " ".join(sorted(set(ports)))), change=change)

    def _do_volume(self, state: State, ins: Instruction, *_a: Any) -> State:
        env = self._env_for_expansion(state)
        vols = [process_word(v, env, self.escape) for v in ins.args] if ins.json else \
            process_words(ins.text, env, self.escape)
        if not vols or any(not v.strip() for v in vols):
            raise InvalidArgument("VOLUME specified can not be an empty string")

        def change(c: dict[str, Any]) -> None:
            c["Volumes"] = {**(c.get("Volumes") or {}), **{v: {} for v in vols}}

        return self._commit_meta(state, self._nop(f"VOLUME [{' '.join(vols)}]"), change=change)

    def _do_user(self, state: State, ins: Instruction, *_a: Any) -> State:
        user = process_word(ins.text, self._env_for_expansion(state), self.escape)
        return self._commit_meta(state, self._nop(f"USER {user}"),
                                 change=lambda c: c.__setitem__("User", user))

    def _do_workdir(self, state: State, ins: Instruction, *_a: Any) -> State:
        wd = process_word(ins.text, self._env_for_expansion(state), self.escape)
        if not wd.startswith("/"):
            wd = os.path.join(state.run.get("WorkingDir") or "/", wd)
        wd = os.path.normpath(wd)
        created_by = self._nop(f"WORKDIR {wd}")
        key = step_key(state.parent_id, created_by, "", str(self.epoch))
        hit = self._cached(state, key)
        if hit is not None:
            hit.args, hit.cmd_set = dict(state.args), state.cmd_set
            return hit
        # "If the WORKDIR doesn't exist, it will be created" (Dockerfile reference): then the
        # step makes a layer holding the new directories; otherwise it only changes the config.
        layer = self._make_workdir(state, wd)
        if layer is None:
            return self._commit_meta(state, created_by, change=lambda c: c.__setitem__("WorkingDir", wd))
        new = State(state.image, json.loads(json.dumps(state.config)), [*state.layers, layer[0]],
                    state.docker, dict(state.args), state.cmd_set)
        new.run["WorkingDir"] = wd
        new.config["rootfs"]["diff_ids"] = [*state.config["rootfs"]["diff_ids"], layer[1]]
        new.config.setdefault("history", []).append(self._history(created_by, False))
        made = self._create(new, state)
        self.b.cache.put(key, str(made.image.id), created_by)
        return made

    def _make_workdir(self, state: State, wd: str) -> tuple[Any, str] | None:
        """Create `wd` in a snapshot of the state's image: the new layer, or None (it exists)."""
        from pallet.image.layers.safepath import SafeRoot

        parts = [p for p in wd.split("/") if p]
        made: list[list[str]] = []
        with self._mounted(state.image, readonly=False) as (key, rootfs), SafeRoot(rootfs) as root:
            fd, _ = root.open_dir(parts, create=True, on_create=made.append)
            os.close(fd)
        if not made:
            self.svc.remove_build_rootfs(key)
            return None
        return self._commit(key, state)

    def _do_stopsignal(self, state: State, ins: Instruction, *_a: Any) -> State:
        from pallet.engine.runtimes import signal_number

        sig = process_word(ins.text, self._env_for_expansion(state), self.escape)
        signal_number(sig)  # InvalidArgument for a bad one
        return self._commit_meta(state, self._nop(f"STOPSIGNAL {sig}"),
                                 change=lambda c: c.__setitem__("StopSignal", sig))

    def _do_shell(self, state: State, ins: Instruction, *_a: Any) -> State:
        if not ins.json or not ins.args:
            raise InvalidArgument("SHELL requires the arguments to be in JSON form, e.g. "
                                  'SHELL ["/bin/bash", "-c"]')
        value = list(ins.args)
        return self._commit_meta(state, self._nop(f"SHELL {json.dumps(value)}"),
                                 change=lambda c: c.__setitem__("Shell", value))

    def _do_onbuild(self, state: State, ins: Instruction, *_a: Any) -> State:
        trigger = ins.text.strip()

        def change(c: dict[str, Any]) -> None:
            c["OnBuild"] = [*(c.get("OnBuild") or []), trigger]

        return self._commit_meta(state, self._nop(f"ONBUILD {trigger}"), change=change)

    def _do_healthcheck(self, state: State, ins: Instruction, *_a: Any) -> State:
        if ins.json:
            raise InvalidArgument("HEALTHCHECK needs NONE or CMD first")
        word, _, rest = ins.text.partition(" ")
        hc: dict[str, Any]
        if word.upper() == "NONE":
            if rest.strip() or ins.flags:
                raise InvalidArgument("HEALTHCHECK NONE takes no other arguments")
            hc = {"Test": ["NONE"]}
        elif word.upper() == "CMD":
            from pallet.build.dockerfile import _json_args

            js = _json_args(rest)
            test = ["CMD", *js] if js is not None else ["CMD-SHELL", rest.strip()]
            if len(test) < 2 or not test[1]:
                raise InvalidArgument("Missing command after HEALTHCHECK CMD")
            hc = {"Test": test}
            for flag, key in (("interval", "Interval"), ("timeout", "Timeout"),
                              ("start-period", "StartPeriod"), ("start-interval", "StartInterval")):
                if ins.flag(flag):
                    hc[key] = parse_duration(ins.flag(flag), f"--{flag}")
            if ins.flag("retries"):
                if not ins.flag("retries").isdigit():
                    raise InvalidArgument(f"--retries: {ins.flag('retries')!r} is not a number")
                hc["Retries"] = int(ins.flag("retries"))
        else:
            raise InvalidArgument(f"Unknown type {word!r} in HEALTHCHECK (try CMD)")
        return self._commit_meta(state, self._nop(f"HEALTHCHECK {json.dumps(hc, sort_keys=True)}"),
                                 change=lambda c: c.__setitem__("Healthcheck", hc))

    def _do_arg(self, state: State, ins: Instruction, *_a: Any) -> State:
        env = self._env_for_expansion(state)
        declared: list[tuple[str, str | None]] = []
        for w in split_words(ins.text, self.escape):
            k, eq, v = w.partition("=")
            declared.append((process_word(k, env, self.escape),
                             process_word(v, env, self.escape) if eq else None))
        new_args = dict(state.args)
        texts = []
        for k, default in declared:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
                raise InvalidArgument(f"invalid ARG name {k!r}")
            given = self.opt.build_args.get(k)
            if k in self.opt.build_args and given is not None:
                value: str | None = given
                self.used_args.add(k)
            elif default is not None:
                value = default
            elif k in self.global_args:  # `ARG X` in a stage takes the global value
                value = self.global_args[k]
            else:
                value = None
            if value is not None:
                new_args[k] = value
            texts.append(f"{k}={default}" if default is not None else k)
        # The values are not part of the key: as in Docker, a changed build arg busts the first
        # step whose created_by shows it (a RUN: "|1 NAME=value ..."), not the ARG step itself.
        new = self._commit_meta(state, self._nop("ARG " + " ".join(texts)))
        new.args = new_args
        return new


__all__ = ["BuildError", "BuildOptions", "Builder", "Cancelled", "State", "kv_pairs", "parse_duration",
           "split_stages"]
