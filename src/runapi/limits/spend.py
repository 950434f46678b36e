"""Spend caps: a key's lifetime and monthly caps, and its account tier's monthly cap.

A call is admitted only if, for every cap that applies, `spent + held + max cost ≤ cap`:
what was charged (Σ charges in the ledger), plus the most every call still in flight may
cost, plus the most this call may cost. A key stops at its cap; only a call that costs more
than its hold (its prompt tokenised to more than the estimate) can pass it, by that excess.
Spent amounts are cached per scope, with the highest ledger ID they include, so admission
needs no database round trip once warm; settlements add their charges, and caches are
reloaded on a cache-epoch change. Charges made by other instances reach a cached total through
the caller's `others` (what other processes have charged the account, from the credit guard's
Redis round trip, which every admission makes anyway): a rise is added to the account's totals at
once, a new era reloads them. Without that news (`others` None) a total is re-read after
`reload_s`; with it, after `SIGNAL_RELOAD_S` at most (a backstop). Adding an account's news to its
keys' totals over-counts (the other keys' charges): totals only err high, and a call they would
refuse reloads them first (`REFUSAL_RELOAD_S`), so nobody is refused on an estimate.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Literal, cast

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.clock import utcnow
from runapi.errors import BudgetExceeded
from runapi.money import nanos_to_usd
from runapi.storage import (
    HOLD_PREFIX,
    RELEASE_PREFIX,
    TASK_ID_PREFIX,
    WRITEOFF_SUFFIX,
    generations,
    ledger,
    read_one,
    reader,
    tasks,
)

RELOAD_S = 30.0  # the default of `[server] spend_reload_interval`
SIGNAL_RELOAD_S = 600.0  # a total kept up to date by `others` is still re-read this often
REFUSAL_RELOAD_S = 1.0  # a total that would refuse a call is re-read first, unless read this recently
Others = tuple[str, int]  # (era, Σ charged by other processes): `accounting.CreditGuard.charges_by_others`
Scope = tuple[str, str, str | None]  # ("key" | "account", ID, "YYYY-MM" or None for lifetime)
CapKind = Literal["key_spend_cap", "key_monthly_spend_cap", "tier_monthly_spend_cap"]


def month_of(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """[first instant, first instant of the next month) of a `YYYY-MM` month, UTC."""
    year, number = (int(part) for part in month.split("-"))
    start = datetime(year, number, 1, tzinfo=UTC)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=UTC)
    return start, end


class Cap(msgspec.Struct, frozen=True):
    """One cap that applies to a call. `scope` names what it sums (see `SpendGuard._query`)."""

    kind: CapKind
    scope: Scope
    limit_nanos: int


class SpendHold:
    """The most one admitted call may cost, counted against each of its caps until released."""

    __slots__ = ("scopes", "amount", "open")

    def __init__(self, scopes: tuple[Scope, ...], amount: int) -> None:
        self.scopes = scopes
        self.amount = amount
        self.open = True


def _add(spent: _Spent, ledger_id: int, charge: int) -> None:
    if ledger_id > spent.high_id:
        spent.nanos += charge
        spent.high_id = ledger_id


class _Spent:
    __slots__ = ("nanos", "high_id", "loaded_at", "others")

    def __init__(self, nanos: int, high_id: int, loaded_at: float, others: Others | None) -> None:
        self.nanos = nanos
        self.high_id = high_id  # highest ledger entry reflected in `nanos`
        self.loaded_at = loaded_at
        self.others = others  # the news of other processes' charges that `nanos` reflects


_MESSAGES: dict[CapKind, str] = {
    "key_spend_cap": "this API key's spend cap",
    "key_monthly_spend_cap": "this API key's monthly spend cap",
    "tier_monthly_spend_cap": "the account's usage-tier monthly spend cap",
}


class SpendGuard:
    """Spend caps for one process; correct for a single gateway process (see the module doc)."""

    def __init__(self, engine: AsyncEngine, reload_s: float = RELOAD_S) -> None:
        self._engine = reader(engine)  # one statement per load: no transaction around it
        self._reload_s = reload_s
        self._spent: dict[Scope, _Spent] = {}
        self._held: defaultdict[Scope, int] = defaultdict(int)
        self._loading: dict[Scope, asyncio.Future[_Spent]] = {}
        self._late: dict[Scope, list[tuple[int, int]]] = {}  # charges committed while a scope loads

    @staticmethod
    def month() -> str:
        """The current month, on the clock generation rows are stamped with."""
        return month_of(utcnow())

    async def reserve(self, caps: list[Cap], amount: int, others: Others | None = None) -> SpendHold:
        """Count `amount` against every cap, or raise `BudgetExceeded` naming the first one it would pass.
        `others`: news of the account's charges by other processes (see the module doc)."""
        held = self._held
        for attempt in (1, 2):
            spent: dict[Scope, _Spent] = {}
            for cap in caps:  # a fresh cached total needs no coroutine
                spent[cap.scope] = self._fresh(cap.scope, others) or await self._current(cap.scope, others)
            refused = next((cap for cap in caps  # no await from here on: check and count atomically
                            if spent[cap.scope].nanos + held.get(cap.scope, 0) + amount > cap.limit_nanos), None)
            if refused is None:
                break
            if attempt == 1 and time.monotonic() - spent[refused.scope].loaded_at >= REFUSAL_RELOAD_S:
                self._spent.pop(refused.scope, None)  # refuse on a total read now, not on an estimate
                continue
            used = spent[refused.scope].nanos + held.get(refused.scope, 0)
            left = max(0, refused.limit_nanos - used)
            raise BudgetExceeded(
                f"This call may cost up to ${nanos_to_usd(amount)}, but {_MESSAGES[refused.kind]} of "
                f"${nanos_to_usd(refused.limit_nanos)} has ${nanos_to_usd(left)} left "
                f"(${nanos_to_usd(spent[refused.scope].nanos)} spent, "
                f"${nanos_to_usd(held.get(refused.scope, 0))} held by calls in flight). "
                "Lower max_tokens, or ask the operator to raise the cap.",
                code=f"{refused.kind}_exceeded",
            )
        scopes = tuple([cap.scope for cap in caps])
        for scope in scopes:
            held[scope] += amount
        return SpendHold(scopes, amount)

    def follow(self, hold: SpendHold, others: Others | None) -> None:
        """Totals this admission read without news of other processes (a cold account: the news comes with
        its first credit hold, just after) follow `others` from now on, instead of expiring after
        `reload_s`. Charges others made between the read and the news (a few milliseconds) are missed."""
        if others is None:
            return
        for scope in hold.scopes:
            cached = self._spent.get(scope)
            if cached is not None and cached.others is None:
                cached.others = others

    def shrink(self, hold: SpendHold, amount: int) -> None:
        """The call is over and will be charged `amount`: hold only that until the charge is committed."""
        if hold.open and amount < hold.amount:
            for scope in hold.scopes:
                self._held[scope] -= hold.amount - amount
            hold.amount = amount

    def release(self, hold: SpendHold) -> None:
        if hold.open:
            hold.open = False
            held = self._held
            for scope in hold.scopes:
                left = held[scope] - hold.amount
                if left:
                    held[scope] = left
                else:
                    held.pop(scope, None)

    def charged(self, key_id: str, account_id: str, charge: int, ledger_id: int, moment: datetime) -> None:
        """A charge was committed: add it to every cached total it belongs to."""
        month = month_of(moment)
        cache, late = self._spent, self._late
        for scope in (("key", key_id, None), ("key", key_id, month), ("account", account_id, month)):
            spent = cache.get(scope)
            if spent is not None:
                _add(spent, ledger_id, charge)
            if late and scope in late:
                late[scope].append((ledger_id, charge))

    def invalidate(self) -> None:
        self._spent.clear()

    async def spent(self, scope: Scope) -> int:
        return (await self._current(scope)).nanos

    def _fresh(self, scope: Scope, others: Others | None) -> _Spent | None:
        """The cached total of `scope`, brought up to date with `others`, if it can be trusted without a read."""
        cached = self._spent.get(scope)
        if cached is None:
            return None
        age = time.monotonic() - cached.loaded_at
        base = cached.others
        if others is None or base is None:
            return cached if age < self._reload_s else None
        if others[0] != base[0] or age >= SIGNAL_RELOAD_S:
            return None  # a new era (Redis lost its data): read again
        if others[1] > base[1]:  # others charged the account since: count it (a dip is our own, in transit)
            cached.nanos += others[1] - base[1]
            cached.others = others
        return cached

    async def _current(self, scope: Scope, others: Others | None = None) -> _Spent:
        cached = self._fresh(scope, others)
        if cached is not None:
            return cached
        pending = self._loading.get(scope)
        if pending is not None:  # one query at a time per scope
            return await asyncio.shield(pending)
        future: asyncio.Future[_Spent] = asyncio.get_running_loop().create_future()
        self._loading[scope] = future
        self._late[scope] = []
        try:
            nanos, high_id = await self._query(scope)
            current = self._spent.get(scope)
            if current is None or high_id >= current.high_id:
                current = self._spent[scope] = _Spent(nanos, high_id, time.monotonic(), others)
            else:
                current.loaded_at = time.monotonic()
            for ledger_id, charge in self._late[scope]:  # committed after the query's snapshot, perhaps
                _add(current, ledger_id, charge)
            future.set_result(current)
            return current
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            del self._loading[scope]
            del self._late[scope]

    async def _query(self, scope: Scope) -> tuple[int, int]:
        kind, owner, month = scope
        # What was paid: charges less their write-offs (the part a balance could not cover, `ledger.py`),
        # and what video tasks in flight hold (a `hold` entry, given back by its `release`).
        totals = (sa.func.coalesce(sa.func.sum(-ledger.c.amount_nanos), 0), sa.func.coalesce(sa.func.max(ledger.c.id), 0))
        if kind == "key":
            of_generation = sa.or_(ledger.c.generation_id == generations.c.id,
                                   ledger.c.generation_id == generations.c.id + WRITEOFF_SUFFIX)
            charges = sa.select(*totals).select_from(ledger.join(generations, of_generation)) \
                .where(ledger.c.kind.in_(("charge", "writeoff")), generations.c.key_id == owner)
            task = sa.func.substr(tasks.c.id, len(TASK_ID_PREFIX) + 1)  # the task ID's hex part
            of_task = sa.or_(ledger.c.generation_id == sa.literal(HOLD_PREFIX) + task,
                             ledger.c.generation_id == sa.literal(RELEASE_PREFIX) + task)
            held = sa.select(*totals).select_from(ledger.join(tasks, of_task)) \
                .where(ledger.c.kind.in_(("hold", "release")), tasks.c.key_id == owner)
            queries = [charges, held]
        else:
            queries = [sa.select(*totals).where(ledger.c.kind.in_(("charge", "writeoff", "hold", "release")),
                                                ledger.c.account_id == owner)]
        if month is not None:
            start, end = month_bounds(month)
            queries = [query.where(ledger.c.created_at >= start, ledger.c.created_at < end) for query in queries]
        nanos = high = 0
        for query in queries:
            row = await read_one(self._engine, query)
            assert row is not None  # an aggregate always has a row
            nanos += int(cast(int, row[0]))  # coalesce() is typed `object`
            high = max(high, int(cast(int, row[1])))
        return nanos, high
