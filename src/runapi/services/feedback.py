"""Quality reports on generations: filed by customers, read by operators."""

from __future__ import annotations

from collections.abc import Iterable

from runapi.accounting import SettlementWriter
from runapi.storage import Feedback, FeedbackReport, FeedbackStore


class FeedbackService:
    def __init__(self, store: FeedbackStore, settlements: SettlementWriter) -> None:
        self._store = store
        self._settlements = settlements

    async def submit(self, account_id: str, key_id: str | None, generation_id: str, category: str,
                     comment: str) -> tuple[Feedback, bool]:
        """File (or update) the caller's report on one of its generations: (report, created)."""
        await self._settlements.flush()  # a generation answered a moment ago may not be committed yet
        return await self._store.submit(account_id, key_id, generation_id, category, comment)

    async def for_generations(self, account_id: str, generation_ids: Iterable[str]) -> dict[str, Feedback]:
        return await self._store.for_generations(account_id, generation_ids)

    async def reports(self, model: str | None = None, limit: int = 100) -> list[FeedbackReport]:
        await self._settlements.flush()
        return await self._store.reports(model, limit)
