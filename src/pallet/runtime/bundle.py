"""Make a busybox OCI bundle from Debian's busybox-static: for the quick start and the tests.

    python -m pallet.runtime.bundle DIR [--terminal] -- CMD ARGS...
writes DIR/rootfs (busybox and its applet links) and DIR/config.json (pallet-runtime spec's
secure defaults, with the given command).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess

BUSYBOX = "/bin/busybox"


def make_rootfs(rootfs: str, busybox: str = BUSYBOX) -> None:
    for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "root"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    target = os.path.join(rootfs, "bin", "busybox")
    shutil.copy2(busybox, target)
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = os.path.join(rootfs, "bin", applet)
        if applet != "busybox" and not os.path.lexists(link):
            os.symlink("busybox", link)
    with open(os.path.join(rootfs, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    with open(os.path.join(rootfs, "etc", "group"), "w") as f:
        f.write("root:x:0:\nnogroup:x:65534:\n")


def make_bundle(bundle: str, args: list[str], terminal: bool = False) -> dict:
    from pallet.runtime.spec import default_spec

    make_rootfs(os.path.join(bundle, "rootfs"))
    spec = default_spec(args=args, terminal=terminal)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(spec, f, indent=1)
    return spec


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("--terminal", action="store_true")
    p.add_argument("args", nargs="*", help="the command, after --")
    a = p.parse_intermixed_args()
    make_bundle(a.bundle, a.args or ["sh"], a.terminal)


if __name__ == "__main__":
    main()
