"""OCI image configs for the built-in images: the field names of image-spec config.md, platforms."""

from __future__ import annotations

from typing import Any

import pytest

from pallet.errors import InvalidArgument, NotSupported
from pallet.image.builtin.rootfs import history_entry, image_config, normalize_machine, oci_platform

# image-spec v1.1 config.md, "Properties".
TOP_LEVEL = {"created", "author", "architecture", "os", "os.version", "os.features", "variant", "config",
             "rootfs", "history"}
EXECUTION = {"User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir", "Labels",
             "StopSignal", "ArgsEscaped", "Memory", "MemorySwap", "CpuShares", "Healthcheck"}
HISTORY = {"created", "author", "created_by", "comment", "empty_layer"}
DIFF = "sha256:" + "0" * 64


def _config(**kw):
    args: dict[str, Any] = dict(
        arch="x86_64", cmd=["sh"], env=["PATH=/bin"], diff_ids=[DIFF], created="2024-01-01T00:00:00Z",
        history=[history_entry("busybox", created="2024-01-01T00:00:00Z"),
                 history_entry('CMD ["sh"]', empty_layer=True)])
    args.update(kw)
    return image_config(**args)


def test_fields_are_the_specs():
    cfg = _config()
    assert set(cfg) <= TOP_LEVEL
    assert {"architecture", "os", "rootfs"} <= set(cfg)                 # REQUIRED
    assert set(cfg["config"]) <= EXECUTION
    assert set(cfg["rootfs"]) == {"type", "diff_ids"}
    assert all(set(h) <= HISTORY for h in cfg["history"])
    assert cfg == {
        "created": "2024-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [DIFF]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "busybox"},
                    {"created_by": 'CMD ["sh"]', "empty_layer": True}],
    }


def test_arm64_has_variant_v8():
    cfg = _config(arch="aarch64")
    assert (cfg["architecture"], cfg["variant"]) == ("arm64", "v8")
    assert _config(arch="arm64") == cfg


def test_created_is_optional():
    assert "created" not in _config(created=None)


def test_history_must_line_up_with_layers():
    with pytest.raises(InvalidArgument):
        _config(diff_ids=[DIFF, DIFF])
    assert _config(diff_ids=[])["rootfs"]["diff_ids"] == []             # filled in later by the caller


def test_inputs_are_copied():
    cmd, env = ["sh"], ["A=1"]
    cfg = _config(cmd=cmd, env=env)
    cmd.append("x")
    env.append("B=2")
    assert cfg["config"] == {"Env": ["A=1"], "Cmd": ["sh"]}


@pytest.mark.parametrize(("arch", "want"), [("x86_64", ("amd64", None)), ("amd64", ("amd64", None)),
                                            ("aarch64", ("arm64", "v8")), ("arm64", ("arm64", "v8"))])
def test_oci_platform(arch, want):
    assert oci_platform(arch) == want


def test_oci_platform_host_and_unknown(monkeypatch):
    import os

    assert oci_platform() == oci_platform(os.uname().machine)
    with pytest.raises(NotSupported):
        oci_platform("s390x")
    assert normalize_machine("amd64") == "x86_64" and normalize_machine("riscv64") == "riscv64"


def test_history_entry_omits_unset_fields():
    assert history_entry("x") == {"created_by": "x"}
    assert history_entry("x", created="t", comment="c", empty_layer=True) == {
        "created": "t", "created_by": "x", "comment": "c", "empty_layer": True}
