"""The process's Redis connection pool, tuned to fail fast: a call must not hang on a dead server."""

from __future__ import annotations

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


def redis_client(url: str) -> aioredis.Redis:
    """A client for `url`. One retry covers a pooled connection that died with a restarted server;
    after that, commands raise `redis.exceptions.ConnectionError` within about a second."""
    return aioredis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0,
                                   retry=Retry(NoBackoff(), 1), health_check_interval=30)
