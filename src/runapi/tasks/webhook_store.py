"""Webhook signing secrets (one per account, rotatable), the event outbox and every delivery attempt."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.storage import (
    as_utc,
    utcnow,
    webhook_deliveries,
    webhook_events,
    webhook_secrets,
)
from runapi.tasks.records import DeliveryAttempt, WebhookEvent

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 24 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def event_row(task_id: str, account_id: str, url: str, event_type: str, payload: str) -> dict[str, Any]:
    """A new outbox row, due at once."""
    now = utcnow()
    return {"id": "msg_" + secrets.token_hex(12), "task_id": task_id, "account_id": account_id, "url": url,
            "event_type": event_type, "payload": payload, "status": "pending", "attempts": 0,
            "next_attempt_at": now, "created_at": now}


def _claimable(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(webhook_events.c.status == "pending", webhook_events.c.next_attempt_at <= now,
                   sa.or_(webhook_events.c.locked_until.is_(None), webhook_events.c.locked_until < now))


class WebhookStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def secret(self, account_id: str) -> str:
        """The account's current secret, created on first use."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(webhook_secrets.c.secret)
                                      .where(webhook_secrets.c.account_id == account_id))).first()
        if row is not None:
            return str(row.secret)
        try:
            async with self.engine.begin() as conn:
                secret = new_secret()
                await conn.execute(webhook_secrets.insert().values(account_id=account_id, secret=secret,
                                                                   rotated_at=utcnow()))
                return secret
        except IntegrityError:  # created concurrently
            return await self.secret(account_id)

    async def signing_secrets(self, account_id: str) -> list[str]:
        """Secrets to sign with now: the current one, and a rotated-out one still in its grace period."""
        current = await self.secret(account_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(webhook_secrets.c.previous_secret, webhook_secrets.c.previous_until)
                                      .where(webhook_secrets.c.account_id == account_id))).one()
        until = as_utc(row.previous_until)
        if row.previous_secret and until is not None and until > utcnow():
            return [current, str(row.previous_secret)]
        return [current]

    async def rotate(self, account_id: str, grace: float) -> str:
        """Replace the account's secret; the old one keeps signing (as a second signature) for `grace` s."""
        old = await self.secret(account_id)
        secret, now = new_secret(), utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(webhook_secrets.update().where(webhook_secrets.c.account_id == account_id).values(
                secret=secret, previous_secret=old if grace > 0 else None,
                previous_until=now + timedelta(seconds=grace) if grace > 0 else None, rotated_at=now))
        return secret

    async def claim(self, lease: float) -> WebhookEvent | None:
        """Take the next due event for one delivery attempt (leased, so no other sender sends it meanwhile)."""
        now = utcnow()
        async with self.engine.connect() as conn:
            if (await conn.execute(sa.select(webhook_events.c.id).where(_claimable(now)).limit(1))).first() is None:
                return None
        pick = (sa.select(webhook_events.c.id).where(_claimable(now)).order_by(webhook_events.c.next_attempt_at)
                .limit(1).with_for_update(skip_locked=True).scalar_subquery())
        claim = (webhook_events.update().where(webhook_events.c.id == pick, _claimable(now))
                 .values(locked_until=now + timedelta(seconds=lease)).returning(*webhook_events.c))
        async with self.engine.begin() as conn:
            row = (await conn.execute(claim)).first()
        return None if row is None else WebhookEvent.from_row(row)

    async def next_due(self) -> datetime | None:
        """When the next pending event becomes claimable by time alone (its retry time, or its lease
        lapsing, whichever is later), or None if none will."""
        events = webhook_events.c
        later = sa.case((events.locked_until > events.next_attempt_at, events.locked_until),
                        else_=events.next_attempt_at)
        async with self.engine.connect() as conn:
            due = (await conn.execute(sa.select(sa.func.min(later)).where(events.status == "pending"))).scalar()
        return as_utc(due) if due is not None else None

    async def record_attempt(self, event: WebhookEvent, *, status_code: int | None, error: str | None,
                             duration_ms: float, next_attempt_at: datetime | None, delivered: bool) -> str:
        """Record one attempt and move the event on: delivered, retried at `next_attempt_at`, or failed.

        Returns the attempt's outcome.
        """
        now = utcnow()
        outcome = "delivered" if delivered else ("retrying" if next_attempt_at is not None else "failed")
        values: dict[str, Any] = {"attempts": webhook_events.c.attempts + 1, "locked_until": None}
        if outcome == "retrying":
            values["next_attempt_at"] = next_attempt_at
        else:
            values.update(status=outcome, finished_at=now)
        async with self.engine.begin() as conn:
            await conn.execute(webhook_deliveries.insert().values(
                event_id=event.id, task_id=event.task_id, attempt=event.attempts + 1, url=event.url,
                status_code=status_code, error=error[:500] if error else None, duration_ms=round(duration_ms, 3),
                outcome=outcome, created_at=now))
            await conn.execute(webhook_events.update().where(webhook_events.c.id == event.id).values(**values))
        return outcome

    async def events(self, task_id: str) -> list[WebhookEvent]:
        query = sa.select(webhook_events).where(webhook_events.c.task_id == task_id).order_by(webhook_events.c.created_at)
        async with self.engine.connect() as conn:
            return [WebhookEvent.from_row(r) for r in (await conn.execute(query)).all()]

    async def attempts(self, task_id: str) -> list[DeliveryAttempt]:
        query = (sa.select(webhook_deliveries).where(webhook_deliveries.c.task_id == task_id)
                 .order_by(webhook_deliveries.c.id))
        async with self.engine.connect() as conn:
            return [DeliveryAttempt.from_row(r) for r in (await conn.execute(query)).all()]
