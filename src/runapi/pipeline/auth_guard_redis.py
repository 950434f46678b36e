"""Brute-force lockouts shared by every instance through Redis (the rules: `auth_guard.py`).

One Lua call per failed key and subject (its client address, its key prefix; both in one round trip)
counts it in the subject's window (`INCR` + `PEXPIRE`) and, at `max_failures`, sets the subject's lock
key for `lockout` seconds. An uncached key first asks for both locks (`PTTL`, one round trip), so a
lockout earned on one instance holds on all of them at once; the answer is also kept locally, so a
locked subject costs no further round trip until its lock ends.
Redis away: the guard fails open to this process's own counter (the key lookup that follows still
needs a real key), and says so in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from runapi.pipeline.auth_guard import WINDOW_S, FailedAuthGuard, subjects
from runapi.storage import run_scripts

log = logging.getLogger("runapi.auth")

# KEYS[1] the subject's failure counter, KEYS[2] its lock; ARGV: max failures, window ms, lockout ms.
# Returns the lockout in ms when this failure locks the subject, else 0.
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

    def _keys(self, subject: str) -> list[str]:
        return [f"{self._prefix}:failures:{subject}", f"{self._prefix}:lock:{subject}"]

    async def locked(self, client: str | None, prefix: str | None) -> float | None:
        here = self.locked_here(client, prefix)
        if here is not None or self.max_failures <= 0:
            return here
        names = subjects(client, prefix)
        if not names:
            return None
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for subject in names:
                    pipe.pttl(self._keys(subject)[1])
                remaining = await pipe.execute()
        except RedisError:
            log.warning("could not read the shared auth lockouts; using this instance's own")
            return None
        longest = None
        for subject, ms in zip(names, remaining, strict=True):
            if ms > 0:
                self.lock(subject, ms / 1000)
                longest = max(longest or 0.0, ms / 1000)
        return longest

    async def failed(self, client: str | None, prefix: str | None) -> None:
        names = subjects(client, prefix)
        if not names or self.max_failures <= 0:
            return
        args = [self.max_failures, int(WINDOW_S * 1000), max(1, int(self.lockout * 1000))]
        try:
            locked_ms = await run_scripts(self._redis, [(self._fail, self._keys(subject), args) for subject in names])
        except RedisError:
            log.warning("could not count a failed key in Redis; counting it in this instance")
            self.count_failure(client, prefix)
            return
        for subject, ms in zip(names, locked_ms, strict=True):
            if ms:
                self.lock(subject, int(ms) / 1000)

    async def close(self) -> None:
        await self._redis.aclose()
