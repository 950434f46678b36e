"""The webhook sender: delivers outbox events signed per Standard Webhooks, with retries.

Each attempt POSTs the event's stored payload with `webhook-id` (the same on every retry, so
a receiver can drop duplicates), `webhook-timestamp` and `webhook-signature` (`v1,<base64
HMAC-SHA256 of "id.timestamp.body">` with the account's secret; during a rotation's grace
period, a second signature with the previous secret). A 2xx answer delivers the event; anything
else (or no answer, or a redirect) is retried after `webhook_backoff × 2^(attempt-1)` seconds
(capped at `webhook_backoff_max`) until `webhook_retry_window` after the event, then the event
is failed. A URL the SSRF guard refuses at delivery time fails at once. Every attempt is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from standardwebhooks.webhooks import Webhook

from runapi.clock import utcnow
from runapi.config import TaskSettings
from runapi.storage import MAX_IDLE_S, ChangeProbe, IdleGate, poll
from runapi.outbound.callback_guard import CallbackGuard, CallbackRefused
from runapi.tasks.records import WebhookEvent
from runapi.tasks.webhook_store import WebhookStore

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("runapi.webhooks")

MAX_IN_FLIGHT = 32
USER_AGENT = "RunAPI-Webhooks/1"


def signature_header(secrets: list[str], msg_id: str, timestamp: datetime, payload: str) -> str:
    """The `webhook-signature` value: one `v1,<sig>` per secret, space-separated."""
    return " ".join(Webhook(secret).sign(msg_id, timestamp, payload) for secret in secrets)


def retry_at(event: WebhookEvent, attempt: int, now: datetime, settings: TaskSettings) -> datetime | None:
    """When to try again after failed attempt number `attempt`, or None once past the retry window."""
    delay = min(settings.webhook_backoff * 2 ** (attempt - 1), settings.webhook_backoff_max)
    at = now + timedelta(seconds=delay)
    return at if at <= event.created_at + timedelta(seconds=settings.webhook_retry_window) else None


class WebhookSender:
    def __init__(self, store: WebhookStore, settings: TaskSettings, guard: CallbackGuard,
                 probe: ChangeProbe | None = None, max_idle: float = MAX_IDLE_S) -> None:
        self.probe = probe or ChangeProbe(None)
        self.max_idle = max_idle  # the database's, when a SQLite file: quiet idle polls
        self.store = store
        self.settings = settings
        self.guard = guard
        self._session: aiohttp.ClientSession | None = None
        self._poller: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._poller = asyncio.get_running_loop().create_task(self._poll(), name="webhook-sender")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop sending. An attempt cut short is not recorded; its lease lapses and it is sent again."""
        tasks = [t for t in (self._poller, *self._in_flight) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _poll(self) -> None:
        gate = IdleGate(self.probe, max_idle=self.max_idle)  # idle on SQLite: query after a commit or a due time
        await poll(gate, self._wake, self.settings.poll_interval, lambda: self._claim(gate),
                   lambda: log.warning("could not claim webhook events", exc_info=True))

    async def _claim(self, gate: IdleGate) -> None:
        """Start deliveries of claimed events, at most `MAX_IN_FLIGHT`; tell `gate` when none was left."""
        while len(self._in_flight) < MAX_IN_FLIGHT:
            event = await self.store.claim(self.settings.webhook_timeout + 30)
            if event is None:
                gate.idle(await self.store.next_due() if gate.watching else None)
                return
            task = asyncio.get_running_loop().create_task(self._deliver(event), name=f"webhook {event.id}")
            self._in_flight.add(task)
            task.add_done_callback(self._done)
        gate.busy()  # at the limit: a finishing delivery wakes the poller

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._wake.set()

    def _open_session(self) -> aiohttp.ClientSession:
        """The pooled session, opened by the first delivery: aiohttp stays out of a process that sends none."""
        import aiohttp

        from runapi.outbound.guarded_resolver import GuardedResolver

        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.guard), use_dns_cache=False, limit=MAX_IN_FLIGHT)
        self._session = aiohttp.ClientSession(connector=connector,
                                              timeout=aiohttp.ClientTimeout(total=self.settings.webhook_timeout))
        return self._session

    async def _deliver(self, event: WebhookEvent) -> None:
        import aiohttp

        session = self._session or self._open_session()
        status: int | None = None
        error: str | None = None
        refused = False
        started = time.perf_counter()
        try:
            await self.guard.check(event.url)  # IP literals bypass the resolver; hostnames are checked twice
            secrets = await self.store.signing_secrets(event.account_id)
            now = datetime.now(UTC)
            headers = {"webhook-id": event.id, "webhook-timestamp": str(int(now.timestamp())),
                       "webhook-signature": signature_header(secrets, event.id, now, event.payload),
                       "content-type": "application/json", "user-agent": USER_AGENT}
            async with session.post(event.url, data=event.payload.encode(), headers=headers,
                                          allow_redirects=False) as response:
                status = response.status
                await response.content.read(64 * 1024)  # the receiver's answer is not used
        except CallbackRefused as exc:
            refused, error = True, exc.message
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except Exception as exc:  # a delivery bug must not stop the sender
            log.exception("webhook %s: delivery failed", event.id)
            error = f"{type(exc).__name__}"
        duration_ms = (time.perf_counter() - started) * 1000
        delivered = status is not None and 200 <= status < 300
        if status is not None and not delivered:
            error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
        attempt = event.attempts + 1
        next_at = None if delivered or refused else retry_at(event, attempt, utcnow(), self.settings)
        try:
            outcome = await self.store.record_attempt(event, status_code=status, error=error,
                                                      duration_ms=duration_ms, next_attempt_at=next_at,
                                                      delivered=delivered)
        except Exception:  # the lease lapses and the event is sent again
            log.warning("webhook %s: could not record the attempt", event.id, exc_info=True)
            return
        if outcome == "failed":
            log.warning("webhook %s for task %s failed after %d attempts: %s", event.id, event.task_id, attempt, error)
