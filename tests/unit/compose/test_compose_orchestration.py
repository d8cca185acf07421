"""The orchestration (pallet.compose.project) against an in-memory Engine API: convergence (no
recreation when nothing changed, only the changed service recreated, scale), orphans, dependency
conditions, `down` order and cleanup, and a failed `up` that `down` cleans. No root, no daemon:
the fake answers the requests the API client would send, with Docker's shapes."""

from __future__ import annotations

import io
import itertools
import json
import textwrap
from typing import Any

import pytest

from pallet.compose.loader import Options, load
from pallet.compose.project import Compose
from pallet.errors import Conflict, InvalidArgument, NotFound, Unavailable


class _Resp:
    def __init__(self, value: Any = None) -> None:
        self.value = value

    def read(self) -> bytes:
        return b""

    def json(self) -> Any:
        return self.value

    def iter_json(self):
        return iter([])


class FakeAPI:
    """Containers, networks, volumes and images as dicts; `log` records what changed."""

    def __init__(self, images=("busybox",)) -> None:
        self.timeout = 60.0
        self.containers: dict[str, dict[str, Any]] = {}
        self.networks: dict[str, dict[str, Any]] = {}
        self.volumes: dict[str, dict[str, Any]] = {}
        self.images = {ref: f"sha256:{i:064x}" for i, ref in enumerate(images, 1)}
        self.log: list[str] = []
        self.health: dict[str, list[str]] = {}  # container name -> statuses to report in turn
        self.exit_codes: dict[str, int] = {}  # container name -> exits at once with this code
        self.fail_create: set[str] = set()
        self._ids = itertools.count(1)

    def _c(self, ref: str) -> dict[str, Any]:
        for c in self.containers.values():
            if ref in (c["Id"], c["Name"]):
                return c
        raise NotFound(f"No such container: {ref}")

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        parts = path.strip("/").split("/")
        if path == "/containers/json":
            labels = json.loads(params["filters"])["label"]
            want = dict(lbl.split("=", 1) for lbl in labels)
            return [{"Id": c["Id"], "Names": ["/" + c["Name"]], "Labels": c["Labels"], "State": c["State"],
                     "Image": c["ImageRef"]}
                    for c in self.containers.values()
                    if all(c["Labels"].get(k) == v for k, v in want.items())
                    and (params.get("all") or c["State"] == "running")]
        if parts[0] == "containers":
            c = self._c(parts[1])
            state: dict[str, Any] = {"Status": c["State"], "Running": c["State"] == "running",
                                     "ExitCode": c.get("ExitCode", 0)}
            seq = self.health.get(c["Name"])
            if seq:
                state["Health"] = {"Status": seq.pop(0) if len(seq) > 1 else seq[0]}
            return {"Id": c["Id"], "Image": c["ImageId"], "State": state, "Config": c["Config"]}
        if parts[0] == "networks" and len(parts) == 2:
            if parts[1] not in self.networks:
                raise NotFound(f"network {parts[1]} not found")
            return self.networks[parts[1]]
        if path == "/networks":
            label = json.loads(params["filters"])["label"][0]
            k, v = label.split("=", 1)
            return [n for n in self.networks.values() if n["Labels"].get(k) == v]
        if parts[0] == "volumes" and len(parts) == 2:
            if parts[1] not in self.volumes:
                raise NotFound(f"no such volume: {parts[1]}")
            return self.volumes[parts[1]]
        if path == "/volumes":
            label = json.loads(params["filters"])["label"][0]
            k, v = label.split("=", 1)
            return {"Volumes": [x for x in self.volumes.values() if x["Labels"].get(k) == v]}
        if parts[0] == "images":
            ref = parts[1]
            if ref not in self.images:
                raise NotFound(f"No such image: {ref}")
            return {"Id": self.images[ref], "Size": 1}
        raise AssertionError(f"unexpected GET {path}")

    def post_json(self, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        if path == "/containers/create":
            name = params["name"]
            if any(c["Name"] == name for c in self.containers.values()):
                raise Conflict(f'The container name "/{name}" is already in use')
            if body["Labels"]["com.docker.compose.service"] in self.fail_create:
                raise InvalidArgument("create refused")
            if body["Image"] not in self.images:
                raise NotFound(f"No such image: {body['Image']}")
            cid = f"{next(self._ids):064x}"
            self.containers[cid] = {"Id": cid, "Name": name, "Labels": body["Labels"], "State": "created",
                                    "Config": body, "ImageRef": body["Image"],
                                    "ImageId": self.images[body["Image"]]}
            self.log.append(f"create {name}")
            return {"Id": cid, "Warnings": []}
        if path == "/networks/create":
            self.networks[body["Name"]] = {"Name": body["Name"], "Labels": body["Labels"]}
            self.log.append(f"network create {body['Name']}")
            return {"Id": body["Name"]}
        if path == "/volumes/create":
            self.volumes[body["Name"]] = {"Name": body["Name"], "Labels": body["Labels"]}
            self.log.append(f"volume create {body['Name']}")
            return body
        raise AssertionError(f"unexpected POST {path}")

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                ok: tuple[int, ...] = (), **kw: Any) -> _Resp:
        parts = path.strip("/").split("/")
        if parts[0] == "containers":
            c = self._c(parts[1])
            if method == "DELETE":
                if c["State"] == "running" and not (params or {}).get("force"):
                    raise Conflict("cannot remove a running container")
                del self.containers[c["Id"]]
                self.log.append(f"rm {c['Name']}")
            elif parts[2] == "start":
                code = self.exit_codes.get(c["Name"])
                c["State"], c["ExitCode"] = ("exited", code) if code is not None else ("running", 0)
                self.log.append(f"start {c['Name']}")
            elif parts[2] == "stop":
                c["State"] = "exited"
                self.log.append(f"stop {c['Name']}")
            elif parts[2] == "restart":
                c["State"] = "running"
                self.log.append(f"restart {c['Name']} t={(params or {}).get('t')}")
            return _Resp()
        if parts[0] == "networks" and method == "DELETE":
            if parts[1] not in self.networks:
                raise NotFound(f"network {parts[1]} not found")
            del self.networks[parts[1]]
            self.log.append(f"network rm {parts[1]}")
            return _Resp()
        if parts[0] == "networks" and parts[2] == "connect":
            self.log.append(f"connect {parts[1]} {self.containers[body['Container']]['Name']}")
            return _Resp()
        if parts[0] == "volumes" and method == "DELETE":
            if parts[1] not in self.volumes:
                raise NotFound(parts[1])
            del self.volumes[parts[1]]
            self.log.append(f"volume rm {parts[1]}")
            return _Resp()
        raise AssertionError(f"unexpected {method} {path}")


