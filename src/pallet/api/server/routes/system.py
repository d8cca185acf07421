"""System routes: GET|HEAD /_ping, GET /version, GET /info (Docker's SystemVersion and SystemInfo)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from aiohttp import web

from pallet.api import API_VERSION, MIN_API_VERSION
from pallet.api.server.app import COUNTS_KEY, HOST_KEY, Router
from pallet.api.server.backend import HostInfo

# Builder-Version "1" is the classic builder: Pallet builds Dockerfiles itself, there is no
# BuildKit behind it (v1.50.yaml, /_ping response headers).
_PING_HEADERS = {
    "Api-Version": API_VERSION,
    "Builder-Version": "1",
    "Docker-Experimental": "false",
    "Swarm": "inactive",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
}


def register(router: Router) -> None:
    router.add("GET", "/_ping", ping)
    router.add("HEAD", "/_ping", ping)
    router.add("GET", "/version", version)
    router.add("GET", "/info", info)


async def ping(request: web.Request) -> web.Response:
    # For HEAD aiohttp sends the same headers (Content-Length: 2) and no body.
    headers = dict(_PING_HEADERS, Ostype=request.app[HOST_KEY].os_type)
    return web.Response(status=200, text="OK", headers=headers)


def version_body(host: HostInfo) -> dict[str, Any]:
    details = {
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": host.git_commit,
        "GoVersion": host.python_version,
        "Os": host.os_type,
        "Arch": host.arch,
        "KernelVersion": host.kernel_version,
        "Experimental": "false",
        "BuildTime": host.build_time,
    }
    components: list[dict[str, Any]] = [{"Name": "Engine", "Version": host.version, "Details": details}]
    if host.runtime_version:
        runtime = host.runtimes.get(host.default_runtime, {})
        components.append({"Name": host.default_runtime, "Version": host.runtime_version,
                           "Details": {"Path": runtime.get("path", "")}})
    return {
        "Platform": {"Name": "Pallet Engine"},
        "Components": components,
        "Version": host.version,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": host.git_commit,
        "GoVersion": host.python_version,
        "Os": host.os_type,
        "Arch": host.arch,
        "KernelVersion": host.kernel_version,
        "BuildTime": host.build_time,
    }


async def version(request: web.Request) -> web.Response:
    return web.json_response(version_body(request.app[HOST_KEY]))


def _rfc3339_nano(ts: float) -> str:
    ns = int(ts * 1e9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10 ** 9)) + f".{ns % 10 ** 9:09d}Z"


def info_body(host: HostInfo, containers: Any, images: int, *, nfd: int, ntasks: int) -> dict[str, Any]:
    feats = host.cgroup_features
    return {
        "ID": host.id,
        "Containers": containers.total,
        "ContainersRunning": containers.running,
        "ContainersPaused": containers.paused,
        "ContainersStopped": containers.stopped,
        "Images": images,
        "Driver": host.driver,
        "DriverStatus": [list(kv) for kv in host.driver_status],
        "DockerRootDir": host.data_root,
        "Plugins": {"Volume": [], "Network": [], "Authorization": None, "Log": [host.logging_driver]},
        "MemoryLimit": feats.get("MemoryLimit", False),
        "SwapLimit": feats.get("SwapLimit", False),
        "KernelMemoryTCP": feats.get("KernelMemoryTCP", False),
        "CpuCfsPeriod": feats.get("CpuCfsPeriod", False),
        "CpuCfsQuota": feats.get("CpuCfsQuota", False),
        "CPUShares": feats.get("CPUShares", False),
        "CPUSet": feats.get("CPUSet", False),
        "PidsLimit": feats.get("PidsLimit", False),
        "OomKillDisable": feats.get("OomKillDisable", False),
        "IPv4Forwarding": feats.get("IPv4Forwarding", False),
        "Debug": host.debug,
        "NFd": nfd,
        "NGoroutines": ntasks,  # asyncio tasks: the nearest thing to goroutines here
        "SystemTime": _rfc3339_nano(time.time()),
        "LoggingDriver": host.logging_driver,
        "CgroupDriver": host.cgroup_driver,
        "CgroupVersion": host.cgroup_version,
        "NEventsListener": 0,
        "KernelVersion": host.kernel_version,
        "OperatingSystem": host.operating_system,
        "OSVersion": host.os_version,
        "OSType": host.os_type,
        "Architecture": host.architecture,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"], "IndexConfigs": {},
                           "Mirrors": []},
        "NCPU": host.ncpu,
        "MemTotal": host.mem_total,
        "GenericResources": None,
        "HttpProxy": host.http_proxy,
        "HttpsProxy": host.https_proxy,
        "NoProxy": host.no_proxy,
        "Name": host.name,
        "Labels": list(host.labels),
        "ExperimentalBuild": False,
        "ServerVersion": host.version,
        "Runtimes": host.runtimes,
        "DefaultRuntime": host.default_runtime,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": host.live_restore,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": ""},
        "RuncCommit": {"ID": ""},
        "InitCommit": {"ID": ""},
        "SecurityOptions": list(host.security_options),
        "DefaultAddressPools": [],
        "CDISpecDirs": [],
        "Containerd": None,
        "Warnings": list(host.warnings),
    }


def _count_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


async def info(request: web.Request) -> web.Response:
    counts = request.app[COUNTS_KEY]
    body = info_body(request.app[HOST_KEY], counts.containers(), counts.images(),
                     nfd=_count_fds(), ntasks=len(asyncio.all_tasks()))
    return web.json_response(body)
