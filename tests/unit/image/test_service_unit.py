"""Unit tests for pallet.image.service (no root: the copying snapshotter, recorded mounts):
chain IDs, --change parsing, Docker's naming and removal rules, the API JSON shapes, import,
unpack, and how mounts are performed."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from pallet.errors import Conflict, InvalidArgument, NotFound, NotSupported
from pallet.image.changes import apply_changes
from pallet.image.inspect import unix_time
from pallet.image.service import (
    LABEL_PARENT,
    ImageService,
    chain_ids,
    mount_args,
    mount_rootfs,
    readonly_view,
    unmount_rootfs,
)
from pallet.oci import mediatypes as mt
from pallet.oci.digest import Digest
from pallet.oci.mount import Mount
from pallet.syscalls import flags as F
from pallet.syscalls.recording import Call, RecordingSyscalls

SPEC = Path(__file__).resolve().parents[3].parent / "shared" / "specs" / "docker-engine-api" / "v1.50.yaml"


def rootfs_tar(files: dict[str, bytes], compress: bool = False) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_700_000_000
            t.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    return io.BytesIO(gzip.compress(raw, mtime=0) if compress else raw)


@pytest.fixture
def svc(tmp_path):
    s = ImageService(tmp_path / "root", snapshotter="copying")
    yield s
    s.close()


# --- chain ids ---------------------------------------------------------------------------------

def test_chain_ids_follow_the_image_spec():
    a, b, c = (f"sha256:{x * 64}" for x in "abc")
    ab = str(Digest.from_bytes(f"{a} {b}".encode()))
    abc = str(Digest.from_bytes(f"{ab} {c}".encode()))
    assert chain_ids([a, b, c]) == [a, ab, abc]
    assert chain_ids([]) == []
    with pytest.raises(InvalidArgument):
        chain_ids(["sha256:nothex"])


# --- --change ----------------------------------------------------------------------------------

def test_changes_cover_dockers_import_subset():
    cfg = apply_changes({"Env": ["A=0", "PATH=/bin"]}, [
        'CMD ["/bin/sh", "-c", "echo hi"]',
        "ENV A=1 B=\"two words\"",
        "ENV C legacy value",
        "WORKDIR /srv", "WORKDIR app",
        "EXPOSE 80 53/udp 8000-8001",
        "USER nobody:nogroup",
        "LABEL a=b \"c d\"=e",
        'VOLUME ["/data"]', "VOLUME /x /y",
        "STOPSIGNAL SIGINT",
    ])
    assert cfg["Cmd"] == ["/bin/sh", "-c", "echo hi"]
    assert cfg["Env"] == ["PATH=/bin", "A=1", "B=two words", "C=legacy value"]
    assert cfg["WorkingDir"] == "/srv/app"
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
    assert cfg["User"] == "nobody:nogroup"
    assert cfg["Labels"] == {"a": "b", "c d": "e"}
    assert cfg["Volumes"] == {"/data": {}, "/x": {}, "/y": {}}
    assert cfg["StopSignal"] == "SIGINT"


def test_changes_shell_form_and_entrypoint_reset():
    cfg = apply_changes({"Cmd": ["old"]}, ["ENTRYPOINT top -b"])
    assert cfg == {"Entrypoint": ["/bin/sh", "-c", "top -b"]}


@pytest.mark.parametrize("bad", ["RUN echo", "FROM x", "CMD", "EXPOSE 99999", "EXPOSE 80/xyz", "ENV =x"])
def test_changes_refuse_what_docker_refuses(bad):
    with pytest.raises(InvalidArgument):
        apply_changes({}, [bad])


# --- mounts ------------------------------------------------------------------------------------

def test_mount_args_split_flags_from_data():
    m = Mount("overlay", "overlay", "", ("ro", "index=off", "lowerdir=a:b", "x-pallet.chdir=/s"))
    assert mount_args(m) == (F.MS_RDONLY, "index=off,lowerdir=a:b")
    assert mount_args(Mount("bind", "/x", "", ("rbind", "rw"))) == (F.MS_BIND | F.MS_REC, "")


def test_mount_rootfs_records_binds_remounts_and_unmounts(tmp_path):
    rec = RecordingSyscalls()
    mounts = [Mount("bind", "/src", "", ("rbind", "ro"))]
    mount_rootfs(mounts, tmp_path, syscalls=rec)
    unmount_rootfs(mounts, tmp_path, syscalls=rec)
    assert rec.calls == [
        Call("mount", source="/src", target=str(tmp_path), fstype=None, flags=F.MS_BIND | F.MS_REC,
             data=None),
        Call("mount", source=None, target=str(tmp_path), fstype=None,
             flags=F.MS_REMOUNT | F.MS_BIND | F.MS_RDONLY, data=None),
        Call("umount2", target=str(tmp_path), flags=0),
    ]


def test_mount_rootfs_honours_chdir_and_restores_cwd(tmp_path, monkeypatch):
    # The single-threaded path (chdir and back); with other threads alive (other tests' daemons
    # and watchers) the service forks a child instead, whose calls this recorder cannot see.
    import pallet.image.service as service_mod

    monkeypatch.setattr(service_mod.threading, "active_count", lambda: 1)
    seen: list[str] = []

    class Rec(RecordingSyscalls):
        def mount(self, source, target, fstype=None, flags=0, data=None) -> None:
            seen.append(os.getcwd())
            super().mount(source, target, fstype, flags, data)

    rel = Mount("overlay", "overlay", "", ("lowerdir=1/fs", "upperdir=2/fs", "workdir=2/work",
                                           f"x-pallet.chdir={tmp_path}"))
    before = os.getcwd()
    rec = Rec()
    mount_rootfs([rel], "/target", syscalls=rec)
    assert seen == [str(tmp_path)] and os.getcwd() == before
    assert rec.calls[0].args["data"] == "lowerdir=1/fs,upperdir=2/fs,workdir=2/work"


def test_mount_rootfs_undoes_what_it_did_on_failure(tmp_path):
    class Rec(RecordingSyscalls):
        def mount(self, source, target, fstype=None, flags=0, data=None) -> None:
            super().mount(source, target, fstype, flags, data)
            if target.endswith("second"):
                raise OSError(22, "boom")

    rec = Rec()
    with pytest.raises(OSError):
        mount_rootfs([Mount("bind", "/a", "", ("rbind",)), Mount("tmpfs", "tmpfs", "second")],
                     tmp_path, syscalls=rec)
    assert rec.calls[-1] == Call("umount2", target=str(tmp_path), flags=F.MNT_DETACH)


def test_readonly_view_stacks_the_upper_as_a_lower():
    m = Mount("overlay", "overlay", "", ("index=off", "lowerdir=/l1:/l2", "upperdir=/u", "workdir=/w"))
    view = readonly_view([m])
    assert isinstance(view, Mount)
    assert view.options == ("ro", "lowerdir=/u:/l1:/l2", "index=off")
    assert readonly_view([Mount("bind", "/tree", "", ("rbind", "rw"))]) == "/tree"


# --- import, names, removal ----------------------------------------------------------------------

def test_import_stores_one_layer_with_changes(svc):
    image_id = svc.import_image(rootfs_tar({"bin/x": b"x", "etc/y": b"y"}), "imp:1",
                                changes=['CMD ["/bin/sh"]', "ENV A=1"], message="hi")
    img = svc.get("imp:1")
    assert str(img.id) == image_id
    assert img.manifest.media_type == mt.OCI_MANIFEST
    assert [layer.media_type for layer in img.manifest.layers] == [mt.OCI_LAYER]  # as given
    assert img.config.config == {"Cmd": ["/bin/sh"], "Env": ["A=1"]}
    assert svc.inspect("imp:1")["Comment"] == "hi"
    # The diff_id is the sha256 of the tar as given.
    raw = rootfs_tar({"bin/x": b"x", "etc/y": b"y"}).getvalue()
    assert str(img.config.diff_ids[0]) == str(Digest.from_bytes(raw))


def test_import_keeps_gzip_as_it_came(svc):
    data = rootfs_tar({"a": b"1"}, compress=True).getvalue()
    svc.import_image(io.BytesIO(data), "gz:1")
    img = svc.get("gz:1")
    assert img.manifest.layers[0].digest == Digest.from_bytes(data)
    assert img.config.diff_ids[0] == Digest.from_bytes(gzip.decompress(data))


def test_import_refuses_what_is_not_a_tar(svc):
    with pytest.raises(InvalidArgument):
        svc.import_image(io.BytesIO(b"definitely not a tar archive" * 40), "bad:1")
    assert svc.meta.images() == []


def test_unpack_and_export_with_the_copying_snapshotter(svc, tmp_path):
    svc.import_image(rootfs_tar({"f": b"content"}), "u:1")
    chain = svc.unpack("u:1")
    img = svc.get("u:1")
    assert chain == str(img.config.diff_ids[0])
    assert svc.unpack("u:1") == chain  # idempotent
    svc.prepare_container_rootfs("c1", "u:1")
    out = io.BytesIO()
    svc.export_container("c1", out)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as t:
        assert t.extractfile("f").read() == b"content"
    with pytest.raises(NotSupported):
        svc.commit("c1")
    svc.remove_container_rootfs("c1")


def test_lookup_by_name_full_id_and_short_id(svc):
    image_id = svc.import_image(rootfs_tar({"a": b"1"}), "look:1")
    hex_id = image_id.partition(":")[2]
    for ref in ("look:1", "docker.io/library/look:1", image_id, hex_id, hex_id[:12], f"sha256:{hex_id[:8]}"):
        assert str(svc.resolve(ref).id) == image_id
    with pytest.raises(NotFound):
        svc.resolve("look:2")
    with pytest.raises(NotFound):
        svc.resolve("0000000")


def test_rmi_by_name_untags_then_deletes_the_last(svc):
    image_id = svc.import_image(rootfs_tar({"a": b"1"}), "one:1")
    svc.tag("one:1", "two:2")
    assert svc.remove("one:1") == [{"Untagged": "one:1"}]
    assert svc.remove("two:2") == [{"Untagged": "two:2"}, {"Deleted": image_id}]
    with pytest.raises(NotFound):
        svc.resolve(image_id)
    assert [d.ref_name for d in svc.content.index()] == []


def test_rmi_by_id_with_names_in_two_repositories_needs_force(svc):
    image_id = svc.import_image(rootfs_tar({"a": b"1"}), "r1:1")
    svc.tag(image_id, "r2:1")
    with pytest.raises(Conflict, match="multiple repositories"):
        svc.remove(image_id[7:19])
    items = svc.remove(image_id[7:19], force=True)
    assert items[-1] == {"Deleted": image_id}
    assert {"Untagged": "r1:1"} in items and {"Untagged": "r2:1"} in items


def test_rmi_by_id_with_tags_of_one_repository_deletes(svc):
    image_id = svc.import_image(rootfs_tar({"a": b"1"}), "same:1")
    svc.tag(image_id, "same:2")
    assert svc.remove(image_id) == [{"Untagged": "same:1"}, {"Untagged": "same:2"}, {"Deleted": image_id}]


def test_rmi_conflicts_while_a_container_uses_the_image(svc):
    image_id = svc.import_image(rootfs_tar({"a": b"1"}), "used:1")
    svc.prepare_container_rootfs("ctr", "used:1")
    with pytest.raises(Conflict, match="container ctr"):
        svc.remove("used:1")
    with pytest.raises(Conflict, match="container ctr"):
        svc.remove(image_id)
    # force removes the name; the image stays (dangling) for the container.
    assert svc.remove("used:1", force=True) == [{"Untagged": "used:1"}]
    assert svc.resolve(image_id)
    assert svc.inspect(image_id)["RepoTags"] == []
    svc.remove_container_rootfs("ctr")
    assert svc.remove(image_id) == [{"Deleted": image_id}]


def test_rmi_keeps_parents_with_children_and_prunes_untagged_parents(svc):
    base = svc.import_image(rootfs_tar({"a": b"1"}), "base:1")
    # A child made by hand (commit needs overlay): same layers, one more history step.
    img = svc.get(base)
    cfg = img.config.to_json()
    cfg["config"] = {"Cmd": ["x"]}
    cfg["history"].append({"created_by": "CMD x", "empty_layer": True})
    with svc._lease("test") as lease:
        made = svc._create_image(lease, cfg, img.manifest.layers, parent=base,
                                 names=["docker.io/library/child:1"])
    child = str(made.id)
    assert svc.inspect("child:1")["Parent"] == base
    assert svc.remove("base:1") == [{"Untagged": "base:1"}]  # kept: child:1 depends on it
    assert LABEL_PARENT not in svc.resolve(base).labels
    assert svc.resolve(child).labels[LABEL_PARENT] == base
    with pytest.raises(Conflict, match="dependent child images"):
        svc.remove(base, force=True)
    assert svc.list_images() == [s for s in svc.list_images(all=True) if s["Id"] != base]
    history = svc.history("child:1")
    assert [h["Id"] for h in history] == [child, base]
    assert svc.remove("child:1") == [{"Untagged": "child:1"}, {"Deleted": child}, {"Deleted": base}]
    assert svc.meta.images() == []


def test_tag_refuses_digests_and_untag_reports_unknown(svc):
    svc.import_image(rootfs_tar({"a": b"1"}), "t:1")
    with pytest.raises(InvalidArgument):
        svc.tag("t:1", "t@sha256:" + "a" * 64)
    with pytest.raises(NotFound):
        svc.untag("nope:1")
    assert svc.tag("t:1", "localhost:5000/x/y:z") == "localhost:5000/x/y:z"
    assert "localhost:5000/x/y:z" in svc.inspect("t:1")["RepoTags"]


# --- API shapes --------------------------------------------------------------------------------

def _schema_keys(name: str) -> tuple[set[str], set[str]]:
    """Properties and required keys of one API definition. The venv has no YAML parser; the
    system Python's PyYAML (Debian python3-yaml) reads the document when it is there."""
    if not SPEC.exists():
        pytest.skip(f"no API document at {SPEC}")
    code = ("import json, sys, yaml; d = yaml.safe_load(open(sys.argv[1]))['definitions'][sys.argv[2]]; "
            "print(json.dumps([sorted(d['properties']), d.get('required', [])]))")
    try:
        import yaml

        schema = yaml.safe_load(SPEC.read_text())["definitions"][name]
        return set(schema["properties"]), set(schema.get("required", []))
    except ImportError:
        pass
    proc = subprocess.run(["/usr/bin/python3", "-c", code, str(SPEC), name], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip("no YAML parser to read the API document (pip install pyyaml or apt python3-yaml)")
    props, required = json.loads(proc.stdout)
    return set(props), set(required)


def test_inspect_history_and_summary_have_the_api_shapes(svc):
    svc.import_image(rootfs_tar({"a": b"1"}), "shape:1", changes=["EXPOSE 80"])
    props, required = _schema_keys("ImageInspect")
    out = svc.inspect("shape:1")
    assert set(out) <= props and required <= set(out)
    assert {"Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Config", "Architecture",
            "Os", "Size", "RootFS", "Metadata"} <= set(out)
    config_props, _ = _schema_keys("ImageConfig")
    assert set(out["Config"]) <= config_props and out["Config"]["ExposedPorts"] == {"80/tcp": {}}
    assert out["RootFS"]["Type"] == "layers" and len(out["RootFS"]["Layers"]) == 1
    assert out["Metadata"]["LastTagTime"].endswith("Z")
    json.dumps(out)

    props, required = _schema_keys("ImageHistoryResponseItem")
    items = svc.history("shape:1")
    assert len(items) == 1 and set(items[0]) == props and required <= props
    assert items[0]["Tags"] == ["shape:1"] and isinstance(items[0]["Created"], int)

    props, required = _schema_keys("ImageSummary")
    (summary,) = svc.list_images()
    assert set(summary) <= props and required <= set(summary)
    assert summary["RepoTags"] == ["shape:1"] and summary["Containers"] == 0


def test_unix_time_reads_nanoseconds():
    assert unix_time("2022-02-04T21:20:12.497794809Z") == 1644009612
    assert unix_time(None) == 0 and unix_time("garbage") == 0


def test_config_labels_are_recorded_but_cannot_claim_a_parent(svc):
    image_id = svc.import_image(rootfs_tar({"a": b"a"}), "lab:1",
                                changes=['LABEL team=infra pallet.image.parent=sha256:' + "0" * 64])
    rec = svc.meta.get_image(image_id)
    assert rec.labels.get("team") == "infra"
    assert "pallet.image.parent" not in rec.labels