APP = """
    name: shop
    services:
      web:
        image: busybox
        command: ["httpd", "-f"]
        depends_on: {api: {condition: service_healthy}}
        networks: [front, back]
      api:
        image: busybox
        depends_on: [db]
        networks: [back]
        healthcheck: {test: ["CMD", "true"], interval: 1s}
      db:
        image: busybox
        volumes: ["data:/data"]
        networks: [back]
    networks: {front: {}, back: {}}
    volumes: {data: {}}
"""


def make(tmp_path, text: str = APP, api: FakeAPI | None = None) -> tuple[Compose, FakeAPI]:
    f = tmp_path / "compose.yaml"
    f.write_text(textwrap.dedent(text))
    api = api or FakeAPI()
    api.health.setdefault("shop-api-1", ["starting", "healthy"])
    project = load(Options(files=(str(f),), environ={}, workdir=str(tmp_path)))
    return Compose(api, project, out=io.StringIO(), stdout=io.StringIO()), api  # type: ignore[arg-type]


def test_up_creates_in_order_and_again_changes_nothing(tmp_path):
    c, api = make(tmp_path)
    c.up()
    assert api.log == [
        "network create shop_back", "network create shop_front", "volume create shop_data",
        "create shop-db-1", "start shop-db-1", "create shop-api-1", "start shop-api-1",
        "create shop-web-1", "connect shop_back shop-web-1", "start shop-web-1"]
    web = next(x for x in api.containers.values() if x["Name"] == "shop-web-1")
    assert web["Config"]["HostConfig"]["NetworkMode"] == "shop_front"
    assert "Healthy" in c.out.getvalue()  # type: ignore[attr-defined]
    api.log.clear()
    c.up()
    assert api.log == []  # nothing changed: nothing recreated, nothing started


