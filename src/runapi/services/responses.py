"""Stored `/v1/responses` answers, as their own account reads and deletes them."""

from __future__ import annotations

from runapi.errors import NotFound
from runapi.storage import ResponseStore, StoredResponse


class ResponseService:
    def __init__(self, store: ResponseStore) -> None:
        self._store = store

    async def own(self, account_id: str, response_id: str) -> StoredResponse:
        """One of the account's stored responses; `NotFound` for another account's, as for one that does
        not exist. Waits for the responses this process answered and has not written yet."""
        await self._store.flush()
        stored = await self._store.get(account_id, response_id)
        if stored is None:
            raise NotFound(f"Response with id '{response_id}' not found.", param="response_id",
                           code="response_not_found")
        return stored

    async def delete(self, account_id: str, response_id: str) -> bool:
        return await self._store.delete(account_id, response_id)
