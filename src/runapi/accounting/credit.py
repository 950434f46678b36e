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
import logging
from typing import NamedTuple, Protocol

from runapi.errors import InsufficientCredit
from runapi.money import nanos_to_usd
from runapi.storage import Ledger, Rider, Settlement, balance_snapshot, stop_task

log = logging.getLogger("runapi.credit")


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

    def charges_by_others(self, account_id: str, rider: Rider | None = None) -> Others | None:
        """What other processes have charged the account, as far as this guard knows (the spend caps
        re-read their totals when it moves; `rider`: this call's, whose reply is the newest news), or
        None when it does not know. A value is comparable only with one of the same `era`; within an
        era, `charged` only grows, less a dip while this process's own charges are on their way."""

    async def available(self, account_id: str) -> int:
        """Balance minus open holds."""

    async def close(self) -> None:
        """Stop background work (after the settlement writer has drained)."""


class Others(NamedTuple):
    """`CreditGuard.charges_by_others`: Σ charges by other processes in `era` (a Redis lifetime)."""

    era: str
    charged: int


NO_OTHERS = Others("", 0)  # one process alone charges its accounts (`MemoryCreditGuard`)


def insufficient_credit(amount: int, free: int) -> InsufficientCredit:
    return InsufficientCredit(f"This call may cost up to ${nanos_to_usd(amount)} but the account has "
                              f"${nanos_to_usd(free)} available. Add credit or lower max_tokens.")


class _Account:
    """One account's credit state in this process (see `MemoryCreditGuard`)."""

    __slots__ = ("balance", "held", "charged", "charged_total", "loaded_at", "stale_at", "lock", "compacting")

    def __init__(self) -> None:
        self.balance: int | None = None  # Σ ledger in the last snapshot read (None: never read)
        self.held = 0  # Σ open holds
        self.charged: dict[int, int] = {}  # ledger ID → charge committed, not known to be in `balance`
        self.charged_total = 0  # Σ charged
        self.loaded_at = -1  # tick at which the last installed snapshot's read began
        self.stale_at = 0  # tick of the last invalidation: a snapshot read before it may miss a top-up
        self.lock = asyncio.Lock()  # snapshots are read one at a time, each newer than the last
        self.compacting = False

    def free(self) -> int:
        assert self.balance is not None
        return self.balance - self.charged_total - self.held


