"""Real builds from the busybox base (root): stages and --target, the cache (hits, misses, a
changed file busting exactly the steps after its COPY, a restart, a shared prefix, --cache-from),
build args, SOURCE_DATE_EPOCH reproducibility, cache mounts, metadata, COPY/ADD details, a failing
RUN and an interrupted build leaving nothing behind.

The builder runs in-process on a private data root and exec root; RUN containers get cgroups
under /pallet-test-<random>, removed at the end. A test that leaves an active build snapshot, a
runtime state directory or a mount under its exec root fails.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from pallet.build.builder import Builder, BuildError, BuildOptions, Cancelled
from pallet.build.cache import BuildCache
from pallet.image.service import ImageService
from pallet_testlib import rm_cgroups

if os.geteuid() != 0:
    pytest.skip("needs root (overlay mounts, namespaces, cgroups)", allow_module_level=True)
if not os.path.exists("/bin/busybox"):
    pytest.skip("needs Debian's busybox-static (/bin/busybox)", allow_module_level=True)

RUNTIME = [sys.executable, "-m", "pallet.runtime.cli"]


class Env:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.exec = root / "exec"
        self.parent = f"/pallet-test-{uuid.uuid4().hex[:8]}"
        self.svc = ImageService(str(self.data))
        self.svc.bootstrap("busybox")
        self.new_builder()

    def new_builder(self) -> None:
        """A fresh cache handle and builder on the same roots, as after a daemon restart."""
        self.cache = BuildCache(self.data)
        self.builder = Builder(self.svc, self.cache, exec_root=str(self.exec), runtime=RUNTIME,
                               cgroup_parent=self.parent)

    def build(self, ctx: Path, dockerfile: str, **opts) -> tuple[str, str]:
        (ctx / "Dockerfile").write_text(dockerfile)
        out: list[str] = []
        iid = self.builder.build(str(ctx), BuildOptions(**opts), lambda m: out.append(m.get("stream", "")))
        return iid, "".join(out)

    def leftovers(self) -> list[str]:
        bad = [f"snapshot {i.name}" for i in self.svc.snapshots.walk() if i.kind != "committed"]
        build_dir = self.exec / "build"
        if build_dir.is_dir():
            bad += [f"dir {p.name}" for p in build_dir.iterdir() if p.name != "runtime"]
            rt = build_dir / "runtime"
            if rt.is_dir():
                bad += [f"runtime state {p.name}" for p in rt.iterdir() if not p.name.startswith(".")]
        with open("/proc/self/mountinfo") as f:
            bad += [f"mount {line.split()[4]}" for line in f if str(self.root) in line.split()[4]]
        return bad

    def close(self) -> None:
        self.cache.close()
        self.svc.close()
        rm_cgroups(self.parent)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env(tmp_path_factory.mktemp("build"))
    try:
        yield e
    finally:
        e.close()


@pytest.fixture
def ctx(tmp_path):
    d = tmp_path / "ctx"
    d.mkdir()
    return d


def _steps_from_cache(output: str) -> list[int]:
    """Step numbers whose result came from the cache."""
    hits, step = [], 0
    for line in output.splitlines():
        if line.startswith("Step "):
            step = int(line.split()[1].split("/")[0])
        elif line.strip() == "---> Using cache":
            hits.append(step)
    return hits


def _file(env: Env, image: str, path: str) -> bytes:
    """A file of an image, read through a read-only view of its top snapshot."""
    img = env.svc.get(image)
    chain = env.svc.unpack(img)
    for name in env.svc._lower_dirs(chain):
        candidate = Path(name) / path.lstrip("/")
        if candidate.is_file() or candidate.is_symlink():
            return candidate.read_bytes()
    raise FileNotFoundError(path)


def test_multi_stage_target_skips_unneeded_stages(env, ctx):
    df = ("FROM busybox AS base\nRUN echo base > /base.txt\n"
          "FROM busybox AS broken\nRUN exit 9\n"
          "FROM base AS final\nCOPY --from=0 /base.txt /copied.txt\nCMD [\"cat\", \"/copied.txt\"]\n")
    iid, out = env.build(ctx, df, tags=["multi:final"])
    assert "exit 9" not in out and "Step 5/5" in out     # 2 + 3 steps: the broken stage is skipped
    assert _file(env, iid, "/copied.txt") == b"base\n"
    base_id, _ = env.build(ctx, df, target="base")
    assert env.svc.get(base_id).config.config["Cmd"] == ["sh"]
    with pytest.raises(BuildError, match="returned a non-zero code: 9"):
        env.build(ctx, df, target="broken")
    with pytest.raises(Exception, match="failed to reach build target nope"):
        env.build(ctx, df, target="nope")
    assert env.leftovers() == []


def test_changed_file_busts_exactly_the_steps_after_its_copy(env, ctx):
    (ctx / "a.txt").write_text("one\n")
    (ctx / "c.txt").write_text("c\n")
    df = ("FROM busybox\nRUN echo first > /first\nCOPY a.txt /\nRUN cat /a.txt > /b.txt\n"
          "COPY c.txt /\nENV DONE=1\n")
    first, _ = env.build(ctx, df)
    again, out = env.build(ctx, df)
    assert again == first and _steps_from_cache(out) == [2, 3, 4, 5, 6]
    os.utime(ctx / "a.txt", (1, 1))                   # an mtime alone changes nothing
    same, out = env.build(ctx, df)
    assert same == first and _steps_from_cache(out) == [2, 3, 4, 5, 6]
    (ctx / "a.txt").write_text("two\n")
    changed, out = env.build(ctx, df)
    assert _steps_from_cache(out) == [2] and changed != first
    assert _file(env, changed, "/b.txt") == b"two\n"
    # The cache survives a restart (a new cache handle and builder on the same data root) and
    # serves another Dockerfile that shares the prefix.
    env.new_builder()
    _, out = env.build(ctx, "FROM busybox\nRUN echo first > /first\nCOPY a.txt /\nRUN echo other\n")
    assert _steps_from_cache(out) == [2, 3]
    _, out = env.build(ctx, df, no_cache=True)
    assert _steps_from_cache(out) == []


def test_build_args_and_the_run_cache(env, ctx):
    df = "FROM busybox\nARG V=default\nRUN echo \"v=$V\" > /v\n"
    iid, out = env.build(ctx, df)
    assert _file(env, iid, "/v") == b"v=default\n"
    iid2, out = env.build(ctx, df, build_args={"V": "given", "UNUSED": "x"})
    assert _file(env, iid2, "/v") == b"v=given\n"
    assert _steps_from_cache(out) == [2]                # the ARG step hits, the RUN misses
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in out
    hist = env.svc.history(iid2)
    assert hist[0]["CreatedBy"].startswith("|1 V=given /bin/sh -c echo")
    _, out = env.build(ctx, df, build_args={"V": "given"})
    assert _steps_from_cache(out) == [2, 3]


def test_source_date_epoch_gives_the_same_digest(env, ctx):
    (ctx / "f").write_text("data\n")
    df = "FROM busybox\nCOPY f /f\nRUN echo made > /made && touch /made\nLABEL a=b\n"
    args = {"SOURCE_DATE_EPOCH": "1700000000"}
    one, _ = env.build(ctx, df, build_args=args, no_cache=True)
    time.sleep(1.1)
    two, _ = env.build(ctx, df, build_args=args, no_cache=True)
    assert one == two
    cfg = env.svc.get(one).config
    assert cfg.created == "2023-11-14T22:13:20Z"
    three, _ = env.build(ctx, df, no_cache=True)
    assert three != one


def test_cache_mounts_persist_between_builds_and_stay_out_of_the_image(env, ctx):
    df = ("FROM busybox\nRUN --mount=type=cache,id=counter,target=/cache "
          "sh -c 'echo x >> /cache/n; wc -l < /cache/n > /count'\n")
    first, _ = env.build(ctx, df, no_cache=True)
    second, _ = env.build(ctx, df, no_cache=True)
    assert int(_file(env, first, "/count")) + 1 == int(_file(env, second, "/count"))
    with pytest.raises(FileNotFoundError):
        _file(env, second, "/cache/n")
    layer_tar = env.svc.content.read(env.svc.get(second).manifest.layers[-1].digest)
    with tarfile.open(fileobj=io.BytesIO(layer_tar)) as t:
        names = t.getnames()
    assert names == ["count"], names                     # no /cache mount point, no /etc/hosts
    assert [m["ID"] for m in env.cache.mounts()] == ["counter"]
    deleted, _ = env.cache.prune(env.svc)
    assert "cachemount:counter" in deleted and env.cache.mounts() == []


def test_metadata_instructions_config_and_history(env, ctx):
    df = ("FROM busybox\nMAINTAINER Jane <jane@example.com>\nENV A=1 B=\"x y\"\nLABEL org.example.v=$A\n"
          "EXPOSE 80 53/udp\nUSER nobody\n"
          "WORKDIR /srv\nWORKDIR sub\nVOLUME /data\nSTOPSIGNAL SIGQUIT\nSHELL [\"/bin/sh\", \"-ec\"]\n"
          "HEALTHCHECK --interval=5s --retries=2 CMD true\nENTRYPOINT [\"/bin/echo\"]\nCMD hi\n"
          "ONBUILD RUN echo triggered > /tmp/trig\n")
    iid, _ = env.build(ctx, df, labels={"built.by": "test"})
    c = env.svc.inspect(iid)["Config"]
    assert env.svc.inspect(iid)["Author"] == "Jane <jane@example.com>"
    assert c["Env"][-2:] == ["A=1", "B=x y"]
    assert c["Labels"] == {"org.example.v": "1", "built.by": "test"}
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert c["User"] == "nobody" and c["WorkingDir"] == "/srv/sub" and c["Volumes"] == {"/data": {}}
    assert c["StopSignal"] == "SIGQUIT" and c["Shell"] == ["/bin/sh", "-ec"]
    assert c["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5 * 10**9, "Retries": 2}
    assert c["Entrypoint"] == ["/bin/echo"] and c["Cmd"] == ["/bin/sh", "-ec", "hi"]
    assert c["OnBuild"] == ["RUN echo triggered > /tmp/trig"]
    history = env.svc.get(iid).config.to_json()["history"]
    layered = [h["created_by"] for h in history[-14:] if not h.get("empty_layer")]
    assert layered == ["/bin/sh -c #(nop)  WORKDIR /srv", "/bin/sh -c #(nop)  WORKDIR /srv/sub"]
    existing, _ = env.build(ctx, "FROM busybox\nWORKDIR /tmp\n")
    assert env.svc.get(existing).config.to_json()["history"][-1]["empty_layer"] is True
    assert env.svc.get(existing).config.diff_ids == env.svc.get("busybox").config.diff_ids
    assert history[-1]["created_by"] == "/bin/sh -c #(nop)  LABEL built.by=test"
    # ONBUILD triggers run in a child build, and are not inherited further.
    env.svc.tag(iid, "withtrigger:1")
    child, out = env.build(ctx, "FROM withtrigger:1\nUSER root\n")
    assert "# Executing 1 build trigger" in out
    assert _file(env, child, "/tmp/trig") == b"triggered\n"
    assert not env.svc.inspect(child)["Config"].get("OnBuild")


def test_copy_and_add_details(env, ctx, tmp_path):
    (ctx / "dir" / "sub").mkdir(parents=True)
    (ctx / "dir" / "sub" / "f.txt").write_text("f\n")
    (ctx / "x1.txt").write_text("1")
    (ctx / "x2.txt").write_text("2")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        ti = tarfile.TarInfo("inside/t.txt")
        ti.size = 2
        t.addfile(ti, io.BytesIO(b"t\n"))
    (ctx / "arch.tar.gz").write_bytes(buf.getvalue())
    served = tmp_path / "www"
    served.mkdir()
    (served / "remote.txt").write_text("remote\n")
    digest = hashlib.sha256(b"remote\n").hexdigest()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/remote.txt"
        df = ("FROM busybox\nWORKDIR /w\nCOPY dir ./d/\nCOPY --chown=1000:1001 --chmod=0640 x*.txt ./xs/\n"
              "ADD arch.tar.gz /ex/\n"
              f"ADD --checksum=sha256:{digest} {url} /r/\n"
              "COPY --chown=nobody x1.txt /owned\n")
        iid, _ = env.build(ctx, df)
        assert _file(env, iid, "/w/d/sub/f.txt") == b"f\n"
        assert _file(env, iid, "/ex/inside/t.txt") == b"t\n"
        assert _file(env, iid, "/r/remote.txt") == b"remote\n"
        img = env.svc.get(iid)
        layer = env.svc.content.read(img.manifest.layers[-4].digest)  # the COPY x*.txt layer
        with tarfile.open(fileobj=io.BytesIO(layer)) as t:
            xs = {m.name: (m.uid, m.gid, m.mode) for m in t.getmembers() if m.name.startswith("w/xs/")}
        assert xs == {"w/xs/x1.txt": (1000, 1001, 0o640), "w/xs/x2.txt": (1000, 1001, 0o640)}
        owned = env.svc.content.read(img.manifest.layers[-1].digest)
        with tarfile.open(fileobj=io.BytesIO(owned)) as t:
            m = t.getmember("owned")
        assert (m.uid, m.gid) == (65534, 65534)  # a name without a group: gid = uid (Docker)
        with pytest.raises(BuildError, match="digest mismatch"):
            env.build(ctx, f"FROM busybox\nADD --checksum=sha256:{'0' * 64} {url} /r/\n")
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(BuildError, match="file not found in build context"):
        env.build(ctx, "FROM busybox\nCOPY missing.txt /\n")
    with pytest.raises(BuildError, match="outside the build context"):
        env.build(ctx, "FROM busybox\nCOPY ../../etc/passwd /\n")
    iid, _ = env.build(ctx, "FROM scratch\nCOPY x1.txt /one\n")
    assert _file(env, iid, "/one") == b"1"
    assert env.leftovers() == []


def test_cache_from_an_image(env, ctx):
    df = "FROM busybox\nRUN echo from-cache > /c\nCMD [\"true\"]\n"
    src, _ = env.build(ctx, df, tags=["cachesrc:1"])
    for key, _, _, _ in env.cache.steps():
        env.cache.forget(key)
    again, out = env.build(ctx, df, cache_from=["cachesrc:1"])
    assert "Using cache (from --cache-from)" in out and "Running in" not in out
    assert env.svc.get(again).config.diff_ids == env.svc.get(src).config.diff_ids


def test_failing_run_shows_command_code_and_output(env, ctx):
    msgs: list[str] = []
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo to-stdout; echo to-stderr >&2; exit 3\n")
    with pytest.raises(BuildError) as info:
        env.builder.build(str(ctx), BuildOptions(), lambda m: msgs.append(m.get("stream", "")))
    assert str(info.value) == ("The command '/bin/sh -c echo to-stdout; echo to-stderr >&2; exit 3' "
                               "returned a non-zero code: 3")
    assert info.value.code == 3
    out = "".join(msgs)
    assert "to-stdout" in out and "to-stderr" in out
    assert env.leftovers() == []


def test_interrupted_build_leaves_nothing(env, ctx):
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo started; sleep 30\n")
    cancel = threading.Event()

    def emit(msg):
        if "started" in msg.get("stream", ""):
            cancel.set()

    before = len(env.cache.steps())
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        env.builder.build(str(ctx), BuildOptions(no_cache=True), emit, cancel)
    assert time.monotonic() - t0 < 10
    assert env.leftovers() == []
    assert len(env.cache.steps()) == before


def test_parse_errors_and_unknown_flags_fail_before_anything_runs(env, ctx):
    with pytest.raises(Exception, match=r"Dockerfile:2:1: unknown instruction: RUNN"):
        env.build(ctx, "FROM busybox\nRUNN true\n")
    with pytest.raises(Exception, match=r"unknown flag: --chmown"):
        env.build(ctx, "FROM busybox\nCOPY --chmown=1 a b\n")
    # A registry on a closed loopback port: the pull fails without leaving the machine.
    with pytest.raises(Exception, match=r"pull access denied for 127\.0\.0\.1:9/nosuchimage"):
        env.build(ctx, "FROM 127.0.0.1:9/nosuchimage:1\n", insecure_registries=("127.0.0.1:9",))
    with pytest.raises(Exception, match="only the host platform"):
        env.build(ctx, "FROM --platform=linux/s390x busybox\n")
    assert json.loads(json.dumps(env.leftovers())) == []


def test_from_pulls_a_missing_base_from_a_loopback_registry(env, ctx, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "registry"))
    distreg = pytest.importorskip("distreg_support")
    if not os.path.exists(distreg.REGISTRY):
        pytest.skip("needs Debian's docker-registry")
    from pallet.registry.client import RegistryClient

    with distreg.DistRegistry(tmp_path / "registry") as reg:
        base, _ = env.build(ctx, "FROM busybox\nRUN echo pushed > /pushed\n")
        name = f"{reg.host}/buildbase:1"
        env.svc.tag(base, name)
        client = RegistryClient(env.svc, insecure=(reg.host,))
        client.push(name)
        env.svc.remove(name)
        _, out = env.build(ctx, f"FROM {name}\nRUN cat /pushed\n", insecure_registries=(reg.host,))
        assert f"Pulling {name}" in out and "pushed\n" in out
        assert env.svc.get(name).id == env.svc.get(base).id


def test_run_bind_tmpfs_and_network_none(env, ctx):
    (ctx / "input.txt").write_text("bound\n")
    df = ("FROM busybox\n"
          "RUN --network=none --mount=type=tmpfs,target=/scratch --mount=type=bind,source=input.txt,"
          "target=/in/input.txt sh -c 'mount | grep -q \" /scratch type tmpfs\" && cat /in/input.txt > /out "
          "&& ! ip link show eth0 2>/dev/null'\n")
    iid, _ = env.build(ctx, df)
    assert _file(env, iid, "/out") == b"bound\n"
    layer = env.svc.content.read(env.svc.get(iid).manifest.layers[-1].digest)
    with tarfile.open(fileobj=io.BytesIO(layer)) as t:
        assert t.getnames() == ["out"]
    _, out = env.build(ctx, df)
    assert _steps_from_cache(out) == [2]
    (ctx / "input.txt").write_text("changed\n")     # the bound file's content is part of the key
    iid2, out = env.build(ctx, df)
    assert _steps_from_cache(out) == [] and _file(env, iid2, "/out") == b"changed\n"


def test_a_new_builder_cleans_what_a_crashed_build_left(env):
    # What a palletd killed mid-RUN leaves: a mounted build snapshot and a context directory.
    token = uuid.uuid4().hex
    rootfs = env.exec / "build" / token / "rootfs"
    rootfs.mkdir(parents=True)
    with env.svc.build_lease() as lease:
        mounts = env.svc.prepare_build_rootfs(lease, f"build-{token}", env.svc.get("busybox"))
        env.svc.mount(mounts, str(rootfs))
    (env.cache.tmp / "ctx-crashed").mkdir()
    assert env.leftovers() != []
    env.new_builder()
    assert f"snapshot build-{token}" in env.builder.recovered
    assert env.leftovers() == [] and not (env.cache.tmp / "ctx-crashed").exists()


def test_copy_exclude_and_parents(env, ctx):
    (ctx / "hom" / "deep").mkdir(parents=True)
    (ctx / "hom" / "keep.md").write_text("k")
    (ctx / "hom" / "drop.txt").write_text("d")
    (ctx / "hom" / "deep" / "x.txt").write_text("x")
    (ctx / "home.txt").write_text("h")
    (ctx / "homer.md").write_text("m")
    iid, _ = env.build(ctx, "FROM busybox\nCOPY --exclude=*.txt --exclude=**/x.txt hom* /mydir/\n"
                            "COPY --parents hom/deep/x.txt homer.md /p/\n")
    layer = env.svc.content.read(env.svc.get(iid).manifest.layers[-2].digest)
    with tarfile.open(fileobj=io.BytesIO(layer)) as t:
        files = sorted(m.name for m in t.getmembers() if m.isfile())
    assert files == ["mydir/homer.md", "mydir/keep.md"]
    assert _file(env, iid, "/p/hom/deep/x.txt") == b"x" and _file(env, iid, "/p/homer.md") == b"m"
    _, out = env.build(ctx, "FROM busybox\nCOPY --exclude=*.txt --exclude=**/x.txt hom* /mydir/\n")
    assert _steps_from_cache(out) == [2]
    (ctx / "hom" / "drop.txt").write_text("changed, but excluded")
    _, out = env.build(ctx, "FROM busybox\nCOPY --exclude=*.txt --exclude=**/x.txt hom* /mydir/\n")
    assert _steps_from_cache(out) == [2]
