"""Credit holds shared by every gateway instance, kept in Redis (chosen when RUNAPI_REDIS_URL is set).

Per account, under one hash tag (one cluster slot):

    state    hash   bal      Σ ledger at the last load from the database
                    held     Σ open holds
                    charged  Σ committed charges that `bal` does not include yet
                    stale    set when an expired hold was dropped: load again before the next hold
                    ready    ms: no new hold before then (Redis lost its data; see below)
    holds    hash   hold ID → amount            deadlines  zset  hold ID → expiry (ms)
    charged  hash   ledger entry ID → charge

Available credit is `bal − held − charged`; a hold is checked and taken by one Lua script,
so calls landing on different instances at once can't overdraw the account. Once an account
is warm, that script rides in the rate limiter's admission script (`rider`, `limits.Rider`):
one round trip admits the call and holds its credit. Settling
turns the hold into a `charged` entry keyed by its ledger ID (idempotent). A call that cost
more than its hold is charged its hold at first (`cap_charge` answers without a round trip);
before the charge is written, `cover_overrun` grows the hold, and the charge, by as much of the
overrun as the account's free credit covers (one script, sent only for such calls). Loading from
the database reads the balance and which `charged` entries it already includes in one
snapshot, and drops exactly those; loads of one account are serialised by a lock, so
each starts from a newer snapshot than the last. Amounts are exact up to 2**53 nano-dollars
(about $9M) per account, the range of Lua's numbers.

Faults:
- A hold's deadline is renewed while its call runs; a crashed instance's holds expire
  after `hold_ttl_s`, and the account is then reloaded from the ledger, which holds every
  charge that instance committed.
- Redis unreachable: `reserve` raises `ServiceUnavailable` (503, fail closed). Calls in
  flight finish and are charged in the database; their hold closings are queued and sent
  when Redis is back. A call that cost more than its hold is then charged its hold: the
  charge is written, never dropped, after at most `_OVERRUN_TIMEOUT_S` (see `cover_overrun`).
- Redis restarted empty: noticed by its boot marker. Every instance re-asserts its open
  holds within `heartbeat_s`, and no new hold is granted until `grace_s` after the restart,
  so calls in flight across the restart stay covered.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from runapi.accounting import credit_scripts as scripts
from runapi.accounting.credit import (
    CreditGuard,
    Hold,
    MemoryCreditGuard,
    Others,
    insufficient_credit,
)
from runapi.errors import ServiceUnavailable
from runapi.outage import REDIS_DOWN
from runapi.storage import (
    AutoPipeline,
    Ledger,
    Rider,
    Settlement,
    balance_snapshot,
    per_group,
    redis_client,
    stop_task,
)

log = logging.getLogger("runapi.credit")

_GRANTED, _NOT_LOADED, _STALE, _WAIT, _SHORT = range(5)
_OVERRUN_TIMEOUT_S = 2.0  # the most `cover_overrun` delays a settlement batch
_RELOADING = "Credit for this account is being reloaded from the ledger; retry shortly."


class RedisHold(Hold):
    __slots__ = ("id",)

    def __init__(self, account_id: str, amount: int, hold_id: str) -> None:
        super().__init__(account_id, amount)
        self.id = hold_id


class CreditRider(Rider):
    """RESERVE for `hold`, run in the rate limiter's admission round trip."""

    __slots__ = ("hold", "taken")

    def __init__(self, hold: RedisHold, source: str, keys: list[str], args: list[int | str]) -> None:
        super().__init__(source, keys, args)
        self.hold = hold
        self.taken = False


