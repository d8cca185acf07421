"""The orchestration: a loaded Project brought to life through the Engine API client.

Every command works from what the daemon reports (containers found by the labels
com.docker.compose.project / .service / .oneoff), never from local state, so `pallet compose`,
docker compose and docker-compose 1.29 see and manage the same project.

`up` converges each selected service, in dependency order: networks and volumes first (created
when missing, labelled), images (built when `--build` or missing and the service has `build:`,
pulled when missing otherwise), then per service, after its dependencies meet their
`depends_on` condition (service_started: running; service_healthy: State.Health.Status is
healthy; service_completed_successfully: exited 0), its containers: one per number 1..scale;
a container whose config-hash label differs from the model's, or whose image is not the image
the name now points to, or with `--force-recreate`, is replaced (stopped, removed, created
anew under the same name); surplus numbers are removed; stopped ones started. `down` stops in
reverse dependency order, removes containers (one-offs too), then the project's networks, and
with `-v` its volumes. A failed `up` leaves only labelled objects, which `down` removes.
"""

from __future__ import annotations

import copy
import io
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import IO, Any

from pallet.api.client import Client
from pallet.compose import convert, graph
from pallet.compose.loader import Project
from pallet.errors import Conflict, InvalidArgument, NotFound, PalletError, Unavailable

# ANSI colours per service, in the order compose v2 hands them out (pkg/formatter/colors.go:
# cyan, yellow, green, magenta, blue, red and their bright variants).
_COLORS = ("36", "33", "32", "35", "34", "31", "96", "93", "92", "95", "94", "91")


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="")


