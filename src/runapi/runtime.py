"""The composition root: the running gateway, built from settings, started, stopped.

`Gateway(settings)` builds every part once per process (stores, caches, holds, the settlement
writer, providers, the services the edges call, the task runtime); `start()` opens pools and
starts background work, `stop()` drains and closes it all; `apply_change()` and `announce()`
keep every instance's caches in step. The edges get this object; the pipeline sees it through
`pipeline.CallServices`, the task runtime through `tasks.TaskHost`. No module globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

from runapi.accounting import (
    CreditGuard,
    SettlementJournal,
    SettlementWriter,
    create_credit_guard,
    journal_directory,
)
from runapi.catalog import ModelEntry
from runapi.config import ConfigError, Settings
from runapi.health import (
    DeploymentHealth,
    HealthReport,
    ModelHealth,
    deployment_status,
    model_status,
)
from runapi.limits import Clock, LimitControl, create_limit_control
from runapi.media.runtime import MediaRuntime
from runapi.metrics import Metrics
from runapi.pipeline import (
    Authenticator,
    CircuitBreakers,
    FailedAuthGuard,
    RedisFailedAuthGuard,
    deployment_key,
    deployments_for,
    fallback_models,
)
from runapi.providers import AnthropicProvider, Deployment, OpenAICompatible, Provider
from runapi.services import (
    AccountService,
    FeedbackService,
    ResponseService,
    UsageService,
)
from runapi.stalls import StallWatch
from runapi.storage import (
    AccountStore,
    AutoPipeline,
    Change,
    ChangeBus,
    ChangeProbe,
    FeedbackStore,
    IdleGate,
    Ledger,
    ResponseStore,
    Settlement,
    check_schema,
    create_engine,
    create_settlement_sink,
    poll,
    read_epoch,
    redis_client,
    sqlite_file,
    stop_task,
)
from runapi.tasks import TaskRuntime
from runapi.transport import Timeouts, UpstreamClient

log = logging.getLogger("runapi.gateway")



class Gateway:
    def __init__(self, settings: Settings, *, clock: Clock = time.time,
                 health_clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.server = settings.server
        self.catalog = settings.catalog
        self.engine = create_engine(settings.database_url)
        account_store = AccountStore(self.engine)
        self.ledger = Ledger(self.engine)
        self.response_store = ResponseStore(self.engine)  # stored `/v1/responses` answers, written in the background
        server = settings.server
        guard = (RedisFailedAuthGuard(redis_client(settings.redis_url), server.auth_failures_per_minute,
                                      server.auth_lockout) if settings.redis_url else
                 FailedAuthGuard(server.auth_failures_per_minute, server.auth_lockout))
        self.auth = Authenticator(account_store, guard)
        # One client and one auto-pipeline for the hot path's Redis calls (admissions, their releases, hold
        # closings): the calls of one loop turn share a write, whichever component made them.
        self.redis = redis_client(settings.redis_url) if settings.redis_url else None
        redis = AutoPipeline(self.redis) if self.redis is not None else None
        self.credit: CreditGuard = create_credit_guard(self.ledger, redis)
        self.changes = ChangeBus(redis_client(settings.redis_url), self.apply_change) if settings.redis_url else None
        self.metrics = Metrics()
        self.stalls = StallWatch(self.metrics.registry, settings.server.loop_lag_probe)
        self.health = ModelHealth(health_clock)  # health windows and circuits share the monotonic clock
        self.circuits = CircuitBreakers(server.circuit_failures, server.circuit_cooldown, health_clock,
                                        accounts=server.circuit_accounts, window=server.circuit_window,
                                        failure_rate=server.circuit_failure_rate)
        self.limits: LimitControl = create_limit_control(settings.tiers, self.engine, redis, clock,
                                                         server.spend_reload_interval)
        self.settlement_sink = create_settlement_sink(settings.database_url, self.ledger)
        self.change_probe = ChangeProbe(sqlite_file(settings.database_url))  # for the idle pollers
        directory = journal_directory(settings.server.settlement_journal, settings.database_url)
        self.settlements = SettlementWriter(self.settlement_sink, observers=[self._observe],
                                            journal=SettlementJournal(directory) if directory else None)
        self.metrics.pending_settlements.set_function(lambda: self.settlements.pending)
        self.accounts = AccountService(account_store, self.ledger, self.credit, self.limits.tiers, self.engine,
                                       self.settlements, self.announce)
        self.usage = UsageService(self.engine, self.ledger, self.limits, self.settlements)
        self.feedback = FeedbackService(FeedbackStore(self.engine), self.settlements)
        self.responses = ResponseService(self.response_store)
        self.rng = random.Random()
        self.deployments: dict[str, list[Deployment]] = {
            entry.id: deployments_for(entry, self.catalog, settings.provider_keys)
            for entry in self.catalog.models.values()
        }
        try:  # each model's fallbacks, resolved once (a bad name fails the start)
            self.fallbacks = {entry.id: fallback_models(entry, self.catalog) for entry in self.catalog.models.values()}
        except ValueError as exc:
            raise ConfigError(f"catalog: {exc}") from exc
        server = settings.server
        self.timeouts = Timeouts(connect=server.connect_timeout, first_byte=server.first_byte_timeout,
                                 idle=server.idle_timeout, max_response_bytes=server.max_response_bytes)
        self._upstream: UpstreamClient | None = None
        self._providers: dict[str, Provider] = {}
        self._poller: asyncio.Task[None] | None = None
        self.epoch_seen: int | None = None  # the cache epoch this instance last read (observable by tests)
        self.media = MediaRuntime(settings)  # the media store: started after the rest, stopped before it
        self.tasks = TaskRuntime(self)  # started after the rest, stopped before it
        self._tasks_started = False

    async def start(self) -> None:
        """Check the schema, open the upstream connection pool, start background tasks."""
        await check_schema(self.engine)
        self._upstream = UpstreamClient(keepalive=60.0)
        self._providers = {"openai": OpenAICompatible(self._upstream, self.timeouts),
                           "anthropic": AnthropicProvider(self._upstream, self.timeouts)}
        self._poller = asyncio.get_running_loop().create_task(self._poll_epoch(), name="epoch-poller")
        self.stalls.start()
        if self.changes is not None:
            self.changes.start()
        await self._recover_journal()
        self.settlements.start()
        self.response_store.start()
        try:
            await self.media.start(self.engine)
            try:
                await self.tasks.start()
            except BaseException:
                await self.media.stop()
                raise
        except BaseException:
            await self._stop_gateway()
            raise
        self._tasks_started = True

    async def _recover_journal(self) -> None:
        """Commit the settlements a killed process journaled but had not committed (exactly once:
        the sink skips generations already written), and refresh every instance's view of those accounts."""
        journal = self.settlements.journal
        if journal is None:
            return
        recovered = await journal.recover(self.settlement_sink)
        for account_id in sorted({s.generation.account_id for s in recovered}):
            await self.announce(Change("account", account_id))

    async def stop(self) -> None:
        """Write every pending settlement, then close pools. Every step runs even if an earlier one
        fails (a pool left open leaks its connections); a failure is raised at the end."""
        try:
            if self._tasks_started:
                try:
                    await self.tasks.stop()
                finally:
                    await self.media.stop()
        finally:
            await self._stop_gateway()

    async def _stop_gateway(self) -> None:
        await stop_task(self._poller)
        await self.stalls.stop()
        async with contextlib.AsyncExitStack() as steps:  # run last-pushed first
            steps.push_async_callback(self.engine.dispose)
            steps.push_async_callback(self.response_store.close)
            if self._upstream is not None:
                steps.push_async_callback(self._upstream.close)
            if self.redis is not None:
                steps.push_async_callback(self.redis.aclose)  # after the limiter and the credit guard
            steps.push_async_callback(self.auth.guard.close)
            steps.push_async_callback(self.limits.close)
            if self.changes is not None:
                steps.push_async_callback(self.changes.close)
            steps.push_async_callback(self.credit.close)
            steps.callback(self.change_probe.close)
            steps.push_async_callback(self.settlement_sink.close)
            if self.settlements.journal is not None:
                steps.callback(self.settlements.journal.close)
            steps.push_async_callback(self.settlements.close)

    def _observe(self, settlement: Settlement) -> None:
        row = settlement.generation
        self.metrics.observe(row, settlement.charge_nanos)
        if row.status != "cancelled" and row.provider:
            ok = row.status == "succeeded"
            self.health.observe(row.model, ok, row.latency_ms, row.ttft_ms)
            self.health.observe(f"{row.model}@{row.provider}:{row.upstream_model}", ok, row.latency_ms, row.ttft_ms)

    def model_health(self, entry: ModelEntry) -> tuple[str, HealthReport, list[DeploymentHealth]]:
        """(status, the model's own window, each deployment's window and circuit) from real traffic."""
        report = self.health.report(entry.id)
        deployments = []
        for deployment in self.deployments[entry.id]:
            key = deployment_key(deployment)
            deployments.append(deployment_status(deployment.provider_name, deployment.upstream_model,
                                                 self.health.report(key), self.circuits.state(key)))
        return model_status(report, deployments), report, deployments

    def provider_for(self, deployment: Deployment) -> Provider:
        return self._providers[deployment.provider.protocol]

    def model(self, name: str) -> ModelEntry | None:
        return self.catalog.resolve(name)

    async def announce(self, change: Change) -> None:
        """Apply a change to this process's caches now, and tell every other instance (Redis pub/sub).
        Instances that miss the message follow the cache epoch, which the change's writer bumped."""
        self.apply_change(change)
        if self.changes is not None:
            await self.changes.publish(change)

    def apply_change(self, change: Change) -> None:
        if change.kind == "key":
            self.auth.forget_key(change.id)
        elif change.kind == "account":
            self.auth.forget_account(change.id)
            self.credit.invalidate(change.id)
        else:
            self.auth.clear()
            self.credit.invalidate()
            self.limits.invalidate()

    async def _poll_epoch(self) -> None:
        # Only bumps (commits) move the epoch: read it after a commit.
        gate = IdleGate(self.change_probe, max_idle=self.server.idle_poll_max)
        last: int | None = None  # the epoch last read

        async def look() -> None:
            nonlocal last
            epoch = await read_epoch(self.engine)
            if last is not None and epoch != last:  # something changed, somewhere: forget everything
                self.apply_change(Change("all"))
            last = self.epoch_seen = epoch
            gate.idle()

        # Nothing in this process wakes it early: its own changes are applied where they are made.
        await poll(gate, asyncio.Event(), self.server.epoch_poll_interval, look,
                   lambda: log.warning("could not read the cache epoch", exc_info=True))
