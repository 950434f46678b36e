"""Quality reports on generations: filed by the generation's own account, listed for the operator by model.

One report per generation: filing again replaces the category and comment (the first filing time is
kept). Sizes are bounded: a category from a fixed list, a comment of at most `MAX_COMMENT_CHARS`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.errors import InvalidRequest, NotFound
from runapi.storage.accounts import new_id
from runapi.storage.clock import as_utc, utcnow
from runapi.storage.records import Generation
from runapi.storage.schema import generation_feedback, generations

FEEDBACK_CATEGORIES = ("incorrect", "incomplete", "refusal", "harmful", "formatting", "slow", "other")
MAX_COMMENT_CHARS = 2000
MAX_REPORTS_LISTED = 500


class Feedback(msgspec.Struct, frozen=True):
    id: str
    generation_id: str
    account_id: str
    key_id: str | None
    model: str
    category: str
    comment: str
    created_at: datetime
    updated_at: datetime


class FeedbackReport(msgspec.Struct, frozen=True):
    """A report with the facts of its generation, for the operator."""

    feedback: Feedback
    generation: Generation


def check_feedback(category: object, comment: object) -> tuple[str, str]:
    """(category, comment) if valid; `InvalidRequest` naming the field otherwise. Pure."""
    if not isinstance(category, str) or category not in FEEDBACK_CATEGORIES:
        raise InvalidRequest(f"`category` must be one of {', '.join(FEEDBACK_CATEGORIES)}.", param="category",
                             code="invalid_category")
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise InvalidRequest("`comment` must be a string.", param="comment")
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidRequest(f"`comment` is longer than {MAX_COMMENT_CHARS} characters.", param="comment",
                             code="comment_too_long")
    if "\x00" in comment:
        raise InvalidRequest("`comment` must not contain NUL characters.", param="comment")
    return category, comment


def _feedback(row: Any) -> Feedback:
    data = dict(row._mapping)
    data["created_at"] = as_utc(data["created_at"])
    data["updated_at"] = as_utc(data["updated_at"])
    return Feedback(**data)


class FeedbackStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def submit(self, account_id: str, key_id: str | None, generation_id: str, category: str,
                     comment: str) -> tuple[Feedback, bool]:
        """File (or replace) the report on one of `account_id`'s generations: (report, created).
        `NotFound` for a generation that does not exist or belongs to another account."""
        category, comment = check_feedback(category, comment)
        query = sa.select(generations.c.model).where(generations.c.id == generation_id,
                                                     generations.c.account_id == account_id)
        now = utcnow()
        try:
            return await self._file(query, account_id, key_id, generation_id, category, comment, now)
        except IntegrityError:  # a concurrent first filing of the same generation won the insert: replace it
            return await self._file(query, account_id, key_id, generation_id, category, comment, now)

    async def _file(self, query: Any, account_id: str, key_id: str | None, generation_id: str, category: str,
                    comment: str, now: datetime) -> tuple[Feedback, bool]:
        async with self.engine.begin() as conn:
            model = (await conn.execute(query)).scalar_one_or_none()
            if model is None:
                raise NotFound(f"You have no generation {generation_id!r}.", param="generation_id",
                               code="generation_not_found")
            existing = (await conn.execute(sa.select(generation_feedback.c.id).where(
                generation_feedback.c.generation_id == generation_id))).scalar_one_or_none()
            if existing is not None:
                await conn.execute(generation_feedback.update().where(generation_feedback.c.id == existing).values(
                    category=category, comment=comment, key_id=key_id, updated_at=now))
                feedback_id = existing
            else:
                feedback_id = new_id("fb")
                await conn.execute(generation_feedback.insert().values(
                    id=feedback_id, generation_id=generation_id, account_id=account_id, key_id=key_id, model=model,
                    category=category, comment=comment, created_at=now, updated_at=now))
            row = (await conn.execute(sa.select(generation_feedback).where(
                generation_feedback.c.id == feedback_id))).one()
        return _feedback(row), existing is None

    async def for_generations(self, account_id: str, generation_ids: Iterable[str]) -> dict[str, Feedback]:
        """The account's reports on these generations, by generation ID (for the dashboard)."""
        ids = list(generation_ids)
        if not ids:
            return {}
        query = sa.select(generation_feedback).where(generation_feedback.c.account_id == account_id,
                                                     generation_feedback.c.generation_id.in_(ids))
        async with self.engine.connect() as conn:
            return {row.generation_id: _feedback(row) for row in (await conn.execute(query)).all()}

    async def reports(self, model: str | None = None, limit: int = 100) -> list[FeedbackReport]:
        """The latest reports (newest first), each with its generation's facts."""
        query = (sa.select(generation_feedback, generations)
                 .join(generations, generations.c.id == generation_feedback.c.generation_id)
                 .order_by(generation_feedback.c.updated_at.desc(), generation_feedback.c.id.desc())
                 .limit(min(limit, MAX_REPORTS_LISTED)))
        if model:
            query = query.where(generation_feedback.c.model == model)
        feedback_columns = [c.name for c in generation_feedback.c]
        generation_columns = list(Generation.__struct_fields__)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        reports = []
        for row in rows:
            values = list(row)
            fb: dict[str, Any] = dict(zip(feedback_columns, values[: len(feedback_columns)], strict=True))
            gen: dict[str, Any] = dict(zip([c.name for c in generations.c], values[len(feedback_columns):], strict=True))
            fb["created_at"], fb["updated_at"] = as_utc(fb["created_at"]), as_utc(fb["updated_at"])
            gen["created_at"] = as_utc(gen["created_at"])
            reports.append(FeedbackReport(Feedback(**fb), Generation(**{k: gen[k] for k in generation_columns})))
        return reports


def feedback_json(feedback: Feedback) -> dict[str, Any]:
    """A report as the API shows it."""
    return {"id": feedback.id, "object": "generation.feedback", "generation_id": feedback.generation_id,
            "model": feedback.model, "category": feedback.category, "comment": feedback.comment,
            "created": int(feedback.created_at.timestamp()), "updated": int(feedback.updated_at.timestamp())}
