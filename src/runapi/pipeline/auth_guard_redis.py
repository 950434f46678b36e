"""Brute-force lockouts shared by every instance through Redis (the rules: `auth_guard.py`).

One Lua call per failed key counts it in a per-address window (`INCR` + `PEXPIRE`) and, at
`max_failures`, sets the address's lock key for `lockout` seconds. An uncached key first asks for
that lock (`PTTL`), so a lockout earned on one instance holds on all of them at once; the answer is
also kept locally, so a locked address costs no further round trip until its lock ends.
Redis away: the guard fails open to this process's own counter (the key lookup that follows still
needs a real key), and says so in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from runapi.pipeline.auth_guard import FailedAuthGuard, WINDOW_S, locked_out

log = logging.getLogger("runapi.auth")

# KEYS[1] the address's failure counter, KEYS[2] its lock; ARGV: max failures, window ms, lockout ms.
# Returns the lockout in ms when this failure locks the address, else 0.
FAIL_SCRIPT = """
local failures = redis.call('INCR', KEYS[1])
if failures == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if failures >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return tonumber(ARGV[3])
end
return 0
"""


class RedisFailedAuthGuard(FailedAuthGuard):
    """`FailedAuthGuard` whose counts and lockouts are shared by every instance on one Redis."""

    def __init__(self, redis: aioredis.Redis, max_failures: int, lockout: float, *, prefix: str = "runapi:auth",
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(max_failures, lockout, clock)
        self._redis = redis
        self._prefix = prefix
        self._fail = redis.register_script(FAIL_SCRIPT)

    def _keys(self, client: str) -> list[str]:
        return [f"{self._prefix}:failures:{client}", f"{self._prefix}:lock:{client}"]

    async def check(self, client: str | None) -> None:
        self.check_local(client)
        if client is None or self.max_failures <= 0:
            return
        try:
            remaining_ms = await self._redis.pttl(self._keys(client)[1])
        except RedisError:
            log.warning("could not read the shared auth lockout; using this instance's own")
            return
        if remaining_ms > 0:
            self.lock(client, remaining_ms / 1000)
            raise locked_out(remaining_ms / 1000)

    async def failed(self, client: str | None) -> None:
        if client is None or self.max_failures <= 0:
            return
        try:
            locked_ms = await self._fail(keys=self._keys(client),
                                         args=[self.max_failures, int(WINDOW_S * 1000), max(1, int(self.lockout * 1000))])
        except RedisError:
            log.warning("could not count a failed key in Redis; counting it in this instance")
            self.count_failure(client)
            return
        if locked_ms:
            self.lock(client, int(locked_ms) / 1000)

    async def close(self) -> None:
        await self._redis.aclose()
