"""The image routes in-process (aiohttp's test server) over an image store in tmp_path: Docker's
JSON shapes and words, query parameters, filters, streamed save/load/import, prune, pull and
bootstrap; plus the pure helpers of the routes and of the CLI's image verbs."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from pallet.api.server import HostInfo, create_app
from pallet.api.server.backend import ImageBackend
from pallet.api.server.routes.images import filter_summaries, import_name, path_match, tag_target
from pallet.errors import InvalidArgument

T = TypeVar("T")
HOST = HostInfo(id="test-id", name="testhost", version="0.1.0")


def rootfs_tar(files: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (files or {"etc/hello": b"hi\n"}).items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def backend(tmp_path: Path):
    b = ImageBackend(str(tmp_path / "data"))
    yield b
    b.close()


@pytest.fixture
def app(backend: ImageBackend) -> web.Application:
    return create_app(HOST, images=backend)


def run(app: web.Application, fn: Callable[[TestClient], Awaitable[T]]) -> T:
    async def go() -> T:
        async with TestClient(TestServer(app)) as client:
            return await fn(client)

    return asyncio.run(go())


async def import_(client: TestClient, ref: str | None = "imp:1", data: bytes | None = None,
                  **params: Any) -> str:
    query: list[tuple[str, str]] = [("fromSrc", "-")]
    if ref:
        query.append(("repo", ref))
    for k, v in params.items():
        for item in v if isinstance(v, list) else [v]:
            query.append((k, item))
    resp = await client.post("/v1.50/images/create", params=query, data=data or rootfs_tar())
    assert resp.status == 200, await resp.text()
    lines = [json.loads(x) for x in (await resp.text()).splitlines()]
    assert resp.headers["Content-Type"] == "application/json"
    return str(lines[-1]["status"])


def test_list_is_empty_then_shows_an_imported_image(app):
    async def go(c: TestClient) -> tuple[Any, ...]:
        empty = await (await c.get("/images/json")).json()
        image_id = await import_(c, "imp:1", changes=['CMD ["/bin/sh"]', "LABEL a=b"], message="msg")
        listed = await (await c.get("/v1.50/images/json")).json()
        return empty, image_id, listed

    empty, image_id, listed = run(app, go)
    assert empty == []
    assert image_id.startswith("sha256:") and len(image_id) == 71
    [s] = listed
    # v1.50 ImageSummary: every required field, no VirtualSize (gone in 1.44)
    assert {"Id", "ParentId", "RepoTags", "RepoDigests", "Created", "Size", "SharedSize", "Labels",
            "Containers"} <= set(s)
    assert "VirtualSize" not in s
    assert (s["Id"], s["RepoTags"], s["Labels"], s["Containers"]) == (image_id, ["imp:1"], {"a": "b"}, 0)


def test_old_api_versions_get_virtual_size(app):
    async def go(c: TestClient) -> tuple[Any, Any]:
        await import_(c)
        return (await (await c.get("/v1.43/images/json")).json(),
                await (await c.get("/v1.43/images/imp:1/json")).json())

    listed, inspected = run(app, go)
    assert listed[0]["VirtualSize"] == listed[0]["Size"]
    assert inspected["VirtualSize"] == inspected["Size"]


def test_inspect_history_tag_and_remove(app):
    async def go(c: TestClient) -> dict[str, Any]:
        image_id = await import_(c, "imp", changes=["ENV A=1"], message="first")
        out: dict[str, Any] = {"id": image_id}
        out["inspect"] = await (await c.get("/images/imp/json")).json()
        out["by_short_id"] = (await c.get(f"/images/{image_id[7:19]}/json")).status
        out["history"] = await (await c.get("/images/imp:latest/history")).json()
        r = await c.post("/images/imp/tag", params={"repo": "localhost:5000/a/b", "tag": "t"})
        out["tag"] = (r.status, await r.read())
        out["slashes"] = await (await c.get("/images/localhost:5000/a/b:t/json")).json()
        r = await c.delete("/images/localhost:5000/a/b:t")
        out["untag"] = (r.status, await r.json())
        r = await c.delete("/images/imp", params={"force": "0", "noprune": "0"})
        out["delete"] = (r.status, await r.json())
        out["gone"] = (await c.get("/images/json")).status, await (await c.get("/images/json")).json()
        return out

    out = run(app, go)
    i = out["inspect"]
    assert i["Id"] == out["id"] and i["RepoTags"] == ["imp:latest"] and i["Comment"] == "first"
    assert i["Config"]["Env"] == ["A=1"] and i["Os"] == "linux" and i["RootFS"]["Type"] == "layers"
    assert out["by_short_id"] == 200
    [h] = out["history"]
    assert set(h) == {"Id", "Created", "CreatedBy", "Tags", "Size", "Comment"}
    assert (h["Id"], h["Tags"], h["Comment"]) == (out["id"], ["imp:latest"], "first")
    assert out["tag"] == (201, b"")
    assert out["slashes"]["RepoTags"] == ["imp:latest", "localhost:5000/a/b:t"]
    assert out["untag"] == (200, [{"Untagged": "localhost:5000/a/b:t"}])
    assert out["delete"] == (200, [{"Untagged": "imp:latest"}, {"Deleted": out["id"]}])
    assert out["gone"] == (200, [])


def test_not_found_is_worded_as_docker_does(app):
    async def go(c: TestClient) -> list[tuple[int, Any]]:
        out = []
        for method, path in (("GET", "/images/nope/json"), ("GET", "/v1.41/images/nope:1/history"),
                             ("DELETE", "/images/nope"), ("POST", "/images/nope/tag?repo=x"),
                             ("GET", "/images/nope/get"), ("GET", "/images/" + "a" * 64 + "/json")):
            r = await c.request(method, path)
            out.append((r.status, await r.json(), r.headers["Content-Type"]))
        return out

    assert run(app, go) == [
        (404, {"message": "No such image: nope:latest"}, "application/json"),
        (404, {"message": "No such image: nope:1"}, "application/json"),
        (404, {"message": "No such image: nope:latest"}, "application/json"),
        (404, {"message": "No such image: nope:latest"}, "application/json"),
        (404, {"message": "No such image: nope:latest"}, "application/json"),
        (404, {"message": "No such image: " + "a" * 64}, "application/json"),
    ]


def test_remove_conflicts_use_dockers_words(app, backend):
    async def go(c: TestClient) -> list[tuple[int, str]]:
        image_id = await import_(c, "used:1")
        await c.post("/images/used:1/tag", params={"repo": "other"})
        backend.get().meta.add_container("c0ffee" * 10 + "abcd", "container-x", image_id)
        out = []
        for path in (f"/images/{image_id}", f"/images/{image_id[7:19]}"):
            r = await c.delete(path)
            out.append((r.status, (await r.json())["message"]))
        r = await c.delete("/images/used:1")  # one of two names: untag only
        out.append((r.status, json.dumps(await r.json())))
        r = await c.delete("/images/other")  # the last name of an image in use
        out.append((r.status, (await r.json())["message"]))
        return out

    out = run(app, go)
    assert out[0][0] == 409 and out[0][1].startswith("conflict: unable to delete ")
    assert "(must be forced) - image is referenced in multiple repositories" in out[0][1]
    assert out[1] == out[0]
    assert out[2] == (200, '[{"Untagged": "used:1"}]')
    assert out[3][0] == 409
    assert out[3][1].startswith('conflict: unable to remove repository reference "other"')
    assert "is using its referenced image" in out[3][1]


@pytest.mark.parametrize(("filters", "want"), [
    ({"reference": {"bus*": True}}, ["busybox:latest"]),
    ({"reference": ["*box:1"]}, ["mybox:1"]),
    ({"reference": ["my*"]}, ["mybox:1", "mybox:2"]),
    ({"label": ["k=v"]}, ["mybox:1", "mybox:2"]),
    ({"label": ["k"], "reference": ["*:2"]}, ["mybox:2"]),
    ({"dangling": ["true"]}, ["<none>"]),
    ({"dangling": {"false": True}}, ["busybox:latest", "mybox:1", "mybox:2"]),
])
def test_list_filters(app, filters, want):
    async def go(c: TestClient) -> Any:
        await import_(c, "busybox", data=rootfs_tar({"a": b"1"}))
        await import_(c, "mybox:1", data=rootfs_tar({"b": b"2"}), changes=["LABEL k=v"])
        await c.post("/images/mybox:1/tag", params={"repo": "mybox", "tag": "2"})
        await import_(c, None, data=rootfs_tar({"c": b"3"}))
        r = await c.get("/images/json", params={"filters": json.dumps(filters)})
        assert r.status == 200, await r.text()
        return await r.json()

    got = sorted(t for s in run(app, go) for t in (s["RepoTags"] or ["<none>"]))
    assert got == want


def test_bad_filters_are_400(app):
    async def go(c: TestClient) -> list[tuple[int, str]]:
        out = []
        for f in ("{", '{"bogus": ["x"]}', '{"dangling": ["maybe"]}', "[]"):
            r = await c.get("/images/json", params={"filters": f})
            out.append((r.status, (await r.json())["message"]))
        r = await c.post("/images/prune", params={"filters": '{"reference": ["x"]}'})
        out.append((r.status, (await r.json())["message"]))
        return out

    out = run(app, go)
    assert [s for s, _ in out] == [400] * 5
    assert out[1][1] == "invalid filter 'bogus'"


def test_before_and_since_filters(app, backend):
    async def go(c: TestClient) -> tuple[Any, Any]:
        await import_(c, "old", data=rootfs_tar({"a": b"1"}))
        await import_(c, "new", data=rootfs_tar({"b": b"2"}))
        return [await (await c.get("/images/json", params={"filters": json.dumps({k: ["old"]})})).json()
                for k in ("since", "before")]

    since, before = run(app, go)
    # Created has a one-second resolution: both may fall in the same second.
    assert [s["RepoTags"] for s in since] in ([["new:latest"]], [])
    assert before == []


def test_save_streams_a_docker_archive_and_load_reads_it_back(app):
    async def go(c: TestClient) -> dict[str, Any]:
        image_id = await import_(c, "keep:1")
        await c.post("/images/keep:1/tag", params={"repo": "keep", "tag": "2"})
        r = await c.get("/images/get", params=[("names", "keep:1"), ("names", "keep:2")])
        out: dict[str, Any] = {"status": r.status, "type": r.headers["Content-Type"],
                               "chunked": r.headers.get("Transfer-Encoding"), "tar": await r.read()}
        r1 = await c.get("/images/keep:1/get")
        out["one"] = await r1.read()
        await c.delete("/images/keep:1")
        await c.delete("/images/keep:2")
        r = await c.post("/images/load", params={"quiet": "1"}, data=out["tar"],
                         headers={"Content-Type": "application/x-tar"})
        lines = [json.loads(x) for x in (await r.text()).splitlines()]
        out["load"] = (r.status, r.headers["Content-Type"], lines)
        out["after"] = await (await c.get("/images/keep:2/json")).json()
        out["id"] = image_id
        return out

    out = run(app, go)
    assert (out["status"], out["type"], out["chunked"]) == (200, "application/x-tar", "chunked")
    with tarfile.open(fileobj=io.BytesIO(out["tar"])) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert {"manifest.json", "index.json", "oci-layout", "repositories"} <= set(names)
    assert manifest[0]["RepoTags"] == ["keep:1", "keep:2"]
    with tarfile.open(fileobj=io.BytesIO(out["one"])) as one:
        assert "manifest.json" in one.getnames()
    assert out["load"] == (200, "application/json", [{"stream": "Loaded image: keep:1\n"},
                                                     {"stream": "Loaded image: keep:2\n"}])
    assert out["after"]["Id"] == out["id"]


def test_load_garbage_is_400_and_changes_nothing(app):
    async def go(c: TestClient) -> tuple[int, str, Any]:
        r = await c.post("/images/load", data=b"this is not a tar archive" * 100)
        return r.status, (await r.json())["message"], await (await c.get("/images/json")).json()

    status, message, listed = run(app, go)
    assert status == 400 and "tar" in message and listed == []


def test_save_without_names_is_400(app):
    async def go(c: TestClient) -> int:
        return (await c.get("/images/get")).status

    assert run(app, go) == 400


def test_save_that_fails_midway_cuts_the_connection(app, backend):
    """A blob found corrupt after the 200 went out: the client must see a broken transfer, not a
    well-formed end of a truncated archive."""
    big = os.urandom(2 * 1024 * 1024)

    async def go(c: TestClient) -> str:
        image_id = await import_(c, "bad", data=rootfs_tar({"big": big}))
        svc = backend.get()
        layer = svc.get(image_id).manifest.layers[0].digest
        path = svc.content.path_of(layer)
        os.chmod(path, 0o644)
        data = bytearray(path.read_bytes())
        data[-4096] ^= 0xFF  # corrupt near the end: the archive is well under way by then
        path.write_bytes(bytes(data))
        r = await c.get("/images/bad/get")
        assert r.status == 200
        try:
            await r.read()
        except Exception as exc:  # aiohttp.ClientPayloadError: the chunked body never ended
            return type(exc).__name__
        return "complete"

    assert run(app, go) != "complete"


def test_import_errors(app):
    async def go(c: TestClient) -> list[tuple[int, str]]:
        out = []
        for params, data in (({"fromSrc": "http://example.com/x.tar"}, b""),
                             ({"fromSrc": "-"}, b"not a tar" * 200),
                             ({}, b""),
                             ({"fromSrc": "-", "repo": "Bad Name"}, rootfs_tar())):
            r = await c.post("/images/create", params=params, data=data)
            out.append((r.status, (await r.json())["message"]))
        return out

    out = run(app, go)
    assert [s for s, _ in out] == [501, 400, 400, 400]
    assert "URL" in out[0][1] and "not a tar" in out[1][1]


def test_pull_from_an_unreachable_registry_is_a_clear_error(app):
    # Port 1 on loopback: nothing listens, and no traffic leaves the machine (pulls from real
    # registries are tests/integration/registry/test_pull_push.py, against a local registry).
    async def go(c: TestClient) -> tuple[Any, ...]:
        r = await c.post("/images/create", params={"fromImage": "localhost:1/nosuch", "tag": "latest"})
        return r.status, (await r.json())["message"]

    status, message = run(app, go)
    assert status == 503 and "localhost:1" in message


def test_prune_dangling_then_all(app):
    async def go(c: TestClient) -> tuple[Any, Any, Any]:
        untagged = await import_(c, None, data=rootfs_tar({"x": b"1"}))
        await import_(c, "named", data=rootfs_tar({"y": b"2"}))
        first = await (await c.post("/images/prune")).json()
        everything = {"filters": '{"dangling":{"false":true}}'}
        second = await (await c.post("/images/prune", params=everything)).json()
        third = await (await c.post("/images/prune")).json()
        return untagged, first, (second, third)

    untagged, first, (second, third) = run(app, go)
    assert first["ImagesDeleted"] == [{"Deleted": untagged}] and first["SpaceReclaimed"] > 0
    assert second["ImagesDeleted"][0] == {"Untagged": "named:latest"}
    assert "Deleted" in second["ImagesDeleted"][1]
    assert third == {"ImagesDeleted": None, "SpaceReclaimed": 0}


def test_tag_needs_a_repo_and_refuses_digests(app):
    async def go(c: TestClient) -> list[int]:
        await import_(c, "src")
        return [(await c.post("/images/src/tag", params=p)).status
                for p in ({}, {"repo": "x@sha256:" + "a" * 64}, {"repo": "UPPER"},
                          {"repo": "ok", "tag": "t"})]

    assert run(app, go) == [400, 400, 400, 201]


@pytest.mark.skipif(not os.access("/bin/busybox", os.X_OK), reason="needs Debian's busybox-static")
def test_bootstrap_busybox(app):
    async def go(c: TestClient) -> tuple[Any, ...]:
        r = await c.post("/pallet/images/bootstrap", params={"name": "busybox"})
        lines = [json.loads(x) for x in (await r.text()).splitlines()]
        bad = await c.post("/pallet/images/bootstrap", params={"name": "alpine"})
        none = await c.post("/v1.50/pallet/images/bootstrap")
        inspect = await (await c.get("/images/busybox/json")).json()
        return r.status, lines, bad.status, none.status, inspect

    status, lines, bad, none, inspect = run(app, go)
    assert status == 200
    assert lines[-1]["aux"]["Name"] == "busybox:latest" and lines[-1]["aux"]["ID"] == inspect["Id"]
    assert inspect["Config"]["Cmd"] == ["sh"]
    assert (bad, none) == (400, 400)


def test_the_store_is_opened_lazily(tmp_path):
    b = ImageBackend(str(tmp_path / "never"))
    run(create_app(HOST, images=b), lambda c: c.get("/_ping"))
    assert not (tmp_path / "never").exists()


# --- pure helpers -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "name", "ok"), [
    ("bus*", "busybox", True), ("*", "a/b", False), ("*/*", "a/b", True), ("b?sybox", "busybox", True),
    ("[a-c]usybox", "busybox", True), ("[^a-c]usybox", "busybox", False), ("a.b", "axb", False),
])
def test_path_match_is_gos(pattern, name, ok):
    assert path_match(pattern, name) is ok


def test_filter_summaries_keeps_only_matching_tags():
    s = [{"Id": "x", "RepoTags": ["a:1", "b:1"], "RepoDigests": [], "Created": 5, "Labels": {}}]
    got = filter_summaries(s, {"reference": ["a"]}, lambda ref: 0, 0.0)
    assert got[0]["RepoTags"] == ["a:1"] and s[0]["RepoTags"] == ["a:1", "b:1"]
    assert filter_summaries(s, {"until": ["4"]}, lambda ref: 0, 0.0) == []


def test_tag_target_and_import_name():
    assert tag_target("busybox", "") == "busybox:latest"
    assert tag_target("busybox:1", "2") == "busybox:2"
    assert tag_target("localhost:5000/a", "t") == "localhost:5000/a:t"
    assert import_name("", "") is None and import_name("x:1", "") == "x:1"
    with pytest.raises(InvalidArgument):
        tag_target("", "t")


def test_cli_format_helpers():
    from pallet.cli.commands.images import filters_param, rows
    from pallet.cli.commands.tag import split_target
    from pallet.cli.format import align, human_duration, human_size, short_id, split_reference

    assert [human_size(n) for n in (0, 999, 1000, 2_130_000, 10_200)] == ["0B", "999B", "1kB", "2.13MB",
                                                                       "10.2kB"]
    assert [human_duration(s) for s in (0.5, 90, 7200, 86400 * 200)] == [
        "Less than a second", "About a minute", "2 hours", "6 months"]  # go-units truncates minutes
    assert split_reference("localhost:5000/a/b:t") == ("localhost:5000/a/b", "t")
    assert split_reference("a@sha256:abc") == ("a", "<none>")
    assert split_target("localhost:5000/x") == ("localhost:5000/x", "")
    assert short_id("sha256:" + "ab" * 32) == "abababababab"
    assert align([["A", "BB"], ["ccc", "d"]]) == "A     BB\nccc   d\n"
    assert filters_param(["dangling=true", "label=a=b"]) == {"dangling": {"true": True},
                                                              "label": {"a=b": True}}
    untagged = {"Id": "sha256:" + "1" * 64, "RepoTags": [], "RepoDigests": [], "Created": 0, "Size": 1,
                "Containers": -1}
    [row] = rows([untagged])
    assert (row["Repository"], row["Tag"], row["ID"], row["Containers"]) == \
        ("<none>", "<none>", "1" * 12, "N/A")


def test_cli_maps_the_import_verb_to_its_module(capsys):
    from pallet.cli.main import main, usage

    assert "  import " in usage() and "import-" not in usage()
    with pytest.raises(SystemExit) as exc:  # argparse's --help: the module was found and ran
        main(["import", "--help"])
    assert exc.value.code == 0
    assert "pallet import" in capsys.readouterr().out
