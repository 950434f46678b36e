"""One owner for a call's holds: the rate ticket, the spend hold and the credit hold.

`Reservation.open()` takes all three before the upstream is called, or none: each step notes its
undo, and a refusal or a failure at any step runs the undos of the steps before it, last first. The settlement
writer then closes the reservation with the settlement (`accounting.Closing`):

- `journaled`: the settlement is durable but not committed: the call's slot is freed and its
  tokens/min corrected; the credit and spend holds shrink to the charge;
- `committed`: the charge is in the ledger: it replaces the credit hold, counts toward the spend
  caps, and everything is closed;
- `release()`: the call ends without a settlement (or before one was submitted): all is given back.

Every close is idempotent: a reservation is closed once, whichever way comes first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from runapi.accounting import CreditGuard, Hold
from runapi.limits import Admission, Caller, LimitControl, RateLimitStatus
from runapi.storage import Rider, Settlement

__all__ = ["Reservation"]


class Reservation:
    """The holds of one admitted call, opened together and closed together."""

    __slots__ = ("hold", "admission", "_credit")

    def __init__(self, credit: CreditGuard, hold: Hold, admission: Admission) -> None:
        self.hold = hold
        self.admission = admission
        self._credit = credit

    @classmethod
    async def open(cls, credit: CreditGuard, limits: LimitControl, caller: Caller, model_id: str, *,
                   prompt_tokens: int, output_tokens: int, max_cost_nanos: int) -> Reservation:
        """Admit the call (rate limits, spend caps) and hold `max_cost_nanos` of credit, or raise the
        first refusal (`PermissionDenied`, `RateLimited`, `BudgetExceeded`, `InsufficientCredit`) with
        nothing left held."""
        undo: list[Callable[[], None]] = []  # what to give back if a later step refuses, last first
        try:
            rider = credit.rider(caller.account_id, max_cost_nanos)  # the hold, in the limiter's round trip
            if rider is not None:
                undo.append(lambda: _release_ridden(credit, rider))  # admitted with its hold, then refused
            admission = await limits.admit(caller, model_id, prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                                           max_cost_nanos=max_cost_nanos, rider=rider,
                                           others=lambda: credit.charges_by_others(caller.account_id, rider))
            undo.append(admission.close)
            hold = credit.take(rider) if rider is not None else None
            if hold is None:  # no rider, or it got no hold: `reserve` loads, waits or says why not
                hold = await credit.reserve(caller.account_id, max_cost_nanos)
                admission.follow(credit.charges_by_others(caller.account_id))  # a cold account's first news
        except BaseException:
            for step in reversed(undo):
                step()
            raise
        return cls(credit, hold, admission)

    @property
    def status(self) -> RateLimitStatus | None:
        """What the `x-ratelimit-*` headers report for this call."""
        return self.admission.status

    def cap_charge(self, cost_nanos: int) -> int:
        """The charge to write for `cost_nanos`: at most the credit hold plus the free balance."""
        return self._credit.cap_charge(self.hold, cost_nanos)

    async def cover_overrun(self, settlement: Settlement) -> None:
        """Raise a charge capped below its cost as far as the free balance allows (never raises)."""
        await self._credit.cover_overrun(self.hold, settlement)

    def journaled(self, settlement: Settlement) -> None:
        """The settlement is durable: free the call's slot; hold only its charge until the commit."""
        self._credit.shrink(self.hold, settlement.charge_nanos)
        self.admission.finished(settlement)

    def committed(self, settlement: Settlement) -> None:
        """The settlement is committed (`ledger_id` None: nothing was charged): close everything."""
        if settlement.ledger_id is None:
            self._credit.release(self.hold)
        else:
            self._credit.charged(self.hold, settlement.charge_nanos, settlement.ledger_id)
        self.admission.settled(settlement)

    def kept_in_ledger(self, ledger_id: int, key_id: str, moment: datetime) -> None:
        """The credit hold was written to the ledger as entry `ledger_id` at `moment` (a video's durable
        `hold` entry): count it as committed, as a charge is, toward the balance and the key's and
        tier's spend caps, and close the rest (the call's slot)."""
        amount = self.hold.amount
        self._credit.charged(self.hold, amount, ledger_id)
        self.admission.kept_in_ledger(key_id, self.hold.account_id, amount, ledger_id, moment)

    def release(self) -> None:
        """The call ends without a settlement: give everything back."""
        self._credit.release(self.hold)
        self.admission.close()


def _release_ridden(credit: CreditGuard, rider: Rider) -> None:
    """Give back the hold a rider got, if it got one and nobody took it."""
    if (taken := credit.take(rider)) is not None:
        credit.release(taken)
