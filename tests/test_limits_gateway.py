"""Rate limits, concurrency and key limits end to end: a real gateway with a clock the test moves."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.clock import ManualClock
from tests.support.gateway import RunningGateway, run_gateway, sqlite_url
from tests.support.limits import (
    account_in_tier,
    chat,
    chat_body,
    error_of,
    estimated_prompt_tokens,
    key_id,
    new_key,
    tier,
)

TIERS = {
    "rpm3": tier(rpm=3, tpm=100_000),
    "tpm2000": tier(tpm=2000),
    "conc2": tier(concurrent=2),
    "conc1": tier(concurrent=1),
}


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module", params=["memory", "redis"])
def limited(request: pytest.FixtureRequest, sim_url: str, tmp_path_factory: pytest.TempPathFactory,
            clock: ManualClock) -> Iterator[RunningGateway]:
    """A gateway whose tiers are small, with its limiter in process or in Redis."""
    env = {"RUNAPI_REDIS_URL": "redis://127.0.0.1:6379/0"} if request.param == "redis" else {}
    directory = tmp_path_factory.mktemp(f"limits-{request.param}")
    with run_gateway(sqlite_url(directory), sim_url, tiers=TIERS, clock=clock, env=env) as running:
        yield running


async def settle_releases(_gw: RunningGateway) -> None:
    """Redis releases are sent just after settlement; give them a moment to land."""
    await asyncio.sleep(0.05)


def test_n_requests_pass_then_429_with_retry_after_and_again_after_the_wait(limited: RunningGateway,
                                                                           clock: ManualClock) -> None:
    _, key = account_in_tier(limited, "rpm3")
    for remaining, reset in ((2, "20s"), (1, "40s"), (0, "1m0s")):
        response = chat(limited, key)
        assert response.status_code == 200, response.text
        assert response.headers["x-ratelimit-limit-requests"] == "3"
        assert response.headers["x-ratelimit-remaining-requests"] == str(remaining)
        assert response.headers["x-ratelimit-reset-requests"] == reset
        assert response.headers["x-ratelimit-limit-tokens"] == "100000"
        assert int(response.headers["x-ratelimit-remaining-tokens"]) < 100_000
    refused = chat(limited, key)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "20"  # 60 s / 3 requests
    assert refused.headers["x-ratelimit-limit-requests"] == "3"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"] == "1m0s"
    assert error_of(refused)["type"] == "rate_limit_error" and error_of(refused)["code"] == "rate_limit_exceeded"
    clock.advance(19.9)
    assert chat(limited, key).status_code == 429
    clock.advance(0.1)
    assert chat(limited, key).status_code == 200
    assert chat(limited, key).status_code == 429
    clock.advance(60)  # a whole window: N again, and no more
    assert [chat(limited, key).status_code for _ in range(4)] == [200, 200, 200, 429]
    clock.advance(1)  # just past where a fixed window would have reset: still no second burst
    assert chat(limited, key).status_code == 429


def test_streaming_responses_carry_the_headers_too(limited: RunningGateway) -> None:
    _, key = account_in_tier(limited, "rpm3")
    with httpx.stream("POST", f"{limited.base_url}/v1/chat/completions", json={**chat_body(), "stream": True},
                      headers={"authorization": f"Bearer {key}"}, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["x-ratelimit-remaining-requests"] == "2"
        response.read()


async def test_tokens_per_minute_are_corrected_by_real_usage(limited: RunningGateway) -> None:
    _, key = account_in_tier(limited, "tpm2000")
    body = chat_body(max_tokens=1200, completion_tokens=5)
    estimate = estimated_prompt_tokens(body) + 1200
    first = chat(limited, key, body)
    assert first.status_code == 200
    assert int(first.headers["x-ratelimit-remaining-tokens"]) == 2000 - estimate
    used = first.json()["usage"]["total_tokens"]
    assert used < 50
    await settle_releases(limited)
    # Two estimates (2 × ~1204) would not fit in 2000: the second call passes only because the
    # first one's estimate was replaced by its real usage at settlement.
    second = chat(limited, key, body)
    assert second.status_code == 200, second.text
    assert int(second.headers["x-ratelimit-remaining-tokens"]) == 2000 - used - estimate
    with httpx.stream("POST", f"{limited.base_url}/v1/chat/completions", json={**body, "stream": True},
                      headers={"authorization": f"Bearer {key}"}, timeout=30) as response:
        # Held: the first two calls' real usage plus this one's estimate.
        assert response.status_code == 200, response.read()
        response.read()
    await settle_releases(limited)
    assert chat(limited, key, body).status_code == 200


def test_a_prompt_larger_than_tokens_per_minute_is_refused_for_good(limited: RunningGateway) -> None:
    _, key = account_in_tier(limited, "tpm2000")
    body = {"model": "glm-4.5-air", "messages": [{"role": "user", "content": "word " * 3000}], "max_tokens": 5}
    response = chat(limited, key, body)
    assert response.status_code == 429 and "retry-after" not in response.headers
    assert error_of(response)["code"] == "request_too_large"


async def test_concurrency_limit_with_slow_streams(limited: RunningGateway) -> None:
    _, key = account_in_tier(limited, "conc2")
    slow = {**chat_body(completion_tokens=10, chunk_delay_ms=150), "stream": True}
    headers = {"authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=limited.base_url, headers=headers, timeout=30) as client:
        async with client.stream("POST", "/v1/chat/completions", json=slow) as one, \
                client.stream("POST", "/v1/chat/completions", json=slow) as two:
            assert one.status_code == two.status_code == 200
            refused = await client.post("/v1/chat/completions", json=chat_body())
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            assert error_of(refused)["code"] == "concurrency_limit_exceeded"
            await one.aread()
            await two.aread()
        await settle_releases(limited)
        assert (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200


def test_back_to_back_calls_at_a_concurrency_of_one_are_never_refused(limited: RunningGateway) -> None:
    """The slot is free once the answer is out (the settlement is durable then), not at the commit after
    it: a client calling one at a time at its limit never sees a 429. In process only: Redis releases are
    sent just after, by design (see `settle_releases`)."""
    if limited.settings.redis_url:
        pytest.skip("the Redis limiter releases slots asynchronously")
    _, key = account_in_tier(limited, "conc1")
    with httpx.Client(base_url=limited.base_url, headers={"authorization": f"Bearer {key}"}, timeout=30) as client:
        statuses = [client.post("/v1/chat/completions", json=chat_body()).status_code for _ in range(15)]
        statuses += [client.post("/v1/chat/completions", json={**chat_body(), "stream": True}).status_code
                     for _ in range(15)]
    assert statuses == [200] * 30


async def test_failed_and_refused_calls_give_their_slot_back(limited: RunningGateway) -> None:
    account, key = account_in_tier(limited, "conc1", credit="0.001")
    failed = chat(limited, key, chat_body(model="deepseek-chat", fault="500"))
    assert failed.status_code >= 500
    await settle_releases(limited)
    too_dear = chat(limited, key, chat_body(max_tokens=8000))  # more than the credit covers
    assert too_dear.status_code == 402
    await settle_releases(limited)
    assert chat(limited, key).status_code == 200


def test_a_keys_own_limits_are_narrower_than_its_tier(limited: RunningGateway) -> None:
    account, key = account_in_tier(limited, "conc2")
    limits = limited.admin.patch(f"/admin/keys/{key_id(limited, account)}/limits",
                                 json={"requests_per_minute": 1, "allowed_models": ["glm-4.5-air", "glm-4.5"]})
    assert limits.status_code == 200, limits.text
    assert limits.json()["limits"]["requests_per_minute"] == 1
    first = chat(limited, key)
    assert first.status_code == 200 and first.headers["x-ratelimit-limit-requests"] == "1"
    refused = chat(limited, key)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "60"
    assert "this API key" in error_of(refused)["message"]
    _, other = new_key(limited, account)  # the account's tier still has room for its other keys
    assert chat(limited, other).status_code == 200


def test_a_key_may_only_use_the_models_it_allows(limited: RunningGateway) -> None:
    account, key = account_in_tier(limited, "conc2")
    kid = key_id(limited, account)
    limited.admin.patch(f"/admin/keys/{kid}/limits", json={"allowed_models": ["glm-4.5"]}).raise_for_status()
    refused = chat(limited, key, chat_body(model="glm-4.5-air"))
    assert refused.status_code == 403 and error_of(refused)["code"] == "model_not_allowed"
    assert chat(limited, key, chat_body(model="glm-4.5")).status_code == 200
    limited.admin.patch(f"/admin/keys/{kid}/limits", json={"allowed_models": None}).raise_for_status()
    assert chat(limited, key, chat_body(model="glm-4.5-air")).status_code == 200
    unknown = limited.admin.patch(f"/admin/keys/{kid}/limits", json={"allowed_models": ["no-such-model"]})
    assert unknown.status_code == 400


def test_key_limits_are_validated_and_expiry_can_be_set(limited: RunningGateway) -> None:
    account, key = account_in_tier(limited, "conc2")
    kid = key_id(limited, account)
    bad = limited.admin.patch(f"/admin/keys/{kid}/limits", json={"requests_per_minute": 0})
    assert bad.status_code == 400
    assert limited.admin.patch(f"/admin/keys/{kid}/limits", json={"rpm": 5}).status_code == 400
    assert limited.admin.patch("/admin/keys/key_nope/limits", json={}).status_code == 404
    limited.admin.patch(f"/admin/keys/{kid}/limits", json={"expires_at": "2001-01-01T00:00:00Z"}).raise_for_status()
    assert chat(limited, key).status_code == 401


def test_limits_hold_across_two_instances_sharing_redis(sim_url: str, tmp_path: Path, clock: ManualClock) -> None:
    """Two gateways on one database and one Redis: the tier's limit is the account's, not each instance's."""
    env = {"RUNAPI_REDIS_URL": "redis://127.0.0.1:6379/0"}
    url = sqlite_url(tmp_path)
    with run_gateway(url, sim_url, tiers=TIERS, clock=clock, env=env) as one, \
            run_gateway(url, sim_url, tiers=TIERS, clock=clock, env=env) as two:
        _, key = account_in_tier(one, "rpm3")
        statuses = [chat(gw, key).status_code for gw in (one, two, one, two)]
        assert statuses == [200, 200, 200, 429]
