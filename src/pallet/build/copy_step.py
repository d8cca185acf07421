"""COPY and ADD steps: sources from the context, a stage or image, heredocs, URLs and local tar
archives, copied into a mounted snapshot of the parent that then becomes the layer."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import shutil
from typing import Any

from pallet.build.cache import step_key
from pallet.build.dockerfile import Instruction, heredoc_word
from pallet.build.files import CopyOpts, Skip, copy_entry, hash_tree
from pallet.build.ignore import Matcher
from pallet.build.model import BuildError, Stage, State, StepBase
from pallet.build.shell import process_word, process_words
from pallet.errors import InvalidArgument


class CopySteps(StepBase):
    """COPY and ADD, mixed into the build."""


    def _do_copy(self, state: State, ins: Instruction, stages: list[Stage], stage: Stage) -> State:
        return self._copy(state, ins, stages, stage, add=False)

    def _do_add(self, state: State, ins: Instruction, stages: list[Stage], stage: Stage) -> State:
        return self._copy(state, ins, stages, stage, add=True)

    def _copy(self, state: State, ins: Instruction, stages: list[Stage], stage: Stage, add: bool) -> State:
        env = self._env_for_expansion(state)
        if ins.heredocs:
            words = process_words(ins.text, env, self.escape)
        elif ins.json:
            words = [process_word(w, env, self.escape) for w in ins.args]
        else:
            words = process_words(ins.text, env, self.escape)
        if len(words) < 2:
            raise InvalidArgument(f"{ins.cmd} requires at least two arguments, but only one was provided. "
                                  "Destination could not be determined")
        srcs, dest = words[:-1], words[-1]
        # --exclude: patterns (.dockerignore syntax) matched against paths relative to each
        # source: a directory's entries below it, a file's own name.
        excludes = [process_word(p, env, self.escape) for p in ins.flags.get("exclude", [])]
        skip = Matcher(excludes).excluded if excludes else None
        parents = ins.flag("parents") == "true"
        wd = state.run.get("WorkingDir") or "/"
        dest_abs = dest if dest.startswith("/") else \
            os.path.join(wd, dest) + ("/" if dest.endswith("/") else "")
        chown = process_word(ins.flag("chown"), env, self.escape) if ins.flag("chown") else ""
        chmod = None
        if ins.flag("chmod"):
            if not re.fullmatch(r"[0-7]{3,4}", ins.flag("chmod")):
                raise InvalidArgument(f"--chmod={ins.flag('chmod')}: want an octal mode such as 0755")
            chmod = int(ins.flag("chmod"), 8)
        from_word = process_word(ins.flag("from"), env, self.escape) if ins.flag("from") else ""
        if from_word and add:
            raise InvalidArgument("ADD does not take --from")
        heredocs = {h.name: h for h in ins.heredocs}
        h = hashlib.sha256()
        sources: list[tuple[str, str]] = []   # (kind, value): ctx path, heredoc name, url path
        url_files: list[tuple[str, str]] = []
        tmpdir = os.path.join(str(self.b.cache.tmp), f"add-{secrets.token_hex(8)}")
        os.makedirs(tmpdir, mode=0o700)
        try:
            src_image = None
            if from_word:
                dep = self._stage_ref(from_word, stages, stage.index)
                src_image = self.stage_images[dep.index] if dep is not None else self._base_image(from_word)
                h.update(f"from {src_image.id if src_image is not None else 'scratch'}\0".encode())
                for s in srcs:
                    h.update(f"src {s}\0".encode())
                    sources.append(("image", s))
            else:
                for s in srcs:
                    hname = heredoc_word(s)
                    if hname is not None and hname in heredocs:
                        hd = heredocs[hname]
                        content = process_word(hd.content, env, self.escape) if hd.expand else hd.content
                        path = os.path.join(tmpdir, os.path.basename(hname) or "heredoc")
                        with open(path, "w") as f:
                            f.write(content)
                        os.chmod(path, 0o644)
                        digest = hashlib.sha256(content.encode()).hexdigest()
                        h.update(f"heredoc {hname} {digest}\0".encode())
                        sources.append(("file", path))
                    elif add and re.match(r"^https?://", s):
                        path = self._download(s, tmpdir, ins.flag("checksum"))
                        tfd = os.open(tmpdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                        try:
                            hash_tree(h, tfd, os.path.basename(path), s)
                        finally:
                            os.close(tfd)
                        url_files.append((s, path))
                        sources.append(("file", path))
                    else:
                        if ins.flag("checksum"):
                            raise InvalidArgument("--checksum can only be used with a URL source")
                        for rel in self._glob(s):
                            parent, name = os.path.split(rel)
                            pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                            try:
                                hash_tree(h, pfd, name, os.path.relpath(rel, self.ctx), skip,
                                          "" if os.path.isdir(rel) else name)
                            finally:
                                os.close(pfd)
                            sources.append(("ctx", rel))
            wild = any(any(c in s for c in "*?[") for s in srcs)
            kind = "multi" if len(sources) > 1 or wild else (
                "dir" if sources and sources[0][0] == "ctx" and os.path.isdir(sources[0][1]) else "file")
            flags = " ".join(f"--{k}={v}" for k, v in (("chown", chown), ("chmod", ins.flag("chmod")),
                                                         ("from", from_word), ("parents", parents and "true"))
                             if v)
            flags += "".join(f" --exclude={e}" for e in excludes)
            shown_flags = flags + " " if flags else ""
            created_by = f"/bin/sh -c #(nop) {ins.cmd} {shown_flags}{kind}:{h.hexdigest()} in {dest_abs} "
            key = step_key(state.parent_id, created_by, str(self.epoch))
            hit = self._layer_step_hit(state, key, created_by)
            if hit is not None:
                return hit
            layer, diff_id = self._copy_into(state, sources, src_image, dest_abs,
                                             dir_dest=dest.endswith("/") or len(srcs) > 1 or wild or parents,
                                             chown=chown, chmod=chmod, add=add,
                                             urls={p for _, p in url_files}, skip=skip, parents=parents)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        return self._layer_step_done(state, layer, diff_id, created_by, key)

    def _glob(self, pattern: str) -> list[str]:
        """Context paths a COPY source names (Go filepath.Match per component), sorted."""
        from pallet.build.ignore import compile_pattern

        parts = [p for p in pattern.split("/") if p not in ("", ".")]
        if not any(c in pattern for c in "*?["):
            return [self._context_path(pattern)]
        found = [self.ctx]
        for part in parts:
            nxt = []
            if any(c in part for c in "*?["):
                rx = compile_pattern(part)
                for d in found:
                    if os.path.isdir(d):
                        nxt += [os.path.join(d, n) for n in sorted(os.listdir(d)) if rx.match(n)]
            else:
                nxt = [os.path.join(d, part) for d in found if os.path.lexists(os.path.join(d, part))]
            found = nxt
        out = []
        for f in found:
            real = os.path.realpath(f)
            if real == self.ctx or real.startswith(self.ctx + os.sep):
                out.append(real)
        if not out:
            raise BuildError(f"COPY failed: no source files were specified ({pattern} matches nothing in the "
                             "build context)")
        return out

    def _download(self, url: str, tmpdir: str, checksum: str) -> str:
        import email.utils
        import urllib.parse
        import urllib.request

        name = os.path.basename(urllib.parse.urlparse(url).path) or "index.html"
        path = os.path.join(tmpdir, name)
        self.say(f"Downloading {url}\n")
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(path, "wb") as f:
                hh = hashlib.sha256()
                while chunk := resp.read(1 << 20):
                    self.check_cancel()
                    hh.update(chunk)
                    f.write(chunk)
                modified = resp.headers.get("Last-Modified")
        except OSError as exc:
            raise BuildError(f"ADD failed: downloading {url}: {exc}") from exc
        if checksum:
            algo, _, want = checksum.partition(":")
            if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", want):
                raise InvalidArgument(f"--checksum={checksum}: want sha256:<64 hex digits>")
            if hh.hexdigest() != want:
                raise BuildError(f"ADD failed: digest mismatch for {url}: sha256:{hh.hexdigest()}, "
                                 f"expected {checksum}")
        os.chmod(path, 0o600)  # Docker: "remote files ... have permissions of 600"
        if modified:
            with contextlib.suppress(TypeError, ValueError):
                ts = email.utils.parsedate_to_datetime(modified).timestamp()
                os.utime(path, (ts, ts))
        return path

    def _copy_into(self, state: State, sources: list[tuple[str, str]], src_image: Any, dest: str, *,
                   dir_dest: bool, chown: str, chmod: int | None, add: bool, urls: set[str],
                   skip: Skip | None, parents: bool) -> tuple[Any, str]:
        from pallet.engine.containers import _lookup_user
        from pallet.image.layers.safepath import SafeRoot

        with self._mounted(state.image, readonly=False) as (key, rootfs), contextlib.ExitStack() as stack:
            uid = gid = None
            if chown:
                user, _, group = chown.partition(":")
                uid = int(user) if user.isdigit() else _lookup_user(rootfs, user)[0]
                # "Providing a username without groupname or a UID without GID will use the same
                # numeric UID as the GID" (Dockerfile reference, COPY --chown).
                gid = uid if not group else (int(group) if group.isdigit() else
                                             _lookup_user(rootfs, f"0:{group}")[1])
            opts = CopyOpts(uid, gid, chmod)
            resolved: list[tuple[str, str]] = []   # (the root the path is relative to, path)
            if src_image is not None or any(k == "image" for k, _ in sources):
                view = stack.enter_context(self._mounted(src_image, readonly=True))[1] \
                    if src_image is not None else None
                for _, s in sources:
                    if view is None:
                        raise BuildError(f"COPY --from: {s} not found in an empty stage")
                    resolved += [(os.path.realpath(view), p) for p in self._glob_in(view, s)]
            else:
                resolved = [(self.ctx if k == "ctx" else os.path.dirname(p), p) for k, p in sources]
            root = stack.enter_context(SafeRoot(rootfs))
            parts = [p for p in dest.split("/") if p]
            dest_is_dir = dir_dest
            if not dest_is_dir:
                try:
                    fd, _ = root.open_dir(parts)
                    os.close(fd)
                    dest_is_dir = True
                except (FileNotFoundError, InvalidArgument):
                    dest_is_dir = False
            for base, path in resolved:
                parent, name = os.path.split(path)
                # --parents keeps the source's path below its root: COPY --parents a/b/f /d/ -> /d/a/b/f
                up = [p for p in os.path.relpath(parent, base).split("/") if p not in ("", ".")] \
                    if parents else []
                pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    is_dir = os.path.isdir(path) and not os.path.islink(path)
                    if is_dir:
                        dfd, _ = root.open_dir([*parts, *up, name] if parents else parts, create=True)
                        try:
                            copy_entry(pfd, name, dfd, ".", opts, contents_only=True, skip=skip, path="")
                        finally:
                            os.close(dfd)
                    elif add and path not in urls and self._is_archive(path):
                        dfd, _ = root.open_dir(parts, create=True)
                        try:
                            from pallet.build.context import extract_context

                            with open(path, "rb") as f:
                                extract_context(f, f"/proc/self/fd/{dfd}")
                        finally:
                            os.close(dfd)
                    else:
                        if skip is not None and skip(name):
                            continue
                        target_parts = [*parts, *up, name] if dest_is_dir else parts
                        if not target_parts:
                            raise BuildError("cannot copy a file onto /")
                        dfd, _ = root.open_dir(target_parts[:-1], create=True)
                        try:
                            copy_entry(pfd, name, dfd, target_parts[-1], opts)
                        finally:
                            os.close(dfd)
                finally:
                    os.close(pfd)
        return self._commit(key, state)

    def _glob_in(self, root: str, pattern: str) -> list[str]:
        saved = self.ctx
        self.ctx = os.path.realpath(root)
        try:
            return self._glob(pattern)
        finally:
            self.ctx = saved

    @staticmethod
    def _is_archive(path: str) -> bool:
        import tarfile

        try:
            with tarfile.open(path, "r:*") as t:
                return t.next() is not None
        except (tarfile.TarError, OSError, EOFError):
            return False


__all__ = ["CopySteps"]
