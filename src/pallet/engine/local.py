"""Run an image once, in the foreground, without a daemon: image store + pallet-runtime.

    python -m pallet.engine.local run [--data-root DIR] [--exec-root DIR] IMAGE [CMD...]
It is the quick start's main job and the seed of the engine palletd will drive (issue 4): make
the container's writable snapshot, mount it, write an OCI bundle from the image config with the
runtime's secure defaults, `pallet-runtime run` it, then undo all of it. A built-in image
(hello-world, busybox) missing from the store is bootstrapped first; nothing comes from a
registry.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping
from typing import Any

from pallet.cgroups import remove_if_empty
from pallet.engine.runtimes import pallet_runtime_argv
from pallet.errors import NotFound, PalletError

BUILTIN = ("hello-world", "busybox")


def bundle_config(image_config: Mapping[str, Any], rootfs: str, cid: str, args: list[str] | None = None,
                  cgroup_parent: str = "/pallet") -> dict:
    """The runtime spec for a container of an image, made the way palletd's engine makes it
    (pallet.engine.bundle): Entrypoint + Cmd (or args), Env, WorkingDir, User, secure defaults."""
    from pallet.engine.bundle import build_spec, validate_create

    request: dict[str, Any] = {"Image": "local", "HostConfig": {"NetworkMode": "none"}}
    if args:
        request["Cmd"] = list(args)
    cfg, hc = validate_create(request)
    return build_spec(image_config or {}, cfg, hc, cid=cid, rootfs=rootfs, cgroup_parent=cgroup_parent,
                      hostname=cid[:12])


def run_image(ref: str, data_root: str, exec_root: str, args: list[str] | None = None,
              cgroup_parent: str = "/pallet", stdout=None) -> int:
    from pallet.image.service import ImageService, mount_rootfs, unmount_rootfs

    svc = ImageService(data_root)
    try:
        img = svc.get(ref)
    except NotFound:
        if ref.split(":")[0] not in BUILTIN:
            raise
        svc.bootstrap(ref.split(":")[0])
        img = svc.get(ref)
    cid = uuid.uuid4().hex
    bundle = os.path.join(exec_root, "containers", cid)
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(rootfs, mode=0o700)
    mounts = svc.prepare_container_rootfs(cid, img)
    try:
        mount_rootfs(mounts, rootfs)
        try:
            spec = bundle_config(img.config.config or {}, rootfs, cid, args, cgroup_parent)
            with open(os.path.join(bundle, "config.json"), "w") as f:
                json.dump(spec, f)
            return subprocess.run([*pallet_runtime_argv(), "--root", os.path.join(exec_root, "runtime"),
                                   "run", "--bundle", bundle, cid], stdout=stdout).returncode
        finally:
            unmount_rootfs(mounts, rootfs)
    finally:
        svc.remove_container_rootfs(cid)
        shutil.rmtree(bundle, ignore_errors=True)
        # The runtime removed the container's cgroup; the parent it made goes too once empty.
        remove_if_empty(cgroup_parent)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pallet.engine.local", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run an image in the foreground and remove the container")
    r.add_argument("--data-root", default="/var/lib/pallet")
    r.add_argument("--exec-root", default="/run/pallet")
    r.add_argument("image")
    r.add_argument("args", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    try:
        return run_image(a.image, a.data_root, a.exec_root, a.args or None)
    except PalletError as exc:
        print(f"pallet: {exc}", file=sys.stderr)
        return 125


if __name__ == "__main__":
    sys.exit(main())
