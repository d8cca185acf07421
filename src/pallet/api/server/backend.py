"""What the system routes read: host facts gathered once by palletd, and counts asked per request.

`HostInfo` is plain data (STYLE.md §6), filled by `pallet.daemon.hostinfo` at start-up and by
tests directly. `SystemCounts` is the seam the engine and the image store implement later;
`ZeroCounts` stands in until they exist. `ImageBackend` holds the daemon's image service,
`EngineBackend` its container engine, and `EngineCounts` counts from both.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, cast

if TYPE_CHECKING:
    from pallet.engine.containers import Engine
    from pallet.image.service import ImageService

log = logging.getLogger("palletd.images")


@dataclass(frozen=True)
class ContainerCounts:
    total: int = 0
    running: int = 0
    paused: int = 0
    stopped: int = 0


class SystemCounts(Protocol):
    """Counts for GET /info. Called on the event loop: must be quick and must not block on I/O
    for long (read an in-memory index, not the disk). Never raises for an empty store."""

    def containers(self) -> ContainerCounts: ...

    def images(self) -> int: ...


class ZeroCounts:
    """No engine yet: nothing to count."""

    def containers(self) -> ContainerCounts:
        return ContainerCounts()

    def images(self) -> int:
        return 0


@dataclass(frozen=True)
class HostInfo:
    """Facts about the daemon and its host, gathered once at start-up. Field names follow the
    Docker API's SystemInfo/SystemVersion where one exists."""

    id: str = ""
    name: str = ""
    version: str = "0.0.0"
    git_commit: str = "unknown"
    build_time: str = ""
    python_version: str = ""
    kernel_version: str = ""
    operating_system: str = ""
    os_version: str = ""
    os_type: str = "linux"
    architecture: str = ""          # uname -m, as SystemInfo.Architecture ("x86_64")
    arch: str = ""                  # GOARCH spelling, as SystemVersion.Arch ("amd64")
    ncpu: int = 1
    mem_total: int = 0
    data_root: str = "/var/lib/pallet"
    exec_root: str = "/run/pallet"
    driver: str = "overlayfs"
    driver_status: tuple[tuple[str, str], ...] = ()
    logging_driver: str = "json-file"
    cgroup_driver: str = "cgroupfs"
    cgroup_version: str = "1"
    cgroup_features: dict[str, bool] = field(default_factory=dict)
    runtimes: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_runtime: str = "pallet-runtime"
    runtime_version: str = ""
    security_options: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    debug: bool = False
    live_restore: bool = False
    warnings: tuple[str, ...] = ()
    http_proxy: str = ""
    https_proxy: str = ""
    no_proxy: str = ""
    insecure_registries: tuple[str, ...] = ()   # besides loopback (daemon --insecure-registry)


class ImageBackend:
    """palletd's one `ImageService`, opened on first use from a worker thread and shared by every
    request after that (the image routes call it through `asyncio.to_thread`).

    Opening lazily keeps an app that never serves an image (unit tests of other routes) off the
    disk. Sharing one service across threads is safe: MetadataStore keeps one SQLite connection
    per thread, the snapshot store serializes on an RLock, ContentStore guards index.json with a
    lock (and a file lock against other processes), and blobs are content-addressed.
    """

    def __init__(self, data_root: str, factory: Any = None, *, max_size: int = 0, min_free: int = 0) -> None:
        self.data_root = data_root
        self._factory = factory
        self._service: Any = None
        self._lock = threading.Lock()
        self.max_size, self.min_free = max_size, min_free
        self._policy_lock = threading.Lock()

    def enforce_policy(self) -> Any:
        """The automatic store policy (Docker has none): after anything that adds images, and at
        start-up, delete unused images, least recently used first, until the store is under
        --image-store-max-size and the file system has --image-store-min-free. None when off."""
        if not (self.max_size or self.min_free):
            return None
        from pallet.image.gc import GarbageCollector

        svc = self.get()
        with self._policy_lock:
            gc = GarbageCollector(svc.content, svc.meta, svc.snapshots, data_root=svc.root)
            result = gc.enforce_watermark(max_bytes=self.max_size or None,
                                          min_free_bytes=self.min_free or None)
        if getattr(result, "deleted", None):
            log.info("image store policy deleted %s", ", ".join(map(str, result.deleted)))
        return result

    def get(self) -> ImageService:
        with self._lock:
            if self._service is None:
                if self._factory is not None:
                    self._service = self._factory()
                else:
                    from pallet.image.service import ImageService

                    self._service = ImageService(self.data_root)
            return cast("ImageService", self._service)

    def close(self) -> None:
        with self._lock:
            if self._service is not None:
                self._service.close()
                self._service = None


class EngineBackend:
    """palletd's one container `Engine` (pallet.engine.containers), built at start-up and closed
    at shutdown (its monitor-exit watcher thread starts with it; containers keep running).

    `factory(image_service)` builds it, so that the engine shares the daemon's ImageService;
    unit tests pass a ready `engine` (a fake recording calls) instead.
    """

    def __init__(self, factory: Callable[[ImageService], Any] | None = None, *, engine: Any = None) -> None:
        self._factory = factory
        self._engine: Any = engine
        self._lock = threading.Lock()

    def start(self, images: ImageBackend) -> None:
        """Build the engine (blocking: it reads every container record and reconciles running
        ones with their monitors); a no-op when it exists already."""
        with self._lock:
            if self._engine is None and self._factory is not None:
                self._engine = self._factory(images.get())

    def get(self) -> Engine:
        if self._engine is None:
            from pallet.errors import Unavailable

            raise Unavailable("the container engine is not running")
        return cast("Engine", self._engine)

    def close(self) -> None:
        with self._lock:
            if self._engine is not None and self._factory is not None:
                self._engine.close()
                self._engine = None


class EngineCounts:
    """GET /info counts from the engine's in-memory records and the image store."""

    def __init__(self, engine: EngineBackend, images: ImageBackend) -> None:
        self._engine, self._images = engine, images

    def containers(self) -> ContainerCounts:
        try:
            states = [c["State"] for c in self._engine.get().list(all=True)]
        except Exception:  # engine not up (yet): nothing to count; /info must still answer
            return ContainerCounts()
        running = states.count("running")
        paused = states.count("paused")
        return ContainerCounts(total=len(states), running=running, paused=paused,
                               stopped=len(states) - running - paused)

    def images(self) -> int:
        try:
            return len(self._images.get().images())
        except Exception:
            return 0


class BuildBackend:
    """palletd's builder (pallet.build.builder) and build cache, made on first use from the
    daemon's image service and engine: RUN steps use the engine's default runtime, exec root
    and cgroup parent, and the cache lives under the data root."""

    def __init__(self) -> None:
        self._builder: Any = None
        self._lock = threading.Lock()

    def get(self, images: ImageBackend, engine: EngineBackend) -> Any:
        with self._lock:
            if self._builder is None:
                from pallet.build.builder import Builder
                from pallet.build.cache import BuildCache

                eng = engine.get()
                svc = images.get()
                self._builder = Builder(svc, BuildCache(svc.root), exec_root=eng.exec_root,
                                        runtime=eng.runtimes[eng.default_runtime],
                                        cgroup_parent=eng.cgroup_parent)
            return self._builder

    def close(self) -> None:
        with self._lock:
            if self._builder is not None:
                self._builder.cache.close()
                self._builder = None
