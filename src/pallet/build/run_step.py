"""RUN steps: the command runs through the OCI runtime directly, on a snapshot of the parent.

See builder.py's docstring and docs/design/build.md for why the engine is not used: one
`<runtime> run --bundle` per step, its output streamed to the client, a cancel killing the
container through the runtime. Mounts (`--mount=type=cache|bind|tmpfs|secret`) become bind and
tmpfs mounts of the bundle; the mount points the runtime had to create are removed from the
upper dir before it becomes the layer."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import threading
from typing import Any

from pallet.build.cache import step_key
from pallet.build.dockerfile import Instruction, heredoc_word, parse_kv_flag
from pallet.build.files import hash_tree
from pallet.build.model import (
    DEFAULT_PATH,
    DEFAULT_SHELL,
    PROXY_ARGS,
    BuildError,
    Stage,
    State,
    StepBase,
)
from pallet.build.shell import process_word
from pallet.errors import InvalidArgument, NotSupported


class RunSteps(StepBase):
    """RUN, mixed into the build."""


    def _run_env(self, state: State) -> list[str]:
        env = state.env()
        out = [f"{k}={v}" for k, v in env.items()]
        for k, v in state.args.items():
            if k not in env:
                out.append(f"{k}={v}")
        for k in PROXY_ARGS:
            proxy = self.opt.build_args.get(k)
            if proxy is not None and k not in env:
                out.append(f"{k}={proxy}")
        if not any(e.startswith("PATH=") for e in out):
            out.append(DEFAULT_PATH)
        return out

    def _do_run(self, state: State, ins: Instruction, stages: list[Stage], stage: Stage) -> State:
        shell = list(state.run.get("Shell") or DEFAULT_SHELL)
        if ins.json:
            argv = list(ins.args)
        elif ins.heredocs and heredoc_word(ins.text.strip()) is not None:
            argv = [*shell, ins.heredocs[0].content]
        elif ins.heredocs:
            script = ins.text + "\n" + "".join(h.content + h.name + "\n" for h in ins.heredocs)
            argv = [*shell, script]
        else:
            argv = [*shell, ins.text]
        if not argv or not argv[0]:
            raise InvalidArgument("RUN needs a command")
        network = ins.flag("network", "") or self.opt.network_mode or "default"
        if network not in ("default", "none", "host", "bridge"):
            raise InvalidArgument(f"--network={network}: want default, none or host")
        if ins.flag("security") not in ("", "sandbox"):
            raise NotSupported(f"--security={ins.flag('security')}: only sandbox is supported")
        mounts = [self._parse_mount(m, state, stages, stage) for m in ins.flags.get("mount", [])]
        # Build args in effect show in created_by as Docker's classic builder writes them:
        # "|<n> k=v ... <command>" (proxy args are left out, as Docker does).
        args = sorted((k, v) for k, v in state.args.items() if k not in PROXY_ARGS)
        shown = " ".join(argv) if not ins.json else json.dumps(argv)
        created_by = (f"|{len(args)} " + " ".join(f"{k}={v}" for k, v in args) + " " if args else "") + \
            (shown if ins.json else " ".join(argv))
        extra = json.dumps([network, [m["key"] for m in mounts]], sort_keys=True)
        key = step_key(state.parent_id, created_by, extra, str(self.epoch))
        hit = self._layer_step_hit(state, key, created_by)
        if hit is not None:
            return hit
        if state.image is None:
            raise BuildError(f"failed to run {created_by!r}: there is no shell in an empty (scratch) image")
        layer, diff_id = self._execute(state, argv, network, mounts, shown)
        return self._layer_step_done(state, layer, diff_id, created_by, key)

    def _parse_mount(self, text: str, state: State, stages: list[Stage], stage: Stage) -> dict[str, Any]:
        opts = parse_kv_flag(text)
        typ = opts.get("type", "bind")
        target = opts.get("target") or opts.get("dst") or opts.get("destination") or ""
        if typ == "secret":
            sid = opts.get("id") or os.path.basename(target)
            if not sid:
                raise InvalidArgument("--mount=type=secret needs id= or target=")
            target = target or f"/run/secrets/{sid}"
            if sid not in self.opt.secrets:
                if opts.get("required") == "true":
                    raise InvalidArgument(f"secret {sid} not provided "
                                          f"(pallet build --secret id={sid},src=...)")
                return {"type": "none", "key": f"secret:{sid}"}
            return {"type": "secret", "id": sid, "target": target, "key": f"secret:{sid}:{target}",
                    "mode": int(opts.get("mode", "0400"), 8), "uid": int(opts.get("uid", "0")),
                    "gid": int(opts.get("gid", "0"))}
        if not target or not target.startswith("/"):
            if not target:
                raise InvalidArgument(f"--mount={text}: target= is required")
            target = os.path.join(state.run.get("WorkingDir") or "/", target)
        if typ == "tmpfs":
            size = opts.get("size", "")
            return {"type": "tmpfs", "target": target, "size": size, "key": f"tmpfs:{target}:{size}"}
        if typ == "cache":
            cid = opts.get("id") or target
            sharing = opts.get("sharing", "shared")
            if sharing not in ("shared", "private", "locked"):
                raise InvalidArgument(f"--mount=type=cache: sharing={sharing} "
                                      "(want shared, private or locked)")
            mode = int(opts.get("mode", "0755"), 8)
            return {"type": "cache", "id": cid, "target": target, "sharing": sharing,
                    "ro": opts.get("readonly", opts.get("ro", "false")) == "true",
                    "uid": int(opts.get("uid", "0")), "gid": int(opts.get("gid", "0")), "mode": mode,
                    "key": f"cache:{cid}:{target}"}
        if typ == "bind":
            source = opts.get("source") or opts.get("src") or "."
            src_from = opts.get("from", "")
            rw = opts.get("readwrite", opts.get("rw", "false")) == "true"
            if src_from:
                word = process_word(src_from, self.global_args, self.escape)
                dep = self._stage_ref(word, stages, stage.index)
                img = self.stage_images[dep.index] if dep is not None else self._base_image(src_from)
                key = f"bind:{img.id if img is not None else 'scratch'}:{source}:{target}:{rw}"
                return {"type": "bind", "image": img, "source": source, "target": target, "rw": rw,
                        "key": key}
            path = self._context_path(source)
            h = hashlib.sha256()
            parent, name = os.path.split(path)
            pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                hash_tree(h, pfd, name, ".")
            finally:
                os.close(pfd)
            return {"type": "bind", "path": path, "target": target, "rw": rw,
                    "key": f"bind:context:{h.hexdigest()}:{target}:{rw}"}
        raise NotSupported(f"--mount type={typ} is not supported (bind, cache, tmpfs, secret are)")

    def _execute(self, state: State, argv: list[str], network: str, mounts: list[dict[str, Any]],
                 shown: str) -> tuple[Any, str]:
        """Run `argv` in a container on a snapshot of the state's image; returns the new layer."""
        from pallet.engine.bundle import build_spec, validate_create
        from pallet.engine.containers import _lookup_user
        from pallet.image.layers.safepath import SafeRoot

        cid = "build-" + secrets.token_hex(16)
        self.say(f" ---> Running in {cid[6:18]}\n")
        with self._mounted(state.image, readonly=False) as (key, rootfs), contextlib.ExitStack() as stack:
            bundle = os.path.dirname(rootfs)
            wd = state.run.get("WorkingDir") or "/"
            with SafeRoot(rootfs) as root:
                fd, _ = root.open_dir([p for p in wd.split("/") if p], create=True)
                os.close(fd)
            # Files bound over /etc/{hosts,hostname,resolv.conf}: the runtime creates a missing
            # mount point in the rootfs; those empty files must not land in the layer.
            files = self._etc_files(bundle, cid)
            created_points = [p for p in files if not os.path.lexists(os.path.join(rootfs, p.lstrip("/")))]
            hc: dict[str, Any] = {"NetworkMode": "none" if network == "none" else
                                  ("host" if network == "host" else "default")}
            binds: list[dict[str, Any]] = []
            tmpfs: dict[str, str] = {}
            for m in mounts:
                if m["type"] == "tmpfs":
                    tmpfs[m["target"]] = f"size={m['size']}" if m["size"] else ""
                elif m["type"] == "cache":
                    path = str(self.b.cache.mount_dir(m["id"], uid=m["uid"], gid=m["gid"], mode=m["mode"]))
                    if m["sharing"] == "private":
                        priv = os.path.join(bundle, f"cache-{len(binds)}")
                        shutil.copytree(path, priv, symlinks=True)
                        path = priv
                    stack.enter_context(self.b.cache.using_mount(m["id"], m["sharing"]))
                    binds.append({"Type": "bind", "Source": str(path), "Target": m["target"],
                                  "ReadOnly": m["ro"]})
                elif m["type"] == "secret":
                    sdir = os.path.join(bundle, "secrets")
                    os.makedirs(sdir, mode=0o700, exist_ok=True)
                    spath = os.path.join(sdir, m["id"])
                    fdw = os.open(spath, os.O_WRONLY | os.O_CREAT | os.O_EXCL, m["mode"])
                    with os.fdopen(fdw, "wb") as f:
                        f.write(self.opt.secrets[m["id"]])
                    os.chown(spath, m["uid"], m["gid"])
                    binds.append({"Type": "bind", "Source": spath, "Target": m["target"], "ReadOnly": True})
                    created_points.append(m["target"])
                elif m["type"] == "bind":
                    if "path" in m:
                        src = m["path"]
                    else:
                        view = stack.enter_context(self._mounted(m["image"], readonly=True))
                        src = os.path.realpath(os.path.join(view[1], m["source"].lstrip("/")))
                        if not src.startswith(view[1]):
                            raise BuildError(f"--mount source {m['source']!r} leaves the stage's root")
                    if m["rw"]:
                        # A read-write bind mount's writes are discarded (BuildKit): use a copy.
                        copy = os.path.join(bundle, f"bind-{len(binds)}")
                        if os.path.isdir(src):
                            shutil.copytree(src, copy, symlinks=True)
                        else:
                            shutil.copy2(src, copy)
                        src = copy
                    binds.append({"Type": "bind", "Source": src, "Target": m["target"],
                                  "ReadOnly": not m["rw"]})
            for m in binds + [{"Target": t} for t in tmpfs]:
                if not os.path.lexists(os.path.join(rootfs, m["Target"].lstrip("/"))):
                    created_points.append(m["Target"])
            request = {"Image": "build", "Cmd": argv, "Env": self._run_env(state),
                       "User": state.run.get("User") or "", "WorkingDir": wd,
                       "HostConfig": {**hc, "Mounts": binds, "Tmpfs": tmpfs}}
            cfg, hconf = validate_create(request)
            spec = build_spec({}, cfg, hconf, cid=cid, rootfs=rootfs, cgroup_parent=self.b.cgroup_parent,
                              hostname=cid[6:18], files=files,
                              lookup_user=lambda user: _lookup_user(rootfs, user))
            spec["process"]["args"] = argv
            spec["process"]["terminal"] = False
            with open(os.path.join(bundle, "config.json"), "w") as f:
                json.dump(spec, f)
            code = self._run_container(bundle, cid)
            if code != 0:
                # Docker's classic builder's words.
                raise BuildError(f"The command '{shown}' returned a non-zero code: {code}", code)
            self.check_cancel()
            upper = str(self.svc.snapshots.upper_dir(key))
            mount_cleanup = created_points
        self._drop_mount_points(upper, mount_cleanup)
        self.say(f"Removing intermediate container {cid[6:18]}\n")
        return self._commit(key, state)

    @staticmethod
    def _drop_mount_points(upper: str, points: list[str]) -> None:
        """Remove from the upper dir the empty mount points the runtime made (and parents it
        made for them, when empty)."""
        for p in sorted(set(points), key=len, reverse=True):
            rel = p.strip("/")
            while rel:
                full = os.path.join(upper, rel)
                try:
                    st = os.lstat(full)
                except FileNotFoundError:
                    break
                if stat.S_ISDIR(st.st_mode):
                    try:
                        os.rmdir(full)
                    except OSError:
                        break
                elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
                    os.unlink(full)
                else:
                    break
                rel = os.path.dirname(rel)

    def _etc_files(self, bundle: str, cid: str) -> dict[str, str]:
        hosts = os.path.join(bundle, "hosts")
        with open(hosts, "w") as f:
            f.write("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                    f"127.0.1.1\t{cid[6:18]}\n")
        hostname = os.path.join(bundle, "hostname")
        with open(hostname, "w") as f:
            f.write(cid[6:18] + "\n")
        resolv = os.path.join(bundle, "resolv.conf")
        try:
            with open("/etc/resolv.conf") as f:
                lines = [ln for ln in f if not re.match(r"\s*nameserver\s+(127\.|::1)", ln)]
        except OSError:
            lines = []
        with open(resolv, "w") as f:
            f.writelines(lines)
        return {"/etc/hosts": hosts, "/etc/hostname": hostname, "/etc/resolv.conf": resolv}

    def _run_container(self, bundle: str, cid: str) -> int:
        """`<runtime> run` in the foreground; its output streams to the client. A cancel kills
        the container (SIGKILL through the runtime) and deletes it."""
        base = [*self.b.runtime, "--root", self.b.runtime_root]
        proc = subprocess.Popen([*base, "run", "--bundle", bundle, cid], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.1):
                if self.cancel.is_set():
                    subprocess.run([*base, "kill", cid, "KILL"], capture_output=True, timeout=30)
                    return

        watcher = threading.Thread(target=watch, name=f"build-cancel-{cid[:12]}", daemon=True)
        watcher.start()
        try:
            assert proc.stdout is not None
            while True:
                chunk = proc.stdout.read1(65536)  # type: ignore[attr-defined]
                if not chunk:
                    break
                self.say(chunk.decode("utf-8", "replace"))
            code = proc.wait()
        finally:
            done.set()
            watcher.join()
            if proc.poll() is None:
                subprocess.run([*base, "kill", cid, "KILL"], capture_output=True, timeout=30)
                proc.wait()
            subprocess.run([*base, "delete", "-f", cid], capture_output=True, timeout=30)
        self.check_cancel()
        return code


__all__ = ["RunSteps"]
