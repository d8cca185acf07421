"""Helpers shared by the test tiers (importable from any test: pytest puts this directory, the
one of the root conftest.py, on sys.path)."""

from __future__ import annotations

import contextlib
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def rm_cgroups(parent: str) -> None:
    """Remove the cgroup `parent` (a test's own /pallet-test-<random>) and what is below it, in
    the v2 root and in every v1 hierarchy; a directory still in use stays (rmdir fails)."""
    rel = parent.strip("/")
    if not rel or not CGROUP_ROOT.is_dir():
        return
    dirs = [CGROUP_ROOT / rel] + [h / rel for h in CGROUP_ROOT.iterdir() if h.is_dir()]
    for d in dirs:
        if d.is_dir():
            for sub in sorted((p for p in d.rglob("*") if p.is_dir()), reverse=True):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                d.rmdir()


CREDENTIAL_HELPER = """#!/usr/bin/python3
# A docker-credential helper keeping its credentials in a JSON file beside itself, and recording
# every call: the protocol of docker/docker-credential-helpers.
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
store = os.path.join(here, "store.json")
creds = json.load(open(store)) if os.path.exists(store) else {}
action, data = sys.argv[1], sys.stdin.read().strip()
with open(os.path.join(here, "calls.log"), "a") as log:
    log.write(f"{action} {data}\\n")
if action == "get":
    if data not in creds:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({"ServerURL": data, **creds[data]}))
elif action == "store":
    rec = json.loads(data)
    creds[rec["ServerURL"]] = {"Username": rec["Username"], "Secret": rec["Secret"]}
elif action == "erase":
    if creds.pop(data, None) is None:
        print("credentials not found in native keychain")
        sys.exit(1)
elif action == "list":
    print(json.dumps({k: v["Username"] for k, v in creds.items()}))
json.dump(creds, open(store, "w"))
"""


def install_credential_helper(bindir: Path, name: str = "fake") -> Path:
    """Write `docker-credential-NAME` (CREDENTIAL_HELPER, a recording stand-in for a real
    helper such as docker-credential-pass) into `bindir`; its calls go to bindir/calls.log."""
    bindir.mkdir(parents=True, exist_ok=True)
    exe = bindir / f"docker-credential-{name}"
    exe.write_text(CREDENTIAL_HELPER)
    exe.chmod(0o755)
    return bindir


class NullFirewall:
    """A pallet.network firewall that applies nothing: for NetworkManager unit tests."""

    def apply(self, networks, ports) -> None:
        pass


class FakeNetns:
    """A pallet.network NetnsStore that makes no namespace: paths only."""

    def path(self, cid: str) -> str:
        return f"/fake/netns/{cid}"

    def create(self, cid: str) -> str:
        return self.path(cid)

    def remove(self, cid: str) -> None:
        pass

    def list(self) -> list[str]:
        return []
