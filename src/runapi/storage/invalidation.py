"""Cache invalidation over Redis pub/sub: a change made on one instance reaches every instance at once.

An instance that revokes a key, tops up an account or changes a tier publishes a `Change`;
every subscribed instance (itself included) drops the matching cached entries within
milliseconds. Pub/sub is fire-and-forget: a message sent while an instance is
disconnected is lost, so the database cache epoch (`storage.epoch`, polled every half
second) stays on as the fallback, and it alone covers instances without Redis and
changes made by the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Literal

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from runapi.storage.background import stop_task

log = logging.getLogger("runapi.invalidation")

CHANNEL = "runapi:invalidate"


class Change(msgspec.Struct, frozen=True):
    """What changed: one key (revoked, new limits), one account (credit, tier), or everything."""

    kind: Literal["key", "account", "all"]
    id: str = ""


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Change).decode


class ChangeBus:
    """Publishes `Change`s and hands every received one to `on_change` (in the event loop)."""

    def __init__(self, client: aioredis.Redis, on_change: Callable[[Change], None], channel: str = CHANNEL) -> None:
        self._redis = client
        self._on_change = on_change
        self._channel = channel
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._subscribed.is_set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._listen(), name="invalidation-listener")

    async def wait_subscribed(self, timeout: float) -> bool:
        """Wait until subscribed (True), or give up after `timeout` seconds (False)."""
        try:
            async with asyncio.timeout(timeout):
                await self._subscribed.wait()
        except TimeoutError:
            return False
        return True

    async def publish(self, change: Change) -> bool:
        """Send `change` to every subscribed instance; False if Redis is away (the epoch poller covers it)."""
        try:
            await self._redis.publish(self._channel, _encode(change))
        except RedisError:
            log.warning("could not publish %s; other instances follow the cache epoch instead", change)
            return False
        return True

    async def _listen(self) -> None:
        delay = 0.05
        while not self._closing:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._subscribed.set()
                delay = 0.05
                while not self._closing:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self._deliver(message["data"])
            except (RedisError, OSError):
                if self._subscribed.is_set():
                    log.warning("lost the invalidation channel; relying on the cache epoch until it is back")
                self._subscribed.clear()
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _deliver(self, data: bytes) -> None:
        try:
            change = _decode(data)
        except msgspec.DecodeError:
            log.warning("ignored a malformed invalidation message")
            return
        self._on_change(change)

    async def close(self) -> None:
        """Stop listening and close the client."""
        self._closing = True
        await stop_task(self._task)
        self._subscribed.clear()
        await self._redis.aclose()