def test_only_the_changed_service_is_recreated(tmp_path):
    c, api = make(tmp_path)
    c.up()
    before = {x["Name"]: x["Id"] for x in api.containers.values()}
    api.log.clear()
    c2, _ = make(tmp_path, APP.replace('["httpd", "-f"]', '["httpd", "-f", "-v"]'), api)
    c2.up()
    assert api.log == ["stop shop-web-1", "rm shop-web-1", "create shop-web-1",
                       "connect shop_back shop-web-1", "start shop-web-1"]
    after = {x["Name"]: x["Id"] for x in api.containers.values()}
    assert after["shop-db-1"] == before["shop-db-1"] and after["shop-web-1"] != before["shop-web-1"]


def test_force_recreate_no_deps_and_scale(tmp_path):
    c, api = make(tmp_path)
    c.up()
    api.log.clear()
    c.up(["db"], force_recreate=True, no_deps=True)
    assert api.log == ["stop shop-db-1", "rm shop-db-1", "create shop-db-1", "start shop-db-1"]
    api.log.clear()
    c.up(["db"], scale={"db": 3}, no_deps=True)
    assert api.log == ["create shop-db-2", "create shop-db-3", "start shop-db-2", "start shop-db-3"]
    api.log.clear()
    c.up(["db"], scale={"db": 1}, no_deps=True)
    assert sorted(api.log) == ["rm shop-db-2", "rm shop-db-3", "stop shop-db-2", "stop shop-db-3"]
    with pytest.raises(NotFound, match="no such service: nope"):
        c.up(["nope"])
    named = APP.replace("      db:\n        image: busybox\n",
                        "      db:\n        image: busybox\n        container_name: thedb\n")
    c2, _ = make(tmp_path, named, api)
    api.log.clear()
    with pytest.raises(InvalidArgument, match="sets container_name, so it cannot be scaled to 2"):
        c2.up(["db"], scale={"db": 2})
    assert api.log == []


def test_orphans_are_reported_then_removed(tmp_path):
    c, api = make(tmp_path)
    c.up()
    renamed = APP.replace("      db:\n", "      db2:\n").replace("depends_on: [db]", "depends_on: [db2]")
    c2, _ = make(tmp_path, renamed, api)
    api.log.clear()
    c2.up()
    assert "Found orphan containers" in c2.out.getvalue() and "shop-db-1" in c2.out.getvalue()  # type: ignore
    assert "rm shop-db-1" not in api.log
    c2.up(remove_orphans=True)
    assert "rm shop-db-1" in api.log


def test_healthy_condition_failures(tmp_path):
    api = FakeAPI()
    api.health["shop-api-1"] = ["starting", "unhealthy"]
    c, _ = make(tmp_path, api=api)
    with pytest.raises(Unavailable, match="dependency failed to start: container shop-api-1 is unhealthy"):
        c.up()
    assert not any("shop-web-1" in e for e in api.log)  # web never created
    c.down(volumes=True)  # a failed up leaves a state down can clean
    assert api.containers == {} and api.networks == {} and api.volumes == {}


def test_completed_successfully_condition(tmp_path):
    text = """
        name: shop
        services:
          migrate: {image: busybox}
          app:
            image: busybox
            depends_on: {migrate: {condition: service_completed_successfully}}
    """
    api = FakeAPI()
    api.exit_codes["shop-migrate-1"] = 0
    c, _ = make(tmp_path, text, api)
    c.up()
    assert api.log[-1] == "start shop-app-1"
    c.down()
    api.exit_codes["shop-migrate-1"] = 3
    with pytest.raises(Unavailable, match="service 'migrate' didn't complete successfully: exit 3"):
        c.up()


