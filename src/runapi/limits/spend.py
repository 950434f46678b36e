"""Spend caps: a key's lifetime and monthly caps, and its account tier's monthly cap.

A call is admitted only if, for every cap that applies, `spent + held + max cost ≤ cap`:
what was charged (Σ charges in the ledger), plus the most every call still in flight may
cost, plus the most this call may cost. A key stops at its cap; only a call that costs more
than its hold (its prompt tokenised to more than the estimate) can pass it, by that excess.
Spent amounts are cached per scope, with the highest ledger ID they include, so admission
needs no database round trip once warm; settlements add their charges, and caches are
reloaded on a cache-epoch change and every `reload_s` (so charges made by other instances
are seen).
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
from runapi.storage import WRITEOFF_SUFFIX, generations, ledger, read_one, reader

RELOAD_S = 30.0  # the default of `[server] spend_reload_interval`
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
    __slots__ = ("nanos", "high_id", "loaded_at")

    def __init__(self, nanos: int, high_id: int, loaded_at: float) -> None:
        self.nanos = nanos
        self.high_id = high_id  # highest ledger entry reflected in `nanos`
        self.loaded_at = loaded_at


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

    async def reserve(self, caps: list[Cap], amount: int) -> SpendHold:
        """Count `amount` against every cap, or raise `BudgetExceeded` naming the first one it would pass."""
        spent: dict[Scope, _Spent] = {}
        for cap in caps:  # a fresh cached total needs no coroutine
            spent[cap.scope] = self._fresh(cap.scope) or await self._current(cap.scope)
        held = self._held
        for cap in caps:  # no await from here on: check and count atomically
            scope = cap.scope
            used = spent[scope].nanos + held.get(scope, 0)
            if used + amount > cap.limit_nanos:
                left = max(0, cap.limit_nanos - used)
                raise BudgetExceeded(
                    f"This call may cost up to ${nanos_to_usd(amount)}, but {_MESSAGES[cap.kind]} of "
                    f"${nanos_to_usd(cap.limit_nanos)} has ${nanos_to_usd(left)} left "
                    f"(${nanos_to_usd(spent[scope].nanos)} spent, ${nanos_to_usd(held.get(scope, 0))} held "
                    "by calls in flight). Lower max_tokens, or ask the operator to raise the cap.",
                    code=f"{cap.kind}_exceeded",
                )
        scopes = tuple([cap.scope for cap in caps])
        for scope in scopes:
            held[scope] += amount
        return SpendHold(scopes, amount)

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

    def _fresh(self, scope: Scope) -> _Spent | None:
        """The cached total of `scope` if it was loaded less than `reload_s` ago."""
        cached = self._spent.get(scope)
        return cached if cached is not None and time.monotonic() - cached.loaded_at < self._reload_s else None

    async def _current(self, scope: Scope) -> _Spent:
        cached = self._fresh(scope)
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
                current = self._spent[scope] = _Spent(nanos, high_id, time.monotonic())
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
        # What was paid: charges less their write-offs (the part a balance could not cover, `ledger.py`).
        query = sa.select(sa.func.coalesce(sa.func.sum(-ledger.c.amount_nanos), 0),
                          sa.func.coalesce(sa.func.max(ledger.c.id), 0)).where(ledger.c.kind.in_(("charge", "writeoff")))
        if kind == "key":
            of_generation = sa.or_(ledger.c.generation_id == generations.c.id,
                                   ledger.c.generation_id == generations.c.id + WRITEOFF_SUFFIX)
            query = query.select_from(ledger.join(generations, of_generation)).where(generations.c.key_id == owner)
        else:
            query = query.where(ledger.c.account_id == owner)
        if month is not None:
            start, end = month_bounds(month)
            query = query.where(ledger.c.created_at >= start, ledger.c.created_at < end)
        row = await read_one(self._engine, query)
        assert row is not None  # an aggregate always has a row
        return int(cast(int, row[0])), int(cast(int, row[1]))  # coalesce() is typed `object`
