"""A catalogue of bad inputs: each gets a clear OpenAI-shaped error, is not charged, and writes no row.

"No row" is checked where it would land: the account's balance and ledger (only its top-up) and its
generations (none). Basic cases (a bad field, invalid JSON, 415, 404, 413) also live in
tests/test_errors.py; this file covers the hostile ones.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.gateway import RunningGateway

CHAT = "/v1/chat/completions"
GOOD = b'{"model":"glm-4.5-air","messages":[{"role":"user","content":"hi"}]'
JSON = {"content-type": "application/json"}


def body_with(extra: bytes) -> bytes:
    return GOOD + b"," + extra + b"}"


# (id, raw body, extra headers, status, error type, param)
CASES: list[tuple[str, bytes, dict[str, str], int, str, str | None]] = [
    ("invalid-json", b'{"model": "glm-4.5-air", "messages": [', JSON, 400, "invalid_request_error", None),
    ("empty-body", b"", JSON, 400, "invalid_request_error", None),
    ("json-array", b"[1, 2]", JSON, 400, "invalid_request_error", None),
    ("json-string", b'"hello"', JSON, 400, "invalid_request_error", None),
    ("model-wrong-type", b'{"model": 7, "messages": [{"role": "user", "content": "hi"}]}', JSON, 400,
     "invalid_request_error", "$.model"),
    ("messages-wrong-type", b'{"model": "glm-4.5-air", "messages": "hi"}', JSON, 400, "invalid_request_error",
     "$.messages"),
    ("missing-model", b'{"messages": [{"role": "user", "content": "hi"}]}', JSON, 400, "invalid_request_error", None),
    ("missing-messages", b'{"model": "glm-4.5-air"}', JSON, 400, "invalid_request_error", None),
    ("empty-messages", b'{"model": "glm-4.5-air", "messages": []}', JSON, 400, "invalid_request_error",
     "$.messages"),
    ("bad-role", b'{"model": "glm-4.5-air", "messages": [{"role": "root", "content": "hi"}]}', JSON, 400,
     "invalid_request_error", "$.messages[0].role"),
    ("negative-max-tokens", body_with(b'"max_tokens": -5'), JSON, 400, "invalid_request_error", "$.max_tokens"),
    ("zero-max-tokens", body_with(b'"max_tokens": 0'), JSON, 400, "invalid_request_error", "$.max_tokens"),
    ("float-max-tokens", body_with(b'"max_tokens": 1.5'), JSON, 400, "invalid_request_error", "$.max_tokens"),
    ("string-max-tokens", body_with(b'"max_tokens": "100"'), JSON, 400, "invalid_request_error", "$.max_tokens"),
    ("negative-temperature", body_with(b'"temperature": -1'), JSON, 400, "invalid_request_error", "$.temperature"),
    ("huge-temperature", body_with(b'"temperature": 1e308'), JSON, 400, "invalid_request_error", "$.temperature"),
    ("nan-literal", body_with(b'"temperature": NaN'), JSON, 400, "invalid_request_error", None),
    ("infinity-literal", body_with(b'"top_p": Infinity'), JSON, 400, "invalid_request_error", None),
    ("too-many-choices", body_with(b'"n": 1000'), JSON, 400, "invalid_request_error", "$.n"),
    ("deeply-nested", body_with(b'"x": ' + b"[" * 100_000 + b"]" * 100_000), JSON, 400,
     "invalid_request_error", None),
    ("deeply-nested-objects", body_with(b'"x": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000), JSON, 400,
     "invalid_request_error", None),
    ("invalid-utf8", b'{"model": "glm-4.5-air", "messages": [{"role": "user", "content": "\xff\xfe\xc3"}]}', JSON,
     400, "invalid_request_error", None),
    ("lone-surrogate", b'{"model": "glm-4.5-air", "messages": [{"role": "user", "content": "\\ud800"}]}', JSON,
     400, "invalid_request_error", None),
    ("unknown-model", b'{"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}', JSON, 404,
     "not_found_error", "model"),
    ("wrong-content-type", GOOD + b"}", {"content-type": "text/plain"}, 415, "invalid_request_error", None),
    ("form-content-type", GOOD + b"}", {"content-type": "application/x-www-form-urlencoded"}, 415,
     "invalid_request_error", None),
]


@pytest.fixture(scope="module")
def victim(gateway: RunningGateway) -> Iterator[tuple[str, str]]:
    """One funded account that every bad input is sent with; at the end it must be untouched."""
    account_id, key = gateway.create_account("1")
    yield account_id, key
    assert_untouched(gateway, account_id)


def assert_untouched(gateway: RunningGateway, account_id: str, credit: str = "1") -> None:
    assert gateway.balance(account_id) == Decimal(credit)
    assert [entry["kind"] for entry in gateway.ledger(account_id)] == ["topup"]
    rows = gateway.admin.get("/admin/generations", params={"account_id": account_id}).raise_for_status().json()
    assert rows["data"] == []


def assert_openai_error(response: httpx.Response, status: int, type_: str, param: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_ and error["message"]
    if param is not None:
        assert error["param"] == param
    assert "Traceback" not in error["message"]


@pytest.mark.parametrize(("body", "headers", "status", "type_", "param"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_chat_input(gateway: RunningGateway, victim: tuple[str, str], body: bytes, headers: dict[str, str],
                        status: int, type_: str, param: str | None) -> None:
    response = httpx.post(f"{gateway.base_url}{CHAT}", content=body,
                          headers={"authorization": f"Bearer {victim[1]}", **headers}, timeout=30)
    assert_openai_error(response, status, type_, param)
    assert gateway.balance(victim[0]) == Decimal(1)


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/tasks", "/v1/messages/count_tokens"])
@pytest.mark.parametrize("body", [b'{"model": "glm-4.5-air", "x": "\xff"}', b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                                  b"{not json"], ids=["invalid-utf8", "deeply-nested", "invalid-json"])
def test_bad_input_on_other_endpoints(gateway: RunningGateway, victim: tuple[str, str], path: str, body: bytes) -> None:
    response = httpx.post(f"{gateway.base_url}{path}", content=body,
                          headers={"authorization": f"Bearer {victim[1]}", **JSON}, timeout=30)
    assert response.status_code == 400, response.text
    payload = response.json()
    error = payload["error"]
    assert error["type"] == "invalid_request_error" and "not valid JSON" in error["message"]


def test_oversized_body_is_413_before_it_is_read(gateway: RunningGateway, victim: tuple[str, str]) -> None:
    limit = gateway.settings.server.max_body_bytes
    declared = httpx.post(f"{gateway.base_url}{CHAT}", content=b"x" * (limit + 1),
                          headers={"authorization": f"Bearer {victim[1]}", **JSON})
    assert_openai_error(declared, 413, "invalid_request_error")

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked, counted as it arrives
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    chunked = httpx.post(f"{gateway.base_url}{CHAT}", content=chunks(),
                         headers={"authorization": f"Bearer {victim[1]}", **JSON})
    assert_openai_error(chunked, 413, "invalid_request_error")
    for path in ("/v1/tasks", "/v1/videos", "/v1/messages"):
        response = httpx.post(f"{gateway.base_url}{path}", content=b"x" * (limit + 1),
                              headers={"authorization": f"Bearer {victim[1]}", **JSON})
        assert response.status_code == 413, (path, response.text)
        chunked = httpx.post(f"{gateway.base_url}{path}", content=chunks(),
                             headers={"authorization": f"Bearer {victim[1]}", **JSON})
        assert chunked.status_code == 413, (path, chunked.text)


def test_huge_max_tokens_is_capped_at_the_model_maximum(gateway: RunningGateway) -> None:
    """A `max_tokens` above the model's maximum output (even beyond 64 bits) is capped to it: the hold
    is the model's worst case, and the charge is what was generated."""
    account_id, key = gateway.create_account("1")
    response = httpx.post(f"{gateway.base_url}{CHAT}", headers={"authorization": f"Bearer {key}"},
                          json={"model": "glm-4.5-air", "max_tokens": 10**30,
                                "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200, response.text
    cost = Decimal(str(response.json()["usage"]["cost"]))
    assert Decimal(0) < cost < Decimal("0.001")
    assert gateway.balance(account_id) == Decimal(1) - cost == gateway.ledger_sum(account_id)


def test_huge_max_tokens_beyond_credit_is_402_and_free(gateway: RunningGateway) -> None:
    account_id, key = gateway.create_account("0.00001")
    response = httpx.post(f"{gateway.base_url}{CHAT}", headers={"authorization": f"Bearer {key}"},
                          json={"model": "glm-4.5-air", "max_tokens": 10**30,
                                "messages": [{"role": "user", "content": "hi"}]})
    assert_openai_error(response, 402, "insufficient_quota")
    assert_untouched(gateway, account_id, "0.00001")


@pytest.mark.parametrize("value", ["abc\r\nset-cookie: evil=1", "abc\nx-evil: 1", "abc\rx-evil: 1"])
def test_header_injection_in_client_request_id_is_not_echoed(gateway: RunningGateway, victim: tuple[str, str],
                                                             value: str) -> None:
    """httpx refuses to send CR/LF in a header, so the request is written by hand on a raw socket."""
    url = urlsplit(gateway.base_url)
    body = b'{"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}'
    request = (f"POST {CHAT} HTTP/1.1\r\nhost: {url.netloc}\r\nauthorization: Bearer {victim[1]}\r\n"
               f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
               f"x-client-request-id: {value}\r\nconnection: close\r\n\r\n").encode() + body
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(request)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head = reply.split(b"\r\n\r\n", 1)[0].lower()
    assert b"set-cookie" not in head and b"x-evil" not in head
    # A CR or LF inside a header value is a malformed request: refused by the HTTP parser, or the
    # header is split and what follows is just another (ignored) request header, never echoed as ours.
    status = int(head.split(b" ", 2)[1])
    assert status in (400, 404)


def test_long_client_request_id_is_not_echoed(gateway: RunningGateway, victim: tuple[str, str]) -> None:
    response = httpx.post(f"{gateway.base_url}{CHAT}", headers={"authorization": f"Bearer {victim[1]}",
                                                                "x-client-request-id": "a" * 5000},
                          json={"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 404
    assert "x-client-request-id" not in response.headers


def test_slow_loris_clients_do_not_starve_others(gateway: RunningGateway) -> None:
    """Fifty clients trickling their headers byte by byte hold connections open; a normal client is
    still answered at once. (Dropping idle half-sent requests is the reverse proxy's job in production:
    see SECURITY.md.)"""
    url = urlsplit(gateway.base_url)
    lorises: list[socket.socket] = []
    try:
        for _ in range(50):
            sock = socket.create_connection((url.hostname, url.port), timeout=5)
            sock.sendall(f"POST {CHAT} HTTP/1.1\r\nhost: {url.netloc}\r\nx-a: ".encode())
            lorises.append(sock)
        for sock in lorises:
            sock.sendall(b"a")
        started = time.monotonic()
        response = httpx.get(f"{gateway.base_url}/health", timeout=5)
        assert response.status_code == 200
        assert time.monotonic() - started < 1.0
        for sock in lorises:
            sock.sendall(b"b")
        models = httpx.get(f"{gateway.base_url}/v1/models", timeout=5)
        assert models.status_code == 200
    finally:
        for sock in lorises:
            sock.close()


def test_wrong_auth_shapes_are_401_and_never_echo_the_secret(gateway: RunningGateway) -> None:
    secret = "rk-" + "s3cr3t" * 8
    for headers in ({"authorization": f"Basic {secret}"}, {"authorization": f"Bearer {secret}"},
                    {"x-api-key": secret}, {"authorization": "Bearer"}, {}):
        response = httpx.post(f"{gateway.base_url}{CHAT}", headers=headers,
                              json={"model": "glm-4.5-air", "messages": [{"role": "user", "content": "hi"}]})
        assert_openai_error(response, 401, "authentication_error")
        assert secret not in response.text and "s3cr3t" not in str(response.headers)