def test_down_stops_dependents_first_and_keeps_volumes_without_v(tmp_path):
    c, api = make(tmp_path)
    c.up()
    api.log.clear()
    c.down()
    stops = [e for e in api.log if e.startswith("stop")]
    assert stops == ["stop shop-web-1", "stop shop-api-1", "stop shop-db-1"]
    assert sorted(e for e in api.log if e.startswith("network rm")) == [
        "network rm shop_back", "network rm shop_front"]
    assert api.containers == {} and api.networks == {} and list(api.volumes) == ["shop_data"]
    c.down(volumes=True)
    assert api.volumes == {}


def test_missing_image_is_pulled_and_external_network_must_exist(tmp_path):
    text = """
        name: shop
        services:
          a: {image: "nothere:1", networks: [ext]}
        networks: {ext: {external: true}}
    """
    c, api = make(tmp_path, text)
    with pytest.raises(NotFound, match="network ext declared as external, but could not be found"):
        c.up()
    api.networks["ext"] = {"Name": "ext", "Labels": {}}
    pulled = []
    c.pull = lambda services=None, **kw: pulled.extend(services)  # type: ignore[method-assign]
    with pytest.raises(NotFound, match="No such image: nothere:1"):
        c.up()
    assert pulled == ["a"]


def test_stop_start_restart_rm(tmp_path):
    c, api = make(tmp_path, APP.replace("        networks: [back]\n        healthcheck",
                                        "        stop_grace_period: 3s\n        networks: [back]\n"
                                        "        healthcheck"))
    c.up()
    api.log.clear()
    c.stop()
    assert api.log == ["stop shop-web-1", "stop shop-api-1", "stop shop-db-1"]
    api.log.clear()
    api.health["shop-api-1"] = ["healthy"]
    c.start(["web", "api"])  # only the named services; their dependencies' conditions are checked
    assert api.log == ["start shop-api-1", "start shop-web-1"]
    api.log.clear()
    c.restart(["api"])
    assert api.log == ["restart shop-api-1 t=3"]  # stop_grace_period is the stop timeout
    api.log.clear()
    asked: list[list[str]] = []
    assert c.rm(confirm=lambda names: asked.append(names) or False) == 0  # declined: nothing removed
    assert asked == [["shop-db-1"]] and api.log == []
    assert c.rm(["db"]) == 1 and api.log == ["rm shop-db-1"]
    api.log.clear()
    assert c.rm(["web"]) == 0  # running: left alone without -s
    assert c.rm(["web"], stop=True) == 1 and api.log == ["stop shop-web-1", "rm shop-web-1"]
    with pytest.raises(NotFound, match="service 'db' has no container to start"):
        c.start(["db"])


def test_depends_on_restart_follows_a_recreated_dependency(tmp_path):
    text = """
        name: shop
        services:
          db: {image: busybox, environment: {V: "1"}}
          app: {image: busybox, depends_on: {db: {condition: service_started, restart: true}}}
          other: {image: busybox, depends_on: [db]}
    """
    c, api = make(tmp_path, text)
    c.up()
    api.log.clear()
    c2, _ = make(tmp_path, text.replace('V: "1"', 'V: "2"'), api)
    c2.up()
    assert api.log == ["stop shop-db-1", "rm shop-db-1", "create shop-db-1", "start shop-db-1",
                       "restart shop-app-1 t=None"]  # other has no restart: true


def test_a_project_known_only_by_name(tmp_path):
    from pallet.compose.loader import by_name

    c, api = make(tmp_path)
    c.up()
    bare = Compose(api, by_name("shop"), out=io.StringIO(), stdout=io.StringIO())  # type: ignore[arg-type]
    assert bare._selected(None) == ["api", "db", "web"]  # no file, no file order: by name
    with pytest.raises(NotFound, match="no such service: nope"):
        bare._selected(["nope"])
    bare.down()
    assert api.containers == {} and api.networks == {}  # found by the labels alone
    assert list(api.volumes) == ["shop_data"]
    bare.down(volumes=True)
    assert api.volumes == {}
