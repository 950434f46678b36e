"""The Redis rate limiter: the same GCRA buckets as `memory.py`, kept in Redis for many instances.

One admission is one round trip: a Lua script checks every scope's requests, tokens and
concurrency and charges all of them or none, atomically; a `Rider` (the credit hold) runs in
the same script call when the call is admitted. Releases (free the concurrency
slot, replace the token estimate by real usage) are queued and sent in batches: one script call
per account for all its queued releases, the calls of all accounts pipelined.
A concurrency slot is a sorted-set member with a lease, so a crashed instance's calls stop
counting once the lease ends. All of an account's keys share a hash tag (one cluster slot).
Times come from the limiter's clock; instances are assumed NTP-synchronised.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from runapi.limits.rates import (
    PERIOD_MS,
    Clock,
    Decision,
    Dimension,
    Quota,
    ScopeStatus,
    Ticket,
)
from runapi.storage import AutoPipeline, Rider, per_group, redis_client

log = logging.getLogger("runapi.limits")

_LUA_COMMON = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
local period = tonumber(ARGV[3])
local function drain(level, last, limit)
  if limit <= 0 then return 0 end
  local elapsed = now - last
  if elapsed < 0 then elapsed = 0 end
  local left = level - elapsed * limit
  if left < 0 then return 0 end
  return left
end
local function int(x) return string.format('%d', x) end
"""

# KEYS: per scope, its bucket hash and its concurrency set. ARGV: now_ms, member, period_ms,
# lease_ms, then per scope: rpm, tpm, concurrency, token cost. Returns
# {denied (0 ok, 1 requests, 2 tokens, 3 concurrency), denied scope index, retry_ms,
#  then per scope: remaining requests, reset requests ms, remaining tokens, reset tokens ms}.
ACQUIRE = _LUA_COMMON + """
local lease = tonumber(ARGV[4])
local function check(level, limit, cost)
  if limit <= 0 then return true, level, 0, 0, 0 end
  local capacity = limit * period
  local new = level + cost * period
  if new <= capacity then
    return true, new, math.floor((capacity - new) / period), math.ceil(new / limit), 0
  end
  local free = capacity - level
  if free < 0 then free = 0 end
  return false, level, math.floor(free / period), math.ceil(level / limit), math.ceil((new - capacity) / limit)
end
local n = #KEYS / 2
local out = {0, 0, 0}
local new_levels = {}
for i = 1, n do
  local bucket, inflight = KEYS[2 * i - 1], KEYS[2 * i]
  local base = 4 + 4 * (i - 1)
  local rpm, tpm = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local conc, cost = tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
  local h = redis.call('HMGET', bucket, 'rl', 'rt', 'tl', 'tt')
  local rl = drain(tonumber(h[1]) or 0, tonumber(h[2]) or now, rpm)
  local tl = drain(tonumber(h[3]) or 0, tonumber(h[4]) or now, tpm)
  local rok, rnew, rrem, rreset, rretry = check(rl, rpm, 1)
  local tok, tnew, trem, treset, tretry = check(tl, tpm, cost)
  if not rok then
    if out[1] == 0 then out[1] = 1; out[2] = i end
    if rretry > out[3] then out[3] = rretry end
  end
  if not tok then
    if out[1] == 0 then out[1] = 2; out[2] = i end
    if tretry > out[3] then out[3] = tretry end
  end
  if conc > 0 then
    redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now)
    if redis.call('ZCARD', inflight) >= conc then
      if out[1] == 0 then out[1] = 3; out[2] = i end
      if 1000 > out[3] then out[3] = 1000 end
    end
  end
  new_levels[i] = {rnew, tnew, math.max(rreset, treset), rl, tl, rpm, tpm}
  table.insert(out, rrem); table.insert(out, rreset); table.insert(out, trem); table.insert(out, treset)
end
if out[1] ~= 0 then
  -- refused: report the buckets as they stand, not as they would be after this call
  for i = 1, n do
    local l = new_levels[i]
    local _, _, rrem, rreset = check(l[4], l[6], 0)
    local _, _, trem, treset = check(l[5], l[7], 0)
    out[4 + 4 * (i - 1)] = rrem; out[5 + 4 * (i - 1)] = rreset
    out[6 + 4 * (i - 1)] = trem; out[7 + 4 * (i - 1)] = treset
  end
else
  for i = 1, n do
    local bucket, inflight = KEYS[2 * i - 1], KEYS[2 * i]
    local conc = tonumber(ARGV[4 + 4 * (i - 1) + 3])
    local l = new_levels[i]
    redis.call('HSET', bucket, 'rl', int(l[1]), 'rt', int(now), 'tl', int(l[2]), 'tt', int(now))
    redis.call('PEXPIRE', bucket, l[3] + 1000)
    if conc > 0 then
      redis.call('ZADD', inflight, now + lease, member)
      redis.call('PEXPIRE', inflight, lease)
    end
  end
end
return out
"""