class MemoryCreditGuard:
    """Holds in this process's memory; correct for a single gateway process.

    Per account it keeps what `RedisCreditGuard` keeps in Redis: `balance` (Σ ledger in the last
    snapshot read), `held` (Σ open holds) and `charged` (ledger ID → charge committed since, not
    known to be in `balance`); available credit is `balance − charged − held`. Why that never
    exceeds the truth, by construction:

    - a charge is committed while its hold is open, and the hold (≥ the charge) is closed only in
      the same step that adds the charge to `charged`: at every instant the charge is counted once
      or twice, never zero times;
    - a `charged` entry is dropped only by a snapshot that reports including it
      (`balance_snapshot` reads the sum and the membership of those IDs in one statement);
    - snapshots are read one at a time per account (a lock), so each installed one is newer than
      the last: an older snapshot never replaces a newer one;
    - negative entries other than charges (adjustments) are taken as holds first (`Gateway.add_credit`).

    So `balance − charged` is at most the committed balance, every open hold bounds its charge,
    and a hold is granted only while `balance − charged − held ≥ amount`: the balance never goes
    below zero. An invalidation (a top-up, a tier change, anything) only forces the next hold to
    read a newer snapshot; it never forgets a hold or a charge.
    """

    def __init__(self, ledger: Ledger, *, compact_at: int = 256) -> None:
        self._ledger = ledger
        self._accounts: dict[str, _Account] = {}
        self._tick = 0  # orders snapshot reads and invalidations
        self._stale_all_at = 0  # tick of the last invalidation of every account
        self._compact_at = compact_at
        self._background: set[asyncio.Task[None]] = set()

    def _account(self, account_id: str) -> _Account:
        account = self._accounts.get(account_id)
        if account is None:
            account = self._accounts[account_id] = _Account()
        return account

    def _fresh(self, account: _Account) -> bool:
        return account.balance is not None and account.loaded_at > max(account.stale_at, self._stale_all_at)

    def _next_tick(self) -> int:
        self._tick += 1
        return self._tick

    async def _read(self, account_id: str, account: _Account, newer_than: int) -> None:
        """Install a snapshot whose read began after tick `newer_than` (unless one already was)."""
        async with account.lock:
            if account.loaded_at > newer_than:
                return  # another caller read one meanwhile
            began = self._next_tick()
            ids = list(account.charged)
            total, included = await balance_snapshot(self._ledger.engine, account_id, ids)
            for ledger_id in included:
                charge = account.charged.pop(ledger_id, None)
                if charge is not None:
                    account.charged_total -= charge
            account.balance = total
            account.loaded_at = began

    async def reserve(self, account_id: str, amount: int) -> Hold:
        account = self._account(account_id)
        if not self._fresh(account):
            await self._read(account_id, account, max(account.stale_at, self._stale_all_at))
        if account.free() < amount:
            await self._read(account_id, account, self._next_tick())  # a top-up may have landed meanwhile
            if account.free() < amount:
                raise insufficient_credit(amount, max(0, account.free()))
        account.held += amount  # no await since the check: checked and taken at once
        return Hold(account_id, amount)

    def rider(self, account_id: str, amount: int) -> Rider | None:
        return None  # in memory, `reserve` costs no round trip

    def take(self, rider: Rider) -> Hold | None:
        return None

    def cap_charge(self, hold: Hold, cost: int) -> int:
        if cost <= hold.amount or not hold.open:
            return min(cost, hold.amount)
        account = self._account(hold.account_id)
        free = 0 if account.balance is None else max(0, account.free())
        charge = min(cost, hold.amount + free)
        account.held += charge - hold.amount
        hold.amount = charge
        return charge

    def shrink(self, hold: Hold, charge: int) -> None:
        if hold.open and charge < hold.amount:
            self._account(hold.account_id).held -= hold.amount - charge
            hold.amount = charge

    async def cover_overrun(self, hold: Hold, settlement: Settlement) -> None:
        """Nothing to do: `cap_charge` already charged min(cost, hold + free balance), exactly."""

    def charged(self, hold: Hold, charge: int, ledger_id: int) -> None:
        account = self._account(hold.account_id)
        if charge > 0 and ledger_id not in account.charged:
            account.charged[ledger_id] = charge
            account.charged_total += charge
        self._close(hold)
        if len(account.charged) >= self._compact_at and not account.compacting:
            self._compact(hold.account_id, account)

    def release(self, hold: Hold) -> None:
        self._close(hold)

    def _close(self, hold: Hold) -> None:
        if hold.open:
            hold.open = False
            self._account(hold.account_id).held -= hold.amount

    def _compact(self, account_id: str, account: _Account) -> None:
        """Read a snapshot in the background, dropping the `charged` entries it includes."""
        account.compacting = True

        async def compact() -> None:
            try:
                await self._read(account_id, account, self._next_tick())
            finally:
                account.compacting = False

        task = asyncio.get_running_loop().create_task(compact(), name=f"credit-compact-{account_id}")
        self._background.add(task)
        task.add_done_callback(self._compacted)

    def _compacted(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("background credit read failed: %s", task.exception())

    def invalidate(self, account_id: str | None = None) -> None:
        if account_id is None:
            self._stale_all_at = self._next_tick()
        else:
            account = self._accounts.get(account_id)
            if account is not None:
                account.stale_at = self._next_tick()
        self._forget_idle()

    def charges_by_others(self, account_id: str, rider: Rider | None = None) -> Others | None:
        return NO_OTHERS  # holds in this process's memory: no other process charges its accounts

    def _forget_idle(self) -> None:
        """Drop the state of accounts with nothing held, charged or being read (bounded memory)."""
        if len(self._accounts) < 10_000:
            return
        for account_id, account in list(self._accounts.items()):
            if not account.held and not account.charged and not account.lock.locked():
                del self._accounts[account_id]

    async def available(self, account_id: str) -> int:
        account = self._account(account_id)
        await self._read(account_id, account, self._next_tick())
        return account.free()

    async def close(self) -> None:
        for task in list(self._background):
            await stop_task(task)