class RedisCreditGuard:
    """Holds and balances in Redis, shared by every instance and worker (see the module docstring)."""

    def __init__(self, ledger: Ledger, client: aioredis.Redis, *, prefix: str = "runapi", hold_ttl_s: float = 60.0,
                 heartbeat_s: float = 0.5, grace_s: float = 1.5, compact_at: int = 200,
                 pipeline: AutoPipeline | None = None) -> None:
        """`pipeline`: one shared with other users of `client` (the rate limiter's admissions: hold
        closings then share their writes; whoever built it closes `client`); by default one of its
        own, and `close` closes `client`."""
        self._ledger = ledger
        self._redis = client
        self._owns_client = pipeline is None
        self._pipeline = AutoPipeline(client) if pipeline is None else pipeline
        self._prefix = prefix
        self._ttl_ms = int(hold_ttl_s * 1000)
        self._renew_s = hold_ttl_s / 4
        self._heartbeat_s = heartbeat_s
        self._grace_ms = int(grace_s * 1000)
        self._compact_at = compact_at
        self._scripts = {name: client.register_script(lua) for name, lua in (
            ("reserve", scripts.RESERVE), ("settle", scripts.SETTLE), ("reassert", scripts.REASSERT),
            ("load", scripts.LOAD), ("boot", scripts.BOOT), ("unlock", scripts.UNLOCK),
            ("extend", scripts.EXTEND))}
        self._instance = secrets.token_hex(6)
        self._ids = itertools.count()
        self._open: dict[str, RedisHold] = {}  # this instance's open holds
        self._closing: list[tuple[RedisHold, int | None, int]] = []  # (hold, ledger ID or None, charge) to send
        self._fresh: set[str] = set()  # accounts loaded since the last invalidation
        self._spent_seen: dict[str, int] = {}  # account → `spent` in its newest RESERVE reply
        self._own_charges: dict[str, int] = {}  # account → Σ charges this instance sent to SETTLE
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._boot: str | None = None  # Redis's boot marker, as last seen
        self._reasserted_for: str | None = None  # the boot marker our open holds were last written under
        self._wake = asyncio.Event()
        self._sync: asyncio.Task[None] | None = None
        self._stopping = False

    @classmethod
    def from_url(cls, ledger: Ledger, url: str) -> RedisCreditGuard:
        return cls(ledger, redis_client(url))

    def _keys(self, account_id: str) -> tuple[str, str, str, str, str]:
        base = f"{self._prefix}:credit:{{{account_id}}}"
        return f"{base}:state", f"{base}:holds", f"{base}:deadlines", f"{base}:charged", f"{base}:lock"

    # -- the hot path ---------------------------------------------------------------------------

    async def reserve(self, account_id: str, amount: int) -> Hold:
        hold = RedisHold(account_id, amount, f"{self._instance}:{next(self._ids)}")
        state, holds, deadlines, _, _ = self._keys(account_id)
        try:
            await self._ensure_started()
            loaded = account_id not in self._fresh and await self._load(account_id)
            for _ in range(5):
                reply = await self._scripts["reserve"](
                    keys=[state, holds, deadlines], args=[hold.id, amount, self._ttl_ms])
                status, value = reply[0], reply[1]
                self._note_spent(account_id, reply)
                if status == _GRANTED:
                    self._open[hold.id] = hold
                    return hold
                if status == _WAIT:  # Redis restarted: give every instance time to re-assert its holds
                    await asyncio.sleep(int(value) / 1000)
                elif status == _SHORT and loaded:
                    raise insufficient_credit(amount, max(0, int(value)))
                else:  # not loaded, stale, or short on a balance that a top-up may have raised since
                    loaded = await self._load(account_id)
        except RedisError as exc:
            raise ServiceUnavailable(REDIS_DOWN) from exc
        raise ServiceUnavailable(_RELOADING)

    def rider(self, account_id: str, amount: int) -> Rider | None:
        if self._sync is None or account_id not in self._fresh:
            return None  # not started, or the account not loaded since the last invalidation: `reserve` does both
        hold = RedisHold(account_id, amount, f"{self._instance}:{next(self._ids)}")
        state, holds, deadlines, _, _ = self._keys(account_id)
        return CreditRider(hold, scripts.RESERVE, [state, holds, deadlines], [hold.id, amount, self._ttl_ms])

    def take(self, rider: Rider) -> Hold | None:
        assert isinstance(rider, CreditRider)
        if rider.reply is None or int(rider.reply[0]) != _GRANTED or rider.taken:
            return None
        self._note_spent(rider.hold.account_id, rider.reply)
        rider.taken = True
        self._open[rider.hold.id] = rider.hold
        return rider.hold

    def _note_spent(self, account_id: str, reply: Sequence[Any]) -> None:
        if len(reply) > 2:
            self._spent_seen[account_id] = int(reply[2])

    def charges_by_others(self, account_id: str, rider: Rider | None = None) -> Others | None:
        """`spent` (Σ charges SETTLE recorded for the account, every instance's) as last seen, less this
        instance's own charges sent to SETTLE; the era is Redis's boot marker (a restart empties `spent`).
        Own charges count here as soon as they are queued, before SETTLE records them: the value dips
        meanwhile, never rises, so a rise is always someone else's charge."""
        if isinstance(rider, CreditRider) and rider.reply is not None:
            self._note_spent(account_id, rider.reply)
        seen = self._spent_seen.get(account_id)
        if seen is None or self._boot is None:
            return None
        return Others(self._boot, seen - self._own_charges.get(account_id, 0))

    def cap_charge(self, hold: Hold, cost: int) -> int:
        # Other instances may hold the rest of the balance, and this must answer without a
        # round trip: a call that cost more than its hold is charged its hold here, and the
        # settlement writer then asks `cover_overrun` for the rest.
        return min(cost, hold.amount)

    async def cover_overrun(self, hold: Hold, settlement: Settlement) -> None:
        """Grow the hold, and the capped charge with it, by min(cost − charge, free credit).

        One Lua script takes the extra from the free credit of every instance (`bal − held −
        charged`) atomically, so concurrent overruns can't overdraw the account; it runs only
        for a call that cost more than its hold, never on the common path. If the hold's account
        needs reloading first (an expired hold was dropped), it is reloaded once.

        Rule when the extra can't be had (Redis unreachable or slow, the hold lost with Redis's
        data, the grace period after a Redis restart): the capped charge (the hold) stands and is
        written as usual; this logs a warning and never raises, so a charge is never blocked
        (beyond `_OVERRUN_TIMEOUT_S`) or dropped. The generation row keeps the true cost either way.
        """
        extra = settlement.generation.cost_nanos - settlement.charge_nanos
        if extra <= 0 or not hold.open:
            return
        assert isinstance(hold, RedisHold)
        try:
            status, granted = await asyncio.wait_for(self._extend(hold, extra), _OVERRUN_TIMEOUT_S)
        except (RedisError, ServiceUnavailable, TimeoutError) as exc:
            log.warning("could not cover a %d nano-dollar overrun of generation %s (%s): charging its hold",
                        extra, settlement.generation.id, exc or type(exc).__name__)
            return
        if status != _GRANTED:
            reason = {_NOT_LOADED: "hold not in Redis", _STALE: "account pending a reload",
                      _WAIT: "Redis restarted moments ago"}.get(status, status)
            log.warning("could not cover a %d nano-dollar overrun of generation %s (%s): charging its hold",
                        extra, settlement.generation.id, reason)
            return
        hold.amount += granted  # what `release`/`charged` close, and what the renewals re-assert
        settlement.charge_nanos += granted

    async def _extend(self, hold: RedisHold, extra: int) -> tuple[int, int]:
        state, holds, deadlines, _, _ = self._keys(hold.account_id)
        for attempt in range(2):
            status, granted = await self._scripts["extend"](keys=[state, holds, deadlines], args=[hold.id, extra])
            if status != _STALE or attempt:
                break
            await self._load(hold.account_id)
        return int(status), int(granted)

    def shrink(self, hold: Hold, charge: int) -> None:
        """Kept whole until the commit closes it (no round trip): conservative for a few milliseconds."""

    def charged(self, hold: Hold, charge: int, ledger_id: int) -> None:
        self._close(hold, ledger_id, charge)

    def release(self, hold: Hold) -> None:
        self._close(hold, None, 0)

    def _close(self, hold: Hold, ledger_id: int | None, charge: int) -> None:
        if not hold.open:
            return
        hold.open = False
        assert isinstance(hold, RedisHold)
        self._open.pop(hold.id, None)
        if ledger_id is not None and charge > 0:
            self._own_charges[hold.account_id] = self._own_charges.get(hold.account_id, 0) + charge
        self._closing.append((hold, ledger_id, charge))
        self._wake.set()

    def invalidate(self, account_id: str | None = None) -> None:
        if account_id is None:
            self._fresh.clear()
        else:
            self._fresh.discard(account_id)

    async def available(self, account_id: str) -> int:
        state = self._keys(account_id)[0]
        try:
            await self._ensure_started()
            await self._load(account_id)
            bal, held, charged = await self._redis.hmget(state, ["bal", "held", "charged"])
        except RedisError as exc:
            raise ServiceUnavailable(REDIS_DOWN) from exc
        return int(bal or 0) - int(held or 0) - int(charged or 0)

    # -- loading from the ledger ----------------------------------------------------------------

    async def _load(self, account_id: str) -> bool:
        """Load the account's balance from the ledger (one load at a time per account here). True."""
        pending = self._loading.get(account_id)
        if pending is not None:
            await asyncio.shield(pending)
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._loading[account_id] = future
        try:
            self._fresh.add(account_id)  # before loading: an invalidation during the load wins
            await self._load_locked(account_id)
            future.set_result(None)
        except BaseException as exc:
            self._fresh.discard(account_id)
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            del self._loading[account_id]
        return True

    async def _load_locked(self, account_id: str) -> None:
        state, _, _, charged, lock = self._keys(account_id)
        boot_ms, now_ms = await self._check_boot()
        ready = boot_ms + self._grace_ms if now_ms < boot_ms + self._grace_ms else 0
        for _ in range(3):
            token = secrets.token_hex(8)
            deadline = time.monotonic() + 5.0
            while not await self._redis.set(lock, token, nx=True, px=5000):
                if time.monotonic() > deadline:
                    raise ServiceUnavailable(_RELOADING)
                await asyncio.sleep(0.005)
            try:
                ids = [int(i) for i in await self._redis.hkeys(charged)]
                total, included = await balance_snapshot(self._ledger.engine, account_id, ids)
                status, _ = await self._scripts["load"](keys=[state, charged, lock],
                                                        args=[token, total, ready, *sorted(included)])
            except BaseException:
                with contextlib.suppress(RedisError):
                    await self._scripts["unlock"](keys=[lock], args=[token])
                raise
            if status == 0:
                return
        raise ServiceUnavailable(_RELOADING)

    def _compact(self, account_id: str) -> None:
        """Reload an account in the background, folding its charged entries into its balance."""
        if account_id in self._loading:
            return
        task = asyncio.get_running_loop().create_task(self._load(account_id))
        self._background.add(task)
        task.add_done_callback(self._compacted)

    def _compacted(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background credit reload failed: %s", task.exception())

    # -- the sync loop: hold closings, renewals, restarts ------------------------------------------

    async def _ensure_started(self) -> None:
        if self._sync is None:
            await self._check_boot()
            # Concurrent first calls all wait for the boot marker: only one may start the loop. A second
            # loop, unknown to `close()`, went on using the client after it was closed, and its new
            # connections were left open at shutdown (the ResourceWarnings of issue 20.2).
            if self._sync is None and not self._stopping:
                self._sync = asyncio.get_running_loop().create_task(self._sync_loop(), name="credit-sync")

    async def _check_boot(self) -> tuple[int, int]:
        """(ms the Redis data began, Redis's clock). A new marker means Redis lost its data."""
        marker, now_ms = await self._pipeline.run(self._scripts["boot"], [f"{self._prefix}:credit:boot"],
                                                  [secrets.token_hex(8)])
        marker = marker.decode() if isinstance(marker, bytes) else str(marker)
        if marker != self._boot:
            if self._boot is not None:
                log.warning("Redis lost its data: re-asserting %d open holds, reloading balances", len(self._open))
                self._fresh.clear()
                self._wake.set()
            self._boot = marker
        return int(marker.split(":", 1)[0]), int(now_ms)

    async def _sync_loop(self) -> None:
        delay = 0.05
        next_beat = next_renewal = time.monotonic()
        loop = asyncio.get_running_loop()
        while not self._stopping:
            timer = loop.call_later(min(self._heartbeat_s, self._renew_s), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()
            self._wake.clear()
            try:
                now = time.monotonic()
                if now >= next_beat:  # the heartbeat: notice a restarted Redis
                    await self._check_boot()
                    next_beat = now + self._heartbeat_s
                renew = now >= next_renewal
                await self._flush(renew)
                if renew:
                    next_renewal = now + self._renew_s
                delay = 0.05
            except RedisError:
                log.warning("Redis unreachable: %d hold closings queued", len(self._closing))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._heartbeat_s)  # never sleep through a restart's grace period
                next_beat = 0.0
                self._wake.set()

    async def _flush(self, renew: bool) -> None:
        """Send queued hold closings, and re-assert open holds when renewing or after a restart."""
        closing, self._closing = self._closing, []
        boot = self._boot
        reassert = renew or boot != self._reasserted_for
        by_account: dict[str, list[RedisHold]] = {}
        if reassert:
            for hold in self._open.values():
                by_account.setdefault(hold.account_id, []).append(hold)
        if not closing and not by_account:
            self._reasserted_for = boot
            return
        chunks = per_group(closing, lambda item: item[0].account_id)
        calls: list[tuple[AsyncScript, Sequence[str], Sequence[int | str]]] = [
            (self._scripts["settle"], self._keys(account_id)[:4],
             [x for hold, ledger_id, charge in items for x in (hold.id, "" if ledger_id is None else ledger_id, charge)])
            for account_id, items in chunks]
        for account_id, holds in by_account.items():
            pairs = [x for hold in holds for x in (hold.id, hold.amount)]
            calls.append((self._scripts["reassert"], self._keys(account_id)[:3], [self._ttl_ms, *pairs]))
        try:
            # Through the admissions' pipeline: these share their write. Per call: a call that failed
            # (Redis away) is sent again later, the others are not; only a call Redis answered NOSCRIPT
            # (it did not run) is re-sent at once, after loading its script.
            outcomes = await self._pipeline.run_many(calls)
        except BaseException:
            self._closing = closing + self._closing
            raise
        failed = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        self._closing = [item for (_, items), outcome in zip(chunks, outcomes, strict=False)
                         if isinstance(outcome, BaseException) for item in items] + self._closing
        if failed:
            raise failed[0]  # REASSERT again next time too: `_reasserted_for` and the renewal time stay
        if reassert:
            self._reasserted_for = boot  # if Redis restarted meanwhile, `_boot` has moved on: again next time
        for (account_id, _), entries in zip(chunks, outcomes, strict=False):  # SETTLE's replies come first
            if int(entries) >= self._compact_at:
                self._compact(account_id)

    async def close(self) -> None:
        """Send what is queued (for up to 5 s), then stop and close the connection pool."""
        deadline = time.monotonic() + 5.0
        while self._closing and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.02)
        if self._closing:
            log.warning("gave up sending %d hold closings at shutdown (their deadlines will expire)",
                        len(self._closing))
        self._stopping = True
        self._wake.set()
        for task in [self._sync, *self._background]:
            await stop_task(task)
        await self._pipeline.drain()
        if self._owns_client:
            await self._redis.aclose()


def create_credit_guard(ledger: Ledger, redis: AutoPipeline | None = None) -> CreditGuard:
    """In-process holds for one process, or Redis-backed ones shared by every instance when `redis` (the
    process's pipeline to Redis; its builder closes the client) is given."""
    if redis is not None:
        return RedisCreditGuard(ledger, redis.client, pipeline=redis)
    return MemoryCreditGuard(ledger)
