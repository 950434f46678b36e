"""Quality reports: `POST /v1/generations/{id}/feedback` by the generation's own account only, with bounded
sizes and OpenAI-shaped errors; one report per generation (a new one replaces it); the operator's list
with the generation's facts, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from runapi.errors import InvalidRequest, NotFound
from runapi.storage import AccountStore, Generation, Settlement, create_engine, upgrade
from runapi.storage.feedback import MAX_COMMENT_CHARS, FeedbackStore, check_feedback
from runapi.storage.ledger import Ledger
from tests.support.gateway import RunningGateway


def _chat(gateway: RunningGateway, key: str) -> str:
    reply = httpx.post(f"{gateway.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                       json={"model": "glm-4.5-air", "messages": [{"role": "user", "content": "Hi"}]}, timeout=30)
    generation_id: str = reply.raise_for_status().json()["id"]
    return generation_id


def _report(gateway: RunningGateway, key: str, generation_id: str, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{gateway.base_url}/v1/generations/{generation_id}/feedback",
                      headers={"authorization": f"Bearer {key}"}, json=body, timeout=30, **kwargs)  # type: ignore[arg-type]


def test_a_customer_reports_a_generation_and_may_replace_the_report(gateway: RunningGateway) -> None:
    account, key = gateway.create_account("1")
    generation_id = _chat(gateway, key)
    first = _report(gateway, key, generation_id, {"category": "incorrect", "comment": "  It invented an API.  "})
    assert first.status_code == 201
    body = first.json()
    assert body["object"] == "generation.feedback" and body["generation_id"] == generation_id
    assert body["model"] == "glm-4.5-air" and body["category"] == "incorrect" and body["comment"] == "It invented an API."
    again = _report(gateway, key, generation_id, {"category": "slow"})
    assert again.status_code == 200 and again.json()["id"] == body["id"] and again.json()["comment"] == ""

    listed = gateway.admin.get("/admin/feedback", params={"model": "glm-4.5-air"}).raise_for_status().json()["data"]
    mine = [r for r in listed if r["generation_id"] == generation_id]
    assert len(mine) == 1 and mine[0]["category"] == "slow" and mine[0]["account_id"] == account
    facts = mine[0]["generation"]
    own = httpx.get(f"{gateway.base_url}/v1/generations/{generation_id}",
                    headers={"authorization": f"Bearer {key}"}).json()
    assert facts == own  # the generation's own facts: tokens, cost, latency, deployment
    assert not [r for r in gateway.admin.get("/admin/feedback", params={"model": "glm-4.6"}).json()["data"]
                if r["generation_id"] == generation_id]


def test_only_the_generations_own_account_can_report_it(gateway: RunningGateway) -> None:
    _, owner = gateway.create_account("1")
    _, stranger = gateway.create_account("1")
    generation_id = _chat(gateway, owner)
    refused = _report(gateway, stranger, generation_id, {"category": "other"})
    assert refused.status_code == 404
    assert refused.json()["error"] == {"message": f"You have no generation {generation_id!r}.",
                                       "type": "not_found_error", "param": "generation_id",
                                       "code": "generation_not_found"}
    assert _report(gateway, "rk-nope", generation_id, {"category": "other"}).status_code == 401
    assert _report(gateway, owner, "gen-0000", {"category": "other"}).status_code == 404


@pytest.mark.parametrize(("body", "param"), [
    ({"category": "meh"}, "category"),
    ({}, None),
    ({"category": "other", "comment": "x" * (MAX_COMMENT_CHARS + 1)}, "comment"),
    ({"category": "other", "comment": 7}, "comment"),
    ({"category": "other", "rating": 5}, None),
    (["other"], None),
])
def test_bad_reports_get_openai_shaped_400s(gateway: RunningGateway, body: object, param: str | None) -> None:
    _, key = gateway.create_account("1")
    generation_id = _chat(gateway, key)
    response = _report(gateway, key, generation_id, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_an_oversized_report_is_refused_before_it_is_read(gateway: RunningGateway) -> None:
    _, key = gateway.create_account("1")
    generation_id = _chat(gateway, key)
    response = httpx.post(f"{gateway.base_url}/v1/generations/{generation_id}/feedback", timeout=30,
                          headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
                          content=b'{"category": "other", "comment": "' + b"x" * 20_000 + b'"}')
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(("category", "comment", "problem"), [
    ("incorrect", "fine", None), ("other", None, None), ("nope", "", "category"), (None, "", "category"),
    ("other", "a\x00b", "comment"), ("other", "é" * MAX_COMMENT_CHARS, None), ("other", "é" * 2001, "comment"),
])
def test_check_feedback(category: object, comment: object, problem: str | None) -> None:
    if problem is None:
        assert check_feedback(category, comment)[0] == category
    else:
        with pytest.raises(InvalidRequest) as caught:
            check_feedback(category, comment)
        assert caught.value.param == problem


def _generation(account_id: str, generation_id: str, model: str) -> Generation:
    return Generation(id=generation_id, account_id=account_id, key_id="key_x", model=model, provider="zai",
                      upstream_model=model, status="succeeded", stream=False, input_tokens=10, output_tokens=5,
                      cache_read_tokens=0, cache_write_tokens=0, reasoning_tokens=0, price_input="0.1",
                      price_output="0.55", price_cache_read="0", price_cache_write="0", cost_nanos=3750,
                      estimated=False, latency_ms=12.5, created_at=datetime.now(UTC))


def test_store_on_both_backends(database_url: str) -> None:
    upgrade(database_url)

    async def scenario() -> None:
        engine = create_engine(database_url)
        try:
            accounts = AccountStore(engine)
            owner = (await accounts.create_account("owner")).id
            other = (await accounts.create_account("other")).id
            ledger = Ledger(engine)
            await ledger.record([Settlement(_generation(owner, "gen-a", "glm-4.5-air"), 3750),
                                 Settlement(_generation(owner, "gen-b", "glm-4.6"), 3750)])
            store = FeedbackStore(engine)
            # Concurrent first filings of one generation: one report, never an error.
            results = await asyncio.gather(*(store.submit(owner, "key_x", "gen-a", "incorrect", f"try {n}")
                                             for n in range(4)))
            assert len({feedback.id for feedback, _ in results}) == 1 and sum(c for _, c in results) == 1
            await store.submit(owner, None, "gen-b", "slow", "")
            with pytest.raises(NotFound):
                await store.submit(other, None, "gen-a", "other", "")
            reports = await store.reports()
            assert [r.feedback.generation_id for r in reports] == ["gen-b", "gen-a"]  # newest first
            assert reports[1].generation.cost_nanos == 3750 and reports[1].generation.latency_ms == 12.5
            assert [r.feedback.model for r in await store.reports(model="glm-4.6")] == ["glm-4.6"]
            mine = await store.for_generations(owner, ["gen-a", "gen-b", "gen-c"])
            assert set(mine) == {"gen-a", "gen-b"} and await store.for_generations(other, ["gen-a"]) == {}
        finally:
            await engine.dispose()

    asyncio.run(scenario())


def test_the_api_and_the_store_know_the_same_categories() -> None:
    from typing import get_args

    from runapi.http.feedback_api import Category
    from runapi.storage.feedback import FEEDBACK_CATEGORIES

    assert get_args(Category) == FEEDBACK_CATEGORIES