# KEYS: the (bucket, concurrency set) pairs of one group's scopes. ARGV: now_ms, '', period_ms, then
# per ticket: its member, its number of scopes n, then n times: pair index, tpm, token delta
# (real − charged). Frees each ticket's concurrency slots and corrects the tokens buckets.
RELEASE = _LUA_COMMON + """
local i = 4
while i <= #ARGV do
  local m, n = ARGV[i], tonumber(ARGV[i + 1])
  i = i + 2
  for _ = 1, n do
    local p, tpm, delta = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
    i = i + 3
    local bucket, inflight = KEYS[2 * p - 1], KEYS[2 * p]
    redis.call('ZREM', inflight, m)
    if tpm > 0 and delta ~= 0 then
      local h = redis.call('HMGET', bucket, 'tl', 'tt')
      local tl = drain(tonumber(h[1]) or 0, tonumber(h[2]) or now, tpm) + delta * period
      if tl < 0 then tl = 0 end
      redis.call('HSET', bucket, 'tl', int(tl), 'tt', int(now))
      local ttl = math.max(redis.call('PTTL', bucket), math.ceil(tl / tpm) + 1000)
      redis.call('PEXPIRE', bucket, ttl)
    end
  end
end
return 1
"""

# ACQUIRE and a rider's script as two functions of one script. ARGV[1], ARGV[2]: how many of
# KEYS and of the remaining ARGV are ACQUIRE's; the rest are the rider's. Returns {ACQUIRE's
# reply} if refused, {ACQUIRE's reply, the rider's reply} if admitted.
_WITH_RIDER = """
local function acquire(KEYS, ARGV)
{acquire}
end
local function rider(KEYS, ARGV)
{rider}
end
local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local ak, aa, rk, ra = {{}}, {{}}, {{}}, {{}}
for i = 1, #KEYS do if i <= nk then ak[#ak + 1] = KEYS[i] else rk[#rk + 1] = KEYS[i] end end
for i = 3, #ARGV do if i <= na + 2 then aa[#aa + 1] = ARGV[i] else ra[#ra + 1] = ARGV[i] end end
local out = acquire(ak, aa)
if out[1] ~= 0 then return {{out}} end
return {{out, rider(rk, ra)}}
"""

_DIMENSIONS: dict[int, Dimension] = {1: "requests", 2: "tokens", 3: "concurrency"}


