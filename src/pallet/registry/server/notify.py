"""Webhook notifications: push and delete events POSTed to configured URLs, asynchronously.

The envelope is distribution's (docs/content/about/notifications.md), media type
`application/vnd.docker.distribution.events.v1+json`:

    {"events": [{"id": "<uuid>", "timestamp": "<RFC 3339>", "action": "push" | "delete",
                 "target": {"mediaType", "digest", "size", "length", "repository", "url", "tag"},
                 "request": {"id", "addr", "host", "method", "useragent"},
                 "actor": {"name"}, "source": {"addr", "instanceID"}}]}

Each endpoint has its own bounded queue and one delivery task, so a slow endpoint delays
neither requests nor other endpoints. A delivery is retried with exponential backoff (`retries`
times, starting at `backoff` seconds) until the endpoint answers 2xx or 3xx, as distribution's
retrying sink does. Events live in memory only: those queued when the server stops are lost
(distribution's queue is in memory too); a full queue drops its oldest event and logs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from pallet.registry.server.config import Endpoint

log = logging.getLogger("pallet.registry.notify")

EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
QUEUE_LIMIT = 10_000


def make_event(action: str, *, repository: str, media_type: str, digest: str, size: int, url: str,
               tag: str | None = None, request: dict[str, str] | None = None, actor: str | None = None,
               source: dict[str, str] | None = None) -> dict[str, Any]:
    target: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size, "length": size,
                              "repository": repository, "url": url}
    if tag:
        target["tag"] = tag
    return {
        "id": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "action": action,
        "target": target,
        "request": request or {},
        "actor": {"name": actor} if actor else {},
        "source": source or {},
    }


class Notifier:
    """Fans events out to endpoints. `start()` inside the running loop, `close()` at shutdown."""

    def __init__(self, endpoints: tuple[Endpoint, ...]) -> None:
        self.endpoints = endpoints
        self._queues: list[asyncio.Queue[dict[str, Any]]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._session: Any = None

    async def start(self) -> None:
        if not self.endpoints:
            return
        import aiohttp

        self._session = aiohttp.ClientSession()
        for endpoint in self.endpoints:
            queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_LIMIT)
            self._queues.append(queue)
            self._tasks.append(asyncio.create_task(self._deliver_loop(endpoint, queue)))

    def publish(self, event: dict[str, Any]) -> None:
        """Queue `event` for every endpoint; never blocks."""
        for endpoint, queue in zip(self.endpoints, self._queues):
            if queue.full():
                dropped = queue.get_nowait()
                log.warning("notifications to %s: queue full, dropped event %s", endpoint.url, dropped["id"])
            queue.put_nowait(event)

    async def _deliver_loop(self, endpoint: Endpoint, queue: asyncio.Queue[dict[str, Any]]) -> None:
        while True:
            event = await queue.get()
            await self._deliver(endpoint, event)

    async def _deliver(self, endpoint: Endpoint, event: dict[str, Any]) -> bool:
        import aiohttp

        body = json.dumps({"events": [event]}).encode()
        headers = {"Content-Type": EVENTS_MEDIA_TYPE, **endpoint.headers}
        delay = endpoint.backoff
        for attempt in range(endpoint.retries + 1):
            try:
                async with self._session.post(endpoint.url, data=body, headers=headers,
                                              timeout=aiohttp.ClientTimeout(total=endpoint.timeout),
                                              allow_redirects=False) as resp:
                    if 200 <= resp.status < 400:
                        return True
                    problem = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < endpoint.retries:
                log.info("notification %s to %s failed (%s); retrying in %.1fs", event["id"], endpoint.url,
                         problem, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
        log.warning("notification %s to %s dropped after %d attempts: %s", event["id"], endpoint.url,
                    endpoint.retries + 1, problem)
        return False

    async def close(self, drain_timeout: float = 2.0) -> None:
        """Give queued events a moment to go out, then stop."""
        if self._queues:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_timeout):
                    while any(not q.empty() for q in self._queues):
                        await asyncio.sleep(0.05)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
