"""The running gateway: settings, stores, caches, holds, the settlement writer and providers.

Built once per process by `Gateway.start()` and passed to every edge; no module globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random

import aiohttp

from runapi.accounting.credit import CreditGuard, MemoryCreditGuard
from runapi.accounting.settlement import SettlementWriter
from runapi.catalog import ModelEntry
from runapi.config import Settings
from runapi.pipeline.auth import Authenticator
from runapi.pipeline.routing import deployments_for
from runapi.providers import Deployment, OpenAICompatible, Provider, Timeouts
from runapi.health import ModelHealth
from runapi.metrics import Metrics
from runapi.storage import AccountStore, Ledger, Settlement, check_schema, create_engine, read_epoch

log = logging.getLogger("runapi.gateway")

EPOCH_POLL_S = 0.5


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.catalog = settings.catalog
        self.engine = create_engine(settings.database_url)
        self.accounts = AccountStore(self.engine)
        self.ledger = Ledger(self.engine)
        self.auth = Authenticator(self.accounts)
        self.credit: CreditGuard = MemoryCreditGuard(self.ledger)
        self.metrics = Metrics()
        self.health = ModelHealth()
        self.settlements = SettlementWriter(self.ledger, self.credit, observers=[self._observe])
        self.rng = random.Random()
        self.deployments: dict[str, list[Deployment]] = {
            entry.id: deployments_for(entry, self.catalog, settings.provider_keys)
            for entry in self.catalog.models.values()
        }
        server = settings.server
        self.timeouts = Timeouts(connect=server.connect_timeout, first_byte=server.first_byte_timeout,
                                 idle=server.idle_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._providers: dict[str, Provider] = {}
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Check the schema, open the upstream connection pool, start background tasks."""
        await check_schema(self.engine)
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=60)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=True)
        self._providers = {"openai": OpenAICompatible(self._session, self.timeouts)}
        self.settlements.start()
        self._poller = asyncio.get_running_loop().create_task(self._poll_epoch(), name="epoch-poller")

    async def stop(self) -> None:
        """Write every pending settlement, then close pools."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self.settlements.close()
        if self._session is not None:
            await self._session.close()
        await self.engine.dispose()

    def _observe(self, settlement: Settlement) -> None:
        row = settlement.generation
        self.metrics.observe(row, settlement.charge_nanos)
        if row.status != "cancelled" and row.provider:
            ok = row.status == "succeeded"
            self.health.observe(row.model, ok, row.latency_ms, row.ttft_ms)
            self.health.observe(f"{row.model}@{row.provider}:{row.upstream_model}", ok, row.latency_ms, row.ttft_ms)

    def provider_for(self, deployment: Deployment) -> Provider:
        return self._providers[deployment.provider.protocol]

    def model(self, name: str) -> ModelEntry | None:
        return self.catalog.resolve(name)

    async def _poll_epoch(self) -> None:
        last: int | None = None
        while True:
            try:
                epoch = await read_epoch(self.engine)
                if last is not None and epoch != last:
                    self.auth.clear()
                    self.credit.invalidate()
                last = epoch
            except Exception:  # keep polling; the database may come back
                log.warning("could not read the cache epoch", exc_info=True)
            await asyncio.sleep(EPOCH_POLL_S)
