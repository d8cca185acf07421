"""umoci unpacks an image straight out of Pallet's content store (an OCI image layout)."""

from __future__ import annotations

import json
import subprocess

from compat_support import need
from test_skopeo_layout import _build_image

from pallet.image.content import ContentStore


def test_umoci_unpacks_from_the_store(tmp_path):
    need("umoci")
    store = ContentStore(tmp_path / "content")
    desc = _build_image(store, "t1", docker=False)
    bundle = tmp_path / "bundle"
    proc = subprocess.run(["umoci", "unpack", "--image", f"{store.path}:t1", str(bundle)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert (bundle / "rootfs" / "etc" / "greeting").read_text() == "hello from pallet\n"
    config = json.loads((bundle / "config.json").read_text())
    assert config["process"]["args"] == ["cat", "/etc/greeting"]
    listed = subprocess.run(["umoci", "ls", "--layout", str(store.path)], capture_output=True, text=True,
                            timeout=60, check=True).stdout.split()
    assert listed == ["t1"]
    stat = subprocess.run(["umoci", "stat", "--image", f"{store.path}:t1", "--json"], capture_output=True,
                          text=True, timeout=60, check=True).stdout
    assert json.loads(stat)["history"][0]["created_by"] == "test"
    assert desc.digest.startswith("sha256:")
