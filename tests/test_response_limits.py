"""Upstream answers are capped at `[server] max_response_bytes`: a bigger answer (or one bigger stream
event) is a 502 / an error event, the generation fails and nothing is charged; smaller answers pass
unchanged. A real gateway in front of the simulator (`x_sim.pad_bytes` makes answers big), and real
aiohttp servers on loopback for the bodies the simulator does not send (chunked, gzip)."""

from __future__ import annotations

import gzip
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from runapi.errors import UpstreamError
from runapi.transport import Timeouts
from runapi.transport.http_client import UpstreamClient
from runapi.transport.sse import iter_sse_batches
from runapi.transport.upstream_http import post_to_upstream, read_upstream_body
from tests.support.gateway import RunningGateway, run_gateway, sqlite_url
from tests.support.sse import decode, sse_data

CAP = 8192
MESSAGES = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def capped_gateway(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    directory: Path = tmp_path_factory.mktemp("response-limits")
    with run_gateway(sqlite_url(directory), sim_url, circuit_failures=0, max_response_bytes=CAP) as running:
        yield running


def chat(gw: RunningGateway, key: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{gw.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": "glm-4.5-air", "messages": MESSAGES, **body}, timeout=30)


def generation_rows(gw: RunningGateway, account: str, count: int = 1) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5  # a failed stream's row is written after the stream closed
    while True:
        rows = list(gw.admin.get("/admin/generations", params={"account_id": account}).raise_for_status()
                    .json()["data"])
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def assert_failed_and_free(gw: RunningGateway, account: str) -> None:
    (row,) = generation_rows(gw, account)
    assert row["status"] == "failed" and Decimal(str(row["cost"])) == 0
    assert [entry["kind"] for entry in gw.ledger(account)] == ["topup"]
    assert gw.balance(account) == Decimal(1) == gw.ledger_sum(account)


def test_an_answer_over_the_cap_is_502_failed_and_not_charged(capped_gateway: RunningGateway) -> None:
    account, key = capped_gateway.create_account("1")
    response = chat(capped_gateway, key, x_sim={"pad_bytes": 3 * CAP})
    assert response.status_code == 502, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "upstream_error" and error["code"] == "upstream_response_too_large"
    assert f"{CAP}-byte limit" in error["message"]
    assert_failed_and_free(capped_gateway, account)


def test_a_stream_with_an_oversized_event_ends_with_an_error_and_is_not_charged(
        capped_gateway: RunningGateway) -> None:
    account, key = capped_gateway.create_account("1")
    # One event per word: the first words go out, the last (padded) event is over the cap.
    response = chat(capped_gateway, key, stream=True, x_sim={"completion_tokens": 5, "pad_bytes": 3 * CAP})
    assert response.status_code == 200
    events = sse_data(response.text)
    assert any('"content":"lorem"' in event for event in events)  # the client had part of the answer
    assert "[DONE]" not in events
    error = decode(events[-1])["error"]
    assert error["type"] == "upstream_error" and error["code"] == "upstream_response_too_large"
    assert_failed_and_free(capped_gateway, account)


def test_answers_under_the_cap_pass_unchanged(capped_gateway: RunningGateway) -> None:
    account, key = capped_gateway.create_account("1")
    plain = chat(capped_gateway, key).json()
    padded = chat(capped_gateway, key, x_sim={"pad_bytes": CAP // 2})
    assert padded.status_code == 200
    body = padded.json()
    content = body["choices"][0]["message"]["content"]
    assert content == plain["choices"][0]["message"]["content"] + "x" * (CAP // 2)
    assert body["usage"] == plain["usage"]
    streamed = chat(capped_gateway, key, stream=True, x_sim={"pad_bytes": CAP // 2})
    events = sse_data(streamed.text)
    assert events[-1] == "[DONE]"
    text = "".join(choice["delta"].get("content") or "" for event in events[:-1]
                   for choice in decode(event)["choices"])
    assert text == content
    rows = generation_rows(capped_gateway, account, 3)
    assert [row["status"] for row in rows] == ["succeeded"] * 3
    assert len([entry for entry in capped_gateway.ledger(account) if entry["kind"] == "charge"]) == 3


# -- bodies the simulator does not send: no Content-Length, and compressed ----------------------------


@pytest.fixture()
async def odd_upstream() -> AsyncIterator[str]:
    """`/chunked/{n}`: n bytes without Content-Length; `/gzip/{n}`: n bytes gzipped, with Content-Length."""

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        size = int(request.match_info["n"])
        for start in range(0, size, 1000):
            await response.write(b"x" * min(1000, size - start))
        await response.write_eof()
        return response

    async def gzipped(request: web.Request) -> web.Response:
        body = gzip.compress(b"x" * int(request.match_info["n"]))
        return web.Response(body=body, headers={"content-encoding": "gzip"})

    app = web.Application()
    app.router.add_post("/chunked/{n}", chunked)
    app.router.add_post("/gzip/{n}", gzipped)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("kind", ["chunked", "gzip"])
async def test_bodies_are_counted_as_they_arrive(odd_upstream: str, kind: str) -> None:
    timeouts = Timeouts(max_response_bytes=CAP)
    client = UpstreamClient()
    try:
        response = await post_to_upstream(client, timeouts, f"{odd_upstream}/{kind}/{CAP}", {}, b"{}")
        assert await read_upstream_body(response, timeouts) == b"x" * CAP
        response = await post_to_upstream(client, timeouts, f"{odd_upstream}/{kind}/{CAP + 1}", {}, b"{}")
        with pytest.raises(UpstreamError) as caught:
            await read_upstream_body(response, timeouts)
        assert caught.value.status == 502 and caught.value.code == "upstream_response_too_large"
        # The client is still usable afterwards (the oversized response's connection was dropped).
        response = await post_to_upstream(client, timeouts, f"{odd_upstream}/{kind}/10", {}, b"{}")
        assert await read_upstream_body(response, timeouts) == b"x" * 10
    finally:
        await client.close()


async def _reads(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _events(chunks: list[bytes], limit: int) -> list[bytes]:
    return [event.data async for events in iter_sse_batches(_reads(chunks), limit) for event in events]


async def test_sse_parser_refuses_an_event_over_the_limit() -> None:
    small = b"data: " + b"a" * 50 + b"\n\n"
    # Many small events in one read bigger than the limit are fine.
    assert await _events([small * 10], 100) == [b"a" * 50] * 10
    # One event over the limit, whole in one read, or an unterminated line growing read by read.
    with pytest.raises(UpstreamError):
        await _events([small + b"data: " + b"b" * 200 + b"\n\n" + small], 100)
    with pytest.raises(UpstreamError):
        await _events([small] + [b"data: " + b"c" * 40] + [b"c" * 40] * 10, 100)


async def test_events_before_an_oversized_one_are_yielded_first() -> None:
    """A read holding complete events and the start of an oversized one: the complete events reach the
    client before the error (so a stream that already started ends with an error event, not a 502)."""
    small = b"data: " + b"a" * 50 + b"\n\n"
    seen: list[bytes] = []
    with pytest.raises(UpstreamError):
        async for events in iter_sse_batches(_reads([small * 2 + b"data: " + b"b" * 300]), 100):
            seen += [event.data for event in events]
    assert seen == [b"a" * 50] * 2