class Compose:
    """One project on one daemon. `out` receives progress lines (stderr by default) and
    command output goes to `stdout`."""

    def __init__(self, client: Client, project: Project, *, out: IO[str] | None = None,
                 stdout: IO[str] | None = None) -> None:
        self.client = client
        self.project = project
        self.out = out if out is not None else sys.stderr
        self.stdout = stdout if stdout is not None else sys.stdout
        self._lock = threading.Lock()
        self.recreated: set[str] = set()  # services `up` replaced containers of

    # -- helpers -----------------------------------------------------------------------------

    def _say(self, kind: str, name: str, what: str) -> None:
        with self._lock:
            self.out.write(f" {kind} {name}  {what}\n")
            self.out.flush()

    def _streaming_client(self) -> Client:
        """A copy of the client that waits forever (logs -f, waits on conditions)."""
        c = copy.copy(self.client)
        c.timeout = None
        return c

    def containers(self, services: Iterable[str] | None = None, *, all: bool = True,
                   oneoff: bool | None = False) -> list[dict[str, Any]]:
        """The project's containers (GET /containers/json summaries), by service then number."""
        labels = [f"{convert.LABEL_PROJECT}={self.project.name}"]
        if oneoff is not None:
            labels.append(f"{convert.LABEL_ONEOFF}={'True' if oneoff else 'False'}")
        found = self.client.get_json("/containers/json", params={
            "all": all, "filters": json.dumps({"label": labels})}) or []
        wanted = set(services) if services is not None else None
        order = {n: i for i, n in enumerate(self.project.services)}

        def key(c: dict[str, Any]) -> tuple[int, str, int, str]:
            labels = c.get("Labels") or {}
            svc = labels.get(convert.LABEL_SERVICE, "")
            try:
                n = int(labels.get(convert.LABEL_NUMBER, "0"))
            except ValueError:
                n = 0
            return order.get(svc, len(order)), svc, n, (c.get("Names") or [""])[0]

        out = [c for c in found
               if wanted is None or (c.get("Labels") or {}).get(convert.LABEL_SERVICE) in wanted]
        return sorted(out, key=key)

    @staticmethod
    def name_of(c: dict[str, Any]) -> str:
        return str((c.get("Names") or [c.get("Id", "")[:12]])[0]).lstrip("/")

    @staticmethod
    def service_of(c: dict[str, Any]) -> str:
        return str((c.get("Labels") or {}).get(convert.LABEL_SERVICE, ""))

    def _selected(self, services: Iterable[str] | None) -> list[str]:
        names = list(services or [])
        if not self.project.config_files:  # `-p NAME` without a file: what the labels say
            present = list(dict.fromkeys(self.service_of(c) for c in self.containers(oneoff=None)))
            missing = [n for n in names if n not in present]
            if missing:
                raise NotFound(f"no such service: {missing[0]}")
            return names or present
        for n in names:
            self.project.service(n)  # NotFound / disabled by profiles
        return names or list(self.project.services)

    def _exists(self, path: str) -> dict[str, Any] | None:
        try:
            return dict(self.client.get_json(path))
        except NotFound:
            return None

    # -- networks, volumes, images -----------------------------------------------------------

    def _used_networks(self, services: Iterable[str]) -> list[str]:
        keys: list[str] = []
        for s in services:
            for k in self.project.services[s].get("networks") or {}:
                if k not in keys:
                    keys.append(k)
        return keys

    def ensure_networks(self, services: Iterable[str]) -> None:
        for key in self._used_networks(services):
            spec = self.project.networks.get(key) or {}
            name = convert.network_name(self.project.name, key, spec)
            found = self._exists(f"/networks/{_quote(name)}")
            if spec.get("external"):
                if found is None:
                    raise NotFound(f"network {name} declared as external, but could not be found")
                continue
            if found is not None:
                owner = (found.get("Labels") or {}).get(convert.LABEL_PROJECT)
                if owner != self.project.name:
                    self._say("!", f"Network {name}", f"exists but was not created for project "
                              f"{self.project.name!r}; using it")
                continue
            self.client.post_json("/networks/create", convert.network_body(self.project.name, key, spec))
            self._say("✔", f"Network {name}", "Created")

    def _used_volumes(self, services: Iterable[str]) -> list[str]:
        keys: list[str] = []
        for s in services:
            for v in self.project.services[s].get("volumes") or []:
                if v.get("type") == "volume" and v.get("source") and v["source"] not in keys:
                    keys.append(v["source"])
        return keys

    def ensure_volumes(self, services: Iterable[str]) -> None:
        for key in self._used_volumes(services):
            spec = self.project.volumes.get(key) or {}
            name = convert.volume_name(self.project.name, key, spec)
            found = self._exists(f"/volumes/{_quote(name)}")
            if spec.get("external"):
                if found is None:
                    raise NotFound(f"volume {name} declared as external, but could not be found")
                continue
            if found is None:
                self.client.post_json("/volumes/create", convert.volume_body(self.project.name, key, spec))
                self._say("✔", f"Volume {name}", "Created")

    def image_id(self, ref: str) -> str | None:
        found = self._exists(f"/images/{_quote(ref)}/json")
        return str(found.get("Id")) if found else None

    def ensure_images(self, services: Iterable[str], *, build: bool = False, no_build: bool = False) -> None:
        to_build, to_pull = [], []
        for s in services:
            svc = self.project.services[s]
            ref = convert.image_name(self.project.name, s, svc)
            policy = svc.get("pull_policy", "missing")
            if svc.get("build") and (build or policy == "build" or self.image_id(ref) is None):
                if no_build:
                    if self.image_id(ref) is None:
                        raise NotFound(f"service {s}: image {ref} is missing and --no-build was given")
                    continue
                to_build.append(s)
            elif not svc.get("build") and (policy == "always" or self.image_id(ref) is None):
                if policy == "never":
                    raise NotFound(f"service {s}: image {ref} is not present and pull_policy is never")
                to_pull.append(s)
        if to_pull:
            self.pull(to_pull)
        if to_build:
            self.build(to_build)

    def build(self, services: Iterable[str] | None = None, *, no_cache: bool = False,
              pull: bool = False, quiet: bool = False) -> None:
        """POST /build per service with `build:`, the context sent as a tar (leaving out what
        .dockerignore excludes), tagged with the service's image name."""
        import tempfile

        from pallet.build.context import write_context_tar

        for s in self._selected(services):
            svc = self.project.services[s]
            b = svc.get("build")
            if not b:
                continue
            ref = convert.image_name(self.project.name, s, svc)
            context = b["context"]
            if not os.path.isdir(context):
                raise NotFound(f"service {s}: build context {context} is not a directory")
            df = b.get("dockerfile")
            if df and not os.path.isabs(df):
                df = os.path.join(context, df)
            params: dict[str, Any] = {"t": ref}
            if b.get("args"):
                params["buildargs"] = json.dumps({k: v for k, v in b["args"].items() if v is not None})
            if b.get("target"):
                params["target"] = b["target"]
            if b.get("labels"):
                params["labels"] = json.dumps(b["labels"])
            if no_cache or b.get("no_cache"):
                params["nocache"] = True
            if pull or b.get("pull"):
                params["pull"] = True
            if b.get("network"):
                params["networkmode"] = b["network"]
            self._say("⠿", f"Service {s}", "Building")
            with tempfile.TemporaryFile() as spool:
                params["dockerfile"] = write_context_tar(context, spool, df)
                spool.seek(0)
                resp = self.client.request("POST", "/build", params=params, data=spool,
                                           headers={"Content-Type": "application/x-tar"})
                image = None
                for msg in resp.iter_json():  # an in-band error raises APIError
                    if isinstance(msg.get("aux"), dict) and msg["aux"].get("ID"):
                        image = msg["aux"]["ID"]
                    elif "stream" in msg and not quiet:
                        with self._lock:
                            self.out.write(str(msg["stream"]))
            for tag in b.get("tags") or []:
                repo, t = _split_ref(tag)
                self.client.request("POST", f"/images/{_quote(ref)}/tag",
                                    params={"repo": repo, "tag": t}).read()
            self._say("✔", f"Service {s}", f"Built {image or ref}")

    def pull(self, services: Iterable[str] | None = None, *, ignore_failures: bool = False) -> None:
        for s in self._selected(services):
            svc = self.project.services[s]
            if not svc.get("image"):
                continue
            repo, tag = _split_ref(svc["image"])
            self._say("⠿", f"Image {svc['image']}", "Pulling")
            try:
                for _ in self.client.request("POST", "/images/create",
                                             params={"fromImage": repo, "tag": tag}).iter_json():
                    pass
            except PalletError as exc:
                if svc.get("build") or ignore_failures:
                    self._say("!", f"Image {svc['image']}", f"pull failed: {exc}")
                    continue
                raise
            self._say("✔", f"Image {svc['image']}", "Pulled")

    def push(self, services: Iterable[str] | None = None, *, ignore_failures: bool = False) -> None:
        for s in self._selected(services):
            svc = self.project.services[s]
            if not svc.get("build") or not svc.get("image"):
                continue
            repo, tag = _split_ref(svc["image"])
            self._say("⠿", f"Image {svc['image']}", "Pushing")
            try:
                resp = self.client.request("POST", f"/images/{_quote(repo)}/push", params={"tag": tag})
                for _ in resp.iter_json():
                    pass
            except PalletError as exc:
                if ignore_failures:
                    self._say("!", f"Image {svc['image']}", f"push failed: {exc}")
                    continue
                raise
            self._say("✔", f"Image {svc['image']}", "Pushed")

    # -- containers ----------------------------------------------------------------------------

    def create_container(self, service: str, number: int, *, name: str | None = None,
                         oneoff: bool = False, **overrides: Any) -> dict[str, Any]:
        """POST /containers/create, then connect the service's other networks (the create body
        carries one endpoint, which every API version accepts). Returns {"Id", "Name"}."""
        svc = self.project.services[service]
        name = name or convert.container_name(self.project.name, service, svc, number)
        body = convert.create_body(self.project, service, svc, number, name, oneoff=oneoff, **overrides)
        result = self.client.post_json("/containers/create", body, params={"name": name})
        cid = str(result["Id"])
        if not svc.get("network_mode"):
            for key, net in convert.service_networks(self.project, svc)[1:]:
                ep = convert.endpoint_config(self.project, service, svc, key, name)
                self.client.request("POST", f"/networks/{_quote(net)}/connect",
                                    body={"Container": cid, "EndpointConfig": ep}).read()
        self._say("✔", f"Container {name}", "Created")
        return {"Id": cid, "Name": name}

    def _stop_timeout(self, service: str | None, timeout: int | None) -> int | None:
        if timeout is not None:
            return timeout
        svc = self.project.services.get(service or "")
        if svc and svc.get("stop_grace_period") is not None:
            from pallet.compose.units import duration_ns

            return duration_ns(svc["stop_grace_period"]) // 1_000_000_000
        return None

    def _stop(self, c: dict[str, Any], timeout: int | None) -> None:
        name = self.name_of(c)
        self._say("⠿", f"Container {name}", "Stopping")
        params = {"t": self._stop_timeout(self.service_of(c), timeout)}
        client = self._streaming_client()
        try:
            client.request("POST", f"/containers/{c['Id']}/stop", params=params, ok=(304,)).read()
        except NotFound:
            return
        self._say("✔", f"Container {name}", "Stopped")

    def _remove(self, c: dict[str, Any], *, volumes: bool = False, force: bool = True) -> None:
        name = self.name_of(c)
        try:
            self.client.request("DELETE", f"/containers/{c['Id']}",
                                params={"v": volumes or None, "force": force or None}).read()
        except NotFound:
            return
        self._say("✔", f"Container {name}", "Removed")

    def _parallel(self, fn: Callable[[dict[str, Any]], None], items: list[dict[str, Any]]) -> None:
        if len(items) <= 1:
            for c in items:
                fn(c)
            return
        with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
            for f in [pool.submit(fn, c) for c in items]:
                f.result()

    def _anonymous_volumes(self, c: dict[str, Any]) -> dict[str, str]:
        """Path -> volume name of the container's anonymous volumes (not the project's named
        ones): kept across a recreation."""
        named = {convert.volume_name(self.project.name, k, spec) for k, spec in self.project.volumes.items()}
        return {m["Destination"]: m["Name"] for m in self._inspect(c["Id"]).get("Mounts") or []
                if m.get("Type") == "volume" and m.get("Name") and m["Name"] not in named}

    def _inspect(self, cid: str) -> dict[str, Any]:
        return dict(self.client.get_json(f"/containers/{cid}/json"))

    def _start(self, c: dict[str, Any]) -> None:
        name = self.name_of(c) if "Names" in c else c["Name"]
        self._say("⠿", f"Container {name}", "Starting")
        self.client.request("POST", f"/containers/{c['Id']}/start", ok=(304,)).read()
        self._say("✔", f"Container {name}", "Started")

    def converge(self, service: str, *, scale: int | None = None, force_recreate: bool = False,
                 no_recreate: bool = False, start: bool = True) -> list[dict[str, Any]]:
        """Make the service's containers match the model; returns {"Id", "Name"} per container."""
        svc = self.project.services[service]
        want = convert.scale_of(svc) if scale is None else scale
        expected = convert.config_hash(svc)
        image = self.image_id(convert.image_name(self.project.name, service, svc))
        existing: dict[int, dict[str, Any]] = {}
        surplus: list[dict[str, Any]] = []
        for found in self.containers([service]):
            try:
                n = int((found.get("Labels") or {}).get(convert.LABEL_NUMBER, "0"))
            except ValueError:
                n = 0
            if 1 <= n <= want and n not in existing:
                existing[n] = found
            else:
                surplus.append(found)
        if surplus:
            self._parallel(lambda c: self._stop(c, None), [c for c in surplus if c.get("State") == "running"])
            self._parallel(lambda c: self._remove(c, volumes=True), surplus)
        result: list[dict[str, Any]] = []
        anonymous: dict[str, str] = {}
        for n in range(1, want + 1):
            c: dict[str, Any] | None = existing.get(n)
            if c is not None and not no_recreate:
                stale = (c.get("Labels") or {}).get(convert.LABEL_HASH) != expected
                if not stale and image is not None:
                    stale = self._inspect(c["Id"]).get("Image") not in (image, None)
                if stale or force_recreate:
                    self._say("⠿", f"Container {self.name_of(c)}", "Recreate")
                    anonymous = self._anonymous_volumes(c)
                    if c.get("State") in ("running", "restarting", "paused"):
                        self._stop(c, None)
                    self._remove(c)
                    self.recreated.add(service)
                    c = None
            if c is None:
                created = self.create_container(service, n, anonymous=anonymous)
                anonymous = {}
            else:
                created = {"Id": c["Id"], "Name": self.name_of(c), "State": c.get("State")}
                if c.get("State") == "running":
                    self._say("✔", f"Container {created['Name']}", "Running")
            result.append(created)
        if start:
            self._parallel(lambda c: None if c.get("State") == "running" else self._start(c), result)
        return result

    # -- dependency conditions -----------------------------------------------------------------

    def wait_for_dependencies(self, service: str, *, timeout: float = 300.0,
                              only: Iterable[str] | None = None) -> None:
        svc = self.project.services[service]
        allowed = set(only) if only is not None else None
        for dep, spec in (svc.get("depends_on") or {}).items():
            if allowed is not None and dep not in allowed:
                continue
            condition = spec.get("condition", "service_started")
            containers = self.containers([dep])
            if not containers:
                if spec.get("required", True) and dep in self.project.services:
                    raise Unavailable(f"service {service} depends on {dep}, which has no container")
                continue
            for c in containers:
                self._wait_condition(c, dep, condition, timeout)

    def _wait_condition(self, c: dict[str, Any], service: str, condition: str, timeout: float) -> None:
        name = self.name_of(c)
        if condition == "service_started":
            return
        deadline = time.monotonic() + timeout
        announced = False
        while True:
            info = self._inspect(c["Id"])
            state = info.get("State") or {}
            if condition == "service_healthy":
                health = (state.get("Health") or {}).get("Status")
                if health is None:
                    raise InvalidArgument(f"dependency {service} is asked to be healthy, but container "
                                          f"{name} has no healthcheck")
                if health == "healthy":
                    self._say("✔", f"Container {name}", "Healthy")
                    return
                if health == "unhealthy":
                    raise Unavailable(f"dependency failed to start: container {name} is unhealthy")
                if not state.get("Running"):
                    raise Unavailable(f"dependency failed to start: container {name} exited "
                                      f"({state.get('ExitCode')})")
            else:  # service_completed_successfully
                if not state.get("Running") and state.get("Status") in ("exited", "dead"):
                    code = int(state.get("ExitCode") or 0)
                    if code != 0:
                        raise Unavailable(f"service {service!r} didn't complete successfully: exit {code}")
                    self._say("✔", f"Container {name}", "Exited")
                    return
            if not announced:
                self._say("⠿", f"Container {name}", "Waiting")
                announced = True
            if time.monotonic() > deadline:
                raise Unavailable(f"timed out after {timeout:g}s waiting for {name} to be "
                                  f"{'healthy' if condition == 'service_healthy' else 'completed'}")
            time.sleep(0.2)

    # -- commands ------------------------------------------------------------------------------

    def up(self, services: Iterable[str] | None = None, *, build: bool = False, no_build: bool = False,
           force_recreate: bool = False, no_recreate: bool = False, no_deps: bool = False,
           scale: dict[str, int] | None = None, remove_orphans: bool = False, no_start: bool = False,
           wait: bool = False, wait_timeout: float = 300.0) -> list[dict[str, Any]]:
        """Create and start; returns the containers of the services brought up."""
        targets = self._selected(services)
        for s, n in (scale or {}).items():
            if self.project.service(s).get("container_name") and n > 1:
                raise InvalidArgument(f"service {s} sets container_name, so it cannot be scaled to {n}")
        selected = targets if no_deps else list(graph.closure(self.project.services, targets))
        order = graph.start_order(self.project.services, selected)
        self._orphans(remove_orphans)
        self.ensure_networks(order)
        self.ensure_volumes(order)
        self.ensure_images(order, build=build, no_build=no_build)
        started: list[dict[str, Any]] = []
        for s in order:
            if not no_start:
                self.wait_for_dependencies(s, only=order, timeout=wait_timeout)
            started += self.converge(s, scale=(scale or {}).get(s), force_recreate=force_recreate and (
                s in targets or not services), no_recreate=no_recreate, start=not no_start)
            if not no_start:
                self._restart_for_dependencies(s)
        if wait and not no_start:
            self.wait_running(order, timeout=wait_timeout)
        return started

    def _restart_for_dependencies(self, service: str) -> None:
        """`depends_on: {dep: {restart: true}}`: a service whose dependency was just recreated
        is restarted (unless it was recreated itself), as compose does."""
        deps = self.project.services[service].get("depends_on") or {}
        if service in self.recreated or not any(
                spec.get("restart") and dep in self.recreated for dep, spec in deps.items()):
            return
        for c in self.containers([service], all=False):
            self._say("⠿", f"Container {self.name_of(c)}", "Restarting")
            self._streaming_client().request("POST", f"/containers/{c['Id']}/restart", params={
                "t": self._stop_timeout(service, None)}).read()
            self._say("✔", f"Container {self.name_of(c)}", "Started")

    def _orphans(self, remove: bool) -> None:
        known = set(self.project.services) | set(self.project.disabled)
        orphans = [c for c in self.containers(oneoff=False) if self.service_of(c) not in known]
        if not orphans:
            return
        if not remove:
            names = ", ".join(self.name_of(c) for c in orphans)
            self._say("!", "Found orphan containers", f"({names}) for this project; run with "
                      "--remove-orphans to clean them up")
            return
        self._parallel(lambda c: self._stop(c, None), [c for c in orphans if c.get("State") == "running"])
        self._parallel(lambda c: self._remove(c), orphans)

    def wait_running(self, services: Iterable[str], *, timeout: float = 300.0) -> None:
        """--wait: every container running, and healthy when it has a healthcheck."""
        for c in self.containers(services):
            deadline = time.monotonic() + timeout
            while True:
                state = self._inspect(c["Id"]).get("State") or {}
                health = (state.get("Health") or {}).get("Status")
                if state.get("Running") and health in (None, "healthy"):
                    self._say("✔", f"Container {self.name_of(c)}", "Healthy" if health else "Running")
                    break
                if health == "unhealthy":
                    raise Unavailable(f"container {self.name_of(c)} is unhealthy")
                if not state.get("Running") and state.get("Status") in ("exited", "dead"):
                    raise Unavailable(f"container {self.name_of(c)} exited ({state.get('ExitCode')})")
                if time.monotonic() > deadline:
                    raise Unavailable(f"timed out after {timeout:g}s waiting for {self.name_of(c)}")
                time.sleep(0.2)

    def down(self, *, volumes: bool = False, rmi: str | None = None, remove_orphans: bool = False,
             timeout: int | None = None) -> None:
        if rmi not in (None, "", "local", "all"):
            raise InvalidArgument(f"--rmi must be local or all, not {rmi!r}")
        everything = self.containers(oneoff=None)
        known = set(self.project.services) | set(self.project.disabled)
        # Without a file (`-p NAME down`) every container of the project is the project's.
        orphans = [c for c in everything if self.service_of(c) not in known and self.project.config_files]
        if orphans and not remove_orphans:
            everything = [c for c in everything if c not in orphans]
            names = ", ".join(self.name_of(c) for c in orphans)
            self._say("!", "Found orphan containers", f"({names}) for this project; run with "
                      "--remove-orphans to clean them up")
        by_service: dict[str, list[dict[str, Any]]] = {}
        for c in everything:
            by_service.setdefault(self.service_of(c), []).append(c)
        all_services = {**self.project.disabled, **self.project.services}
        order = [s for s in by_service if s not in all_services]  # orphans first
        order += [s for s in graph.stop_order(all_services) if s in by_service]
        for s in order:
            group = by_service[s]
            self._parallel(lambda c: self._stop(c, timeout),
                           [c for c in group if c.get("State") in ("running", "restarting", "paused")])
            self._parallel(lambda c: self._remove(c, volumes=volumes), group)
        self._remove_networks()
        if volumes:
            self._remove_volumes()
        if rmi:
            self._remove_images(rmi)

    def _remove_networks(self) -> None:
        names = {convert.network_name(self.project.name, k, spec)
                 for k, spec in self.project.networks.items() if not spec.get("external")}
        names.add(convert.network_name(self.project.name, "default", {}))
        labelled = self.client.get_json("/networks", params={"filters": json.dumps(
            {"label": [f"{convert.LABEL_PROJECT}={self.project.name}"]})}) or []
        for n in labelled:
            names.add(str(n.get("Name")))
        for name in sorted(names):
            try:
                self.client.request("DELETE", f"/networks/{_quote(name)}").read()
            except NotFound:
                continue
            except Conflict as exc:
                self._say("!", f"Network {name}", f"not removed: {exc}")
                continue
            self._say("✔", f"Network {name}", "Removed")

    def _remove_volumes(self) -> None:
        names = {convert.volume_name(self.project.name, k, spec)
                 for k, spec in self.project.volumes.items() if not spec.get("external")}
        listed = self.client.get_json("/volumes", params={"filters": json.dumps(
            {"label": [f"{convert.LABEL_PROJECT}={self.project.name}"]})}) or {}
        for v in listed.get("Volumes") or []:
            names.add(str(v.get("Name")))
        for name in sorted(names):
            try:
                self.client.request("DELETE", f"/volumes/{_quote(name)}").read()
            except NotFound:
                continue
            except Conflict as exc:
                self._say("!", f"Volume {name}", f"not removed: {exc}")
                continue
            self._say("✔", f"Volume {name}", "Removed")

    def _remove_images(self, rmi: str) -> None:
        refs = []
        for s, svc in self.project.services.items():
            if rmi == "all" or not svc.get("image"):
                refs.append(convert.image_name(self.project.name, s, svc))
        for ref in dict.fromkeys(refs):
            try:
                self.client.request("DELETE", f"/images/{_quote(ref)}").read()
            except NotFound:
                continue
            except Conflict as exc:
                self._say("!", f"Image {ref}", f"not removed: {exc}")
                continue
            self._say("✔", f"Image {ref}", "Removed")

    def start(self, services: Iterable[str] | None = None) -> None:
        selected = self._selected(services)
        for s in graph.start_order(self.project.services, selected):
            if s not in selected:
                continue
            group = [c for c in self.containers([s]) if c.get("State") != "running"]
            if not group and not self.containers([s]):
                raise NotFound(f"service {s!r} has no container to start")
            self.wait_for_dependencies(s, only=selected)
            self._parallel(self._start, group)

    def stop(self, services: Iterable[str] | None = None, *, timeout: int | None = None) -> None:
        selected = self._selected(services)
        for s in graph.stop_order(self.project.services, selected):
            if s in selected:
                self._parallel(lambda c: self._stop(c, timeout),
                               [c for c in self.containers([s]) if c.get("State") == "running"])

    def restart(self, services: Iterable[str] | None = None, *, timeout: int | None = None) -> None:
        selected = self._selected(services)
        for s in graph.start_order(self.project.services, selected):
            if s not in selected:
                continue
            for c in self.containers([s]):
                self._say("⠿", f"Container {self.name_of(c)}", "Restarting")
                self._streaming_client().request("POST", f"/containers/{c['Id']}/restart",
                                                 params={"t": self._stop_timeout(s, timeout)}).read()
                self._say("✔", f"Container {self.name_of(c)}", "Started")

    def rm(self, services: Iterable[str] | None = None, *, stop: bool = False, volumes: bool = False,
           confirm: Callable[[list[str]], bool] | None = None) -> int:
        """Remove stopped containers (running ones too, stopped first, with `stop`); returns
        how many were removed."""
        selected = self._selected(services)
        group = self.containers(selected)
        if stop:
            self._parallel(lambda c: self._stop(c, None), [c for c in group if c.get("State") == "running"])
            group = self.containers(selected)
        victims = [c for c in group if c.get("State") not in ("running", "restarting", "paused")]
        if not victims:
            with self._lock:
                self.out.write("No stopped containers\n")
            return 0
        if confirm is not None and not confirm([self.name_of(c) for c in victims]):
            return 0
        self._parallel(lambda c: self._remove(c, volumes=volumes, force=False), victims)
        return len(victims)

    def container_for(self, service: str, index: int = 1) -> dict[str, Any]:
        self.project.service(service)
        for c in self.containers([service], all=False):
            if (c.get("Labels") or {}).get(convert.LABEL_NUMBER) == str(index):
                return c
        raise NotFound(f"service {service!r} is not running" if index == 1 else
                       f"service {service!r} has no running container number {index}")

    def create_oneoff(self, service: str, *, command: list[str] | None = None,
                      entrypoint: list[str] | None = None, env: dict[str, str] | None = None,
                      name: str | None = None, tty: bool = False, stdin_open: bool = False,
                      user: str | None = None, workdir: str | None = None, no_deps: bool = False,
                      service_ports: bool = False, build: bool = False) -> dict[str, Any]:
        """`run`: dependencies up (unless no_deps), then a one-off container (label
        oneoff=True, named <project>-<service>-run-<hex>, ports published only with
        service_ports) created but not started."""
        self.project.service(service)
        deps = [d for d in graph.closure(self.project.services, [service]) if d != service]
        if deps and not no_deps:
            self.up(deps)
        self.ensure_networks([service])
        self.ensure_volumes([service])
        self.ensure_images([service], build=build)
        if not no_deps:
            self.wait_for_dependencies(service)
        name = name or f"{self.project.name}-{service}-run-{secrets.token_hex(6)}"
        return self.create_container(service, 1, name=name, oneoff=True, command=command,
                                     entrypoint=entrypoint, env=env, tty=tty, stdin_open=stdin_open,
                                     user=user, workdir=workdir, publish=service_ports)

    def top(self, services: Iterable[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
        return [(self.name_of(c), dict(self.client.get_json(f"/containers/{c['Id']}/top")))
                for c in self.containers(self._selected(services), all=False)]

    def images(self, services: Iterable[str] | None = None) -> list[dict[str, Any]]:
        rows = []
        for c in self.containers(self._selected(services)):
            info = self._inspect(c["Id"])
            image = self._exists(f"/images/{_quote(str(info.get('Image')))}/json") or {}
            repo, tag = _split_ref(str((info.get("Config") or {}).get("Image") or c.get("Image") or ""))
            rows.append({"Container": self.name_of(c), "Repository": repo, "Tag": tag,
                         "Id": str(image.get("Id") or info.get("Image") or ""),
                         "Size": int(image.get("Size") or 0)})
        return rows

    def port(self, service: str, private_port: str, *, protocol: str = "tcp", index: int = 1) -> list[str]:
        c = self.container_for(service, index)
        ports = ((self._inspect(c["Id"]).get("NetworkSettings") or {}).get("Ports") or {})
        key = private_port if "/" in private_port else f"{private_port}/{protocol}"
        bindings = ports.get(key)
        if not bindings:
            raise NotFound(f"no port {key} published for service {service}")
        return [f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}" for b in bindings]

    # -- logs ----------------------------------------------------------------------------------

    def logs(self, services: Iterable[str] | None = None, *, follow: bool = False, tail: str = "all",
             timestamps: bool = False, color: bool = True, prefix: bool = True,
             out: IO[str] | None = None, stop: threading.Event | None = None,
             containers: list[dict[str, Any]] | None = None) -> None:
        """Each container's output, line by line, prefixed `name  | ` (coloured per service,
        as compose does); with `follow`, until every stream ends or `stop` is set."""
        target = out if out is not None else self.stdout
        group = containers if containers is not None else self.containers(self._selected(services))
        if not group:
            return
        width = max(len(self.name_of(c)) for c in group)
        colors = {s: _COLORS[i % len(_COLORS)] for i, s in enumerate(self.project.services)}
        lock = threading.Lock()

        errors: list[BaseException] = []

        def pump(c: dict[str, Any]) -> None:
            try:
                pump_one(c)
            except (PalletError, OSError) as exc:  # reported by the caller, once, not per thread
                if not (stop is not None and stop.is_set()):
                    errors.append(exc)

        def pump_one(c: dict[str, Any]) -> None:
            name = self.name_of(c)
            head = f"{name:<{width}}  | " if prefix else ""
            if head and color:
                head = f"\033[{colors.get(self.service_of(c), '37')}m{head}\033[0m"
            client = self._streaming_client() if follow else self.client
            try:
                info = self._inspect(c["Id"])
                resp = client.request("GET", f"/containers/{c['Id']}/logs", params={
                    "stdout": True, "stderr": True, "follow": follow or None, "tail": tail,
                    "timestamps": timestamps or None})
            except NotFound:
                return
            tty = bool((info.get("Config") or {}).get("Tty"))
            raw = tty and resp.content_type != "application/vnd.docker.multiplexed-stream"
            buf = io.BytesIO()
            chunks = resp.iter_chunks() if raw else (data for _, data in resp.iter_frames())
            try:
                for data in chunks:
                    buf.write(data)
                    text = buf.getvalue()
                    *lines, rest = text.split(b"\n")
                    buf = io.BytesIO()
                    buf.write(rest)
                    if lines:
                        with lock:
                            for line in lines:
                                target.write(head + line.decode(errors="replace").rstrip("\r") + "\n")
                            target.flush()
                    if stop is not None and stop.is_set():
                        break
            finally:
                resp.close()
            if buf.getvalue():
                with lock:
                    target.write(head + buf.getvalue().decode(errors="replace") + "\n")
                    target.flush()

        threads = [threading.Thread(target=pump, args=(c,), daemon=True) for c in group]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
                if stop is not None and stop.is_set():
                    return
        if errors:
            raise errors[0]


def _split_ref(ref: str) -> tuple[str, str]:
    """(repository, tag) of an image reference; a digest stays with the repository."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        return repo, digest
    slash, colon = ref.rfind("/"), ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, "latest"
