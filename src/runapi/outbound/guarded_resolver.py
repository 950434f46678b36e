"""The aiohttp resolver of the guarded sessions (webhook deliveries, media downloads): the address
connected to is the address `CallbackGuard` checked. Its own module, so that aiohttp (8 MiB) is imported
where such a session is first opened, not by every gateway process."""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from runapi.outbound.callback_guard import CallbackGuard


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses (raises `CallbackRefused`) when any address is not allowed."""

    def __init__(self, guard: CallbackGuard) -> None:
        self._guard = guard
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            self._guard.check_address(result["host"], host)
        return results

    async def close(self) -> None:
        await self._inner.close()
