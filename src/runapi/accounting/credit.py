"""Credit holds: reserve the most a call can cost before it runs, settle or release after.

`CreditGuard` is the seam; `MemoryCreditGuard` serves one process (the embedded default),
`credit_redis.RedisCreditGuard` any number of instances sharing Redis.
It caches each account's committed balance (Σ ledger) and the sum of in-flight holds,
so admission costs no database round trip once an account is warm. Balance can never
go below zero: a hold is only granted when `balance − held ≥ amount`, and a charge never
exceeds its hold plus the account's free balance at settlement.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Protocol

from runapi.accounting.money import nanos_to_usd
from runapi.errors import InsufficientCredit
from runapi.limits.rates import Rider
from runapi.storage import Ledger, Settlement


class Hold:
    """Credit reserved for one call. `amount` may grow once, at settlement (see `cap_charge`
    and `CreditGuard.cover_overrun`)."""

    __slots__ = ("account_id", "amount", "open")

    def __init__(self, account_id: str, amount: int) -> None:
        self.account_id = account_id
        self.amount = amount
        self.open = True


class CreditGuard(Protocol):
    async def reserve(self, account_id: str, amount: int) -> Hold:
        """Reserve `amount` nano-dollars or raise `InsufficientCredit`."""

    def rider(self, account_id: str, amount: int) -> Rider | None:
        """The hold as a script for the rate limiter's admission round trip (`limits.Rider`), or None
        when this guard has none or the account is not warm (then call `reserve`)."""

    def take(self, rider: Rider) -> Hold | None:
        """The hold the rider got, now this guard's to close; None if it got none (then call `reserve`,
        which also reports a short balance)."""

    def cap_charge(self, hold: Hold, cost: int) -> int:
        """The charge to write for `cost`: at most the hold plus the free balance."""

    def shrink(self, hold: Hold, charge: int) -> None:
        """The call's settlement is durable (journaled) and will charge `charge`: hold only that until
        the commit closes the hold. A guard may keep the whole hold instead (conservative)."""

    async def cover_overrun(self, hold: Hold, settlement: Settlement) -> None:
        """Raise a charge that `cap_charge` capped below its generation's cost, before it is written.

        Called by the settlement writer only when `settlement.charge_nanos` is below
        `settlement.generation.cost_nanos`; grows `hold` (and the charge) by at most the account's
        free balance, so the balance still never goes below zero. Never raises: when the extra
        credit can't be had, the capped charge stands.
        """

    def charged(self, hold: Hold, charge: int, ledger_id: int) -> None:
        """The charge is committed in the ledger (as entry `ledger_id`): close the hold."""

    def release(self, hold: Hold) -> None:
        """Nothing was charged: close the hold."""

    def invalidate(self, account_id: str | None = None) -> None:
        """Forget cached balances (one account, or all) so they are read again."""

    async def available(self, account_id: str) -> int:
        """Balance minus open holds."""

    async def close(self) -> None:
        """Stop background work (after the settlement writer has drained)."""


def insufficient_credit(amount: int, free: int) -> InsufficientCredit:
    return InsufficientCredit(f"This call may cost up to ${nanos_to_usd(amount)} but the account has "
                              f"${nanos_to_usd(free)} available. Add credit or lower max_tokens.")


class _Balance:
    __slots__ = ("nanos", "high_id")

    def __init__(self, nanos: int, high_id: int) -> None:
        self.nanos = nanos
        self.high_id = high_id  # highest ledger entry reflected in `nanos`


class MemoryCreditGuard:
    """Holds in this process's memory; correct for a single gateway process."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._balances: dict[str, _Balance] = {}
        self._held: defaultdict[str, int] = defaultdict(int)
        self._loading: dict[str, asyncio.Future[_Balance]] = {}

    async def _load(self, account_id: str) -> _Balance:
        pending = self._loading.get(account_id)
        if pending is not None:  # one query at a time per account
            return await asyncio.shield(pending)
        future: asyncio.Future[_Balance] = asyncio.get_running_loop().create_future()
        self._loading[account_id] = future
        try:
            nanos, high_id = await self._ledger.balance(account_id)
            current = self._balances.get(account_id)
            if current is None or high_id >= current.high_id:
                current = self._balances[account_id] = _Balance(nanos, high_id)
            future.set_result(current)
            return current
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it
            raise
        finally:
            del self._loading[account_id]

    async def reserve(self, account_id: str, amount: int) -> Hold:
        balance = self._balances.get(account_id) or await self._load(account_id)
        if balance.nanos - self._held[account_id] < amount:
            balance = await self._load(account_id)  # a top-up may have landed meanwhile
            if balance.nanos - self._held[account_id] < amount:
                free = max(0, balance.nanos - self._held[account_id])
                raise insufficient_credit(amount, free)
        self._held[account_id] += amount
        return Hold(account_id, amount)

    def rider(self, account_id: str, amount: int) -> Rider | None:
        return None  # in memory, `reserve` costs no round trip

    def take(self, rider: Rider) -> Hold | None:
        return None

    def cap_charge(self, hold: Hold, cost: int) -> int:
        if cost <= hold.amount:
            return cost
        balance = self._balances.get(hold.account_id)
        free = 0 if balance is None else max(0, balance.nanos - self._held[hold.account_id])
        charge = min(cost, hold.amount + free)
        self._held[hold.account_id] += charge - hold.amount
        hold.amount = charge
        return charge

    def shrink(self, hold: Hold, charge: int) -> None:
        if hold.open and charge < hold.amount:
            self._held[hold.account_id] -= hold.amount - charge
            hold.amount = charge

    async def cover_overrun(self, hold: Hold, settlement: Settlement) -> None:
        """Nothing to do: `cap_charge` already charged min(cost, hold + free balance), exactly."""

    def charged(self, hold: Hold, charge: int, ledger_id: int) -> None:
        self._close(hold)
        balance = self._balances.get(hold.account_id)
        if balance is not None and ledger_id > balance.high_id:
            balance.nanos -= charge
            balance.high_id = ledger_id

    def release(self, hold: Hold) -> None:
        self._close(hold)

    def _close(self, hold: Hold) -> None:
        if hold.open:
            hold.open = False
            self._held[hold.account_id] -= hold.amount

    def invalidate(self, account_id: str | None = None) -> None:
        if account_id is None:
            self._balances.clear()
        else:
            self._balances.pop(account_id, None)

    async def available(self, account_id: str) -> int:
        balance = await self._load(account_id)
        return balance.nanos - self._held[account_id]

    async def close(self) -> None:
        pass