class RedisRateLimiter:
    """Buckets in Redis, shared by every gateway instance that points at the same server."""

    def __init__(self, client: aioredis.Redis, clock: Clock = time.time, *, prefix: str = "runapi",
                 lease_s: float = 3600.0, pipeline: AutoPipeline | None = None) -> None:
        """`pipeline`: one shared with other users of `client` (whoever built it closes `client`);
        by default one of its own, and `close` closes `client`."""
        self.clock = clock
        self._redis = client
        self._prefix = prefix
        self._lease_ms = int(lease_s * 1000)
        self._instance = secrets.token_hex(6)  # tickets are this plus a count: unique without a random draw each
        self._members = itertools.count()
        self._acquire = client.register_script(ACQUIRE)
        self._release = client.register_script(RELEASE)
        self._owns_client = pipeline is None
        self._pipeline = AutoPipeline(client) if pipeline is None else pipeline
        self._with_rider: dict[str, AsyncScript] = {}  # by the rider's source
        self._pending: list[tuple[Ticket, int]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    @classmethod
    def from_url(cls, url: str, clock: Clock = time.time, **options: Any) -> RedisRateLimiter:
        return cls(redis_client(url), clock, **options)

    def _keys(self, group: str, quotas: Sequence[Quota]) -> list[str]:
        keys: list[str] = []
        for quota in quotas:
            keys += [f"{self._prefix}:rl:{{{group}}}:{quota.scope}", f"{self._prefix}:cc:{{{group}}}:{quota.scope}"]
        return keys

    async def acquire(self, group: str, quotas: Sequence[Quota], tokens: int, rider: Rider | None = None) -> Decision:
        member = f"{self._instance}{next(self._members):x}"
        charges = tuple(q.token_cost(tokens) for q in quotas)
        args: list[int | str] = [int(self.clock() * 1000), member, PERIOD_MS, self._lease_ms]
        for quota, charge in zip(quotas, charges, strict=True):
            args += [quota.requests_per_minute, quota.tokens_per_minute, quota.concurrent_requests, charge]
        keys = self._keys(group, quotas)
        if rider is None:
            reply = await self._pipeline.run(self._acquire, keys, args)
        else:
            script = self._with_rider.get(rider.source)
            if script is None:
                script = self._with_rider[rider.source] = self._redis.register_script(
                    _WITH_RIDER.format(acquire=ACQUIRE, rider=rider.source))
            both = await self._pipeline.run(script, [*keys, *rider.keys], [len(keys), len(args), *args, *rider.args])
            reply = both[0]
            rider.reply = both[1] if len(both) > 1 else None
        out = [int(x) for x in reply]
        statuses = tuple(ScopeStatus(q, *out[3 + 4 * i: 7 + 4 * i]) for i, q in enumerate(quotas))
        if out[0]:
            return Decision(statuses, denied=_DIMENSIONS[out[0]], denied_scope=quotas[out[1] - 1].scope,
                            retry_after_ms=out[2])
        ticket = Ticket(id=member, group=group, quotas=tuple(quotas), charges=charges)
        return Decision(statuses, ticket=ticket)

    def release(self, ticket: Ticket, actual_tokens: int) -> None:
        self._pending.append((ticket, actual_tokens))
        self._idle.clear()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop(), name="ratelimit-release")

    async def _flush_loop(self) -> None:
        delay = 0.05
        while self._pending:
            batch, self._pending = self._pending, []
            now = int(self.clock() * 1000)
            chunks = per_group(batch, lambda item: item[0].group)  # one RELEASE per account and run of tickets
            # Through the admissions' pipeline: the releases share their write. A call that failed (Redis
            # away) is kept with its tickets and sent again; those that ran are not (RELEASE corrects token
            # buckets by a delta, so it must not run twice).
            outcomes = await self._pipeline.run_many([self._release_call(group, tickets, now)
                                                      for group, tickets in chunks])
            failed = [(tickets, outcome) for (_, tickets), outcome in zip(chunks, outcomes, strict=True)
                      if isinstance(outcome, BaseException)]
            if not failed:
                delay = 0.05
                continue
            kept = [item for tickets, _ in failed for item in tickets]
            log.warning("could not release %d rate-limit tickets; retrying", len(kept), exc_info=failed[0][1])
            self._pending = kept + self._pending  # leases bound the damage meanwhile
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        self._idle.set()

    def _release_call(self, group: str, tickets: list[tuple[Ticket, int]], now: int
                      ) -> tuple[AsyncScript, list[str], list[int | str]]:
        keys: list[str] = []
        pairs: dict[str, int] = {}  # scope → its (bucket, concurrency set) pair's index in `keys`, from 1
        args: list[int | str] = [now, "", PERIOD_MS]
        for ticket, actual in tickets:
            args += [ticket.id, len(ticket.quotas)]
            for quota, charged in zip(ticket.quotas, ticket.charges, strict=True):
                pair = pairs.get(quota.scope)
                if pair is None:
                    pair = pairs[quota.scope] = len(pairs) + 1
                    keys += self._keys(group, [quota])
                args += [pair, quota.tokens_per_minute, actual - charged]
        return self._release, keys, args

    async def flush(self) -> None:
        await self._idle.wait()

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.flush(), timeout=5)
        except TimeoutError:
            log.warning("gave up on %d rate-limit releases at shutdown (their leases will expire)",
                        len(self._pending))
        if self._flusher is not None:
            self._flusher.cancel()
        await self._pipeline.drain()
        if self._owns_client:
            await self._redis.aclose()
