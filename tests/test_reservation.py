"""A call's `Reservation` (issue 22): the rate ticket, the spend hold and the credit hold are taken
together or not at all, and closed together."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runapi.accounting.credit import MemoryCreditGuard
from runapi.errors import BudgetExceeded, InsufficientCredit, RateLimited
from runapi.limits import LimitControl, build_tiers, create_limit_control
from runapi.pipeline.auth import Principal
from runapi.pipeline.reservation import Reservation
from runapi.storage import KeyLimits
from tests.test_settlement_sink import Store, open_store

FUNDS = 1_000_000_000  # the store's account: $1


class Parts:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.credit = MemoryCreditGuard(store.ledger)
        self.limits: LimitControl = create_limit_control(build_tiers({}), store.engine)

    def caller(self, **limits: int) -> Principal:
        return Principal("key_r", self.store.account_id, "tier-5", KeyLimits(**limits))  # type: ignore[arg-type]

    async def open(self, caller: Principal, cost: int) -> Reservation:
        return await Reservation.open(self.credit, self.limits, caller, "glm-4.5-air", prompt_tokens=10,
                                      output_tokens=10, max_cost_nanos=cost)


@pytest.fixture()
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    store = await open_store(tmp_path)
    yield Parts(store)
    await store.sqlite.close()
    await store.engine.dispose()


async def test_short_credit_gives_back_the_ticket_and_the_spend_hold(parts: Parts) -> None:
    caller = parts.caller(concurrent_requests=1, spend_cap_nanos=FUNDS * 2)
    with pytest.raises(InsufficientCredit):
        await parts.open(caller, FUNDS + 1)  # admitted, then the credit hold is refused
    # Nothing of the refused call is left: its slot and its spend are free for the next call.
    reservation = await parts.open(caller, FUNDS * 2 - FUNDS)
    assert await parts.credit.available(parts.store.account_id) == 0
    reservation.release()
    assert await parts.credit.available(parts.store.account_id) == FUNDS


async def test_a_refused_admission_holds_no_credit(parts: Parts) -> None:
    caller = parts.caller(spend_cap_nanos=100)
    with pytest.raises(BudgetExceeded):
        await parts.open(caller, 101)
    assert await parts.credit.available(parts.store.account_id) == FUNDS
    busy = parts.caller(concurrent_requests=1)
    first = await parts.open(busy, 10)
    with pytest.raises(RateLimited):
        await parts.open(busy, 10)
    assert await parts.credit.available(parts.store.account_id) == FUNDS - 10
    first.release()
    first.release()  # a second close does nothing
    assert await parts.credit.available(parts.store.account_id) == FUNDS
    (await parts.open(busy, 10)).release()  # the slot is free again
