"""Every error is OpenAI-shaped, has the right status, and leaves the balance untouched."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.support.gateway import RunningGateway

MESSAGES = [{"role": "user", "content": "hello there"}]


def post(gw: RunningGateway, key: str, body: Any = None, *, content: bytes | None = None,
         headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(f"{gw.base_url}/v1/chat/completions", json=body, content=content, timeout=30,
                      headers={"authorization": f"Bearer {key}", **(headers or {})})


def assert_openai_error(response: httpx.Response, status: int, type_: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if type_:
        assert error["type"] == type_
    return dict(error)


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "glm-4.5-air"}, None),
    ({"model": "glm-4.5-air", "messages": []}, "$.messages"),
    ({"model": "glm-4.5-air", "messages": [{"role": "wizard", "content": "hi"}]}, "$.messages[0].role"),
    ({"model": "glm-4.5-air", "messages": MESSAGES, "max_tokens": -5}, "$.max_tokens"),
    ({"model": "glm-4.5-air", "messages": MESSAGES, "temperature": "hot"}, "$.temperature"),
    ({"model": 42, "messages": MESSAGES}, "$.model"),
])
def test_bad_body_is_400_naming_the_field(gateway: RunningGateway, body: dict[str, Any], param: str | None) -> None:
    account, key = gateway.create_account("1")
    error = assert_openai_error(post(gateway, key, body), 400, "invalid_request_error")
    if param:
        assert error["param"] == param
    assert gateway.balance(account) == Decimal(1)


def test_invalid_json_is_400(gateway: RunningGateway) -> None:
    account, key = gateway.create_account("1")
    assert_openai_error(post(gateway, key, content=b'{"model": "glm-4.5-air", "messages": [',
                             headers={"content-type": "application/json"}), 400)
    assert_openai_error(post(gateway, key, content=b'{"model": NaN}', headers={"content-type": "application/json"}), 400)
    assert gateway.balance(account) == Decimal(1)


def test_wrong_content_type_is_415(gateway: RunningGateway) -> None:
    _, key = gateway.create_account("1")
    assert_openai_error(post(gateway, key, content=b"model=glm", headers={"content-type": "text/plain"}), 415)


@pytest.mark.parametrize("header", ["", "Bearer rk-not-a-real-key", "Basic dXNlcjpwYXNz"])
def test_bad_key_is_401(gateway: RunningGateway, header: str) -> None:
    response = httpx.post(f"{gateway.base_url}/v1/chat/completions", json={"model": "glm-4.5-air", "messages": MESSAGES},
                          headers={"authorization": header} if header else {})
    error = assert_openai_error(response, 401, "authentication_error")
    assert "rk-not-a-real-key" not in response.text and error["code"] == "invalid_api_key"


def test_revoked_key_is_refused_at_once(gateway: RunningGateway) -> None:
    account, key = gateway.create_account("1")
    assert post(gateway, key, {"model": "glm-4.5-air", "messages": MESSAGES}).status_code == 200
    key_id = gateway.admin.get(f"/admin/accounts/{account}/keys").json()["data"][0]["id"]
    gateway.admin.delete(f"/admin/keys/{key_id}").raise_for_status()
    assert_openai_error(post(gateway, key, {"model": "glm-4.5-air", "messages": MESSAGES}), 401)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0).chat.completions.create(
            model="glm-4.5-air", messages=MESSAGES)


def test_not_enough_credit_is_402(gateway: RunningGateway) -> None:
    account, key = gateway.create_account("0.0001")
    # max_tokens 1000 at $0.55/M may cost $0.00055 > $0.0001 available.
    error = assert_openai_error(post(gateway, key, {"model": "glm-4.5-air", "messages": MESSAGES, "max_tokens": 1000}),
                                402, "insufficient_quota")
    assert error["code"] == "insufficient_quota"
    assert gateway.balance(account) == Decimal("0.0001")
    # A smaller ceiling fits and succeeds.
    assert post(gateway, key, {"model": "glm-4.5-air", "messages": MESSAGES, "max_tokens": 20}).status_code == 200


def test_unknown_model_is_404(gateway: RunningGateway) -> None:
    account, key = gateway.create_account("1")
    error = assert_openai_error(post(gateway, key, {"model": "gpt-17", "messages": MESSAGES}), 404)
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert gateway.balance(account) == Decimal(1)


def test_body_too_large_is_413(gateway: RunningGateway) -> None:
    account, key = gateway.create_account("1")
    huge = "word " * (gateway.settings.server.max_body_bytes // 5 + 10)
    assert_openai_error(post(gateway, key, {"model": "glm-4.5-air", "messages": [{"role": "user", "content": huge}]}), 413)
    assert gateway.balance(account) == Decimal(1)


@pytest.mark.parametrize(("fault", "status"), [("500", 503), ("429", 503), ("bad_json", 503)])
def test_upstream_failure_is_5xx_and_free(gateway: RunningGateway, fault: str, status: int) -> None:
    account, key = gateway.create_account("1")
    response = post(gateway, key, {"model": "glm-4.5-air", "messages": MESSAGES, "x_sim": {"fault": fault}})
    assert_openai_error(response, status, "upstream_error")
    assert gateway.balance(account) == Decimal(1) == gateway.ledger_sum(account)
    usage = httpx.get(f"{gateway.base_url}/v1/usage", headers={"authorization": f"Bearer {key}"}).json()
    assert Decimal(str(usage["available"])) == Decimal(1)  # the hold was released


def test_upstream_rejection_passes_the_status_through(gateway: RunningGateway) -> None:
    account, key = gateway.create_account("1")
    response = post(gateway, key, {"model": "glm-4.5-air", "messages": MESSAGES, "x_sim": {"completion_tokens": -1}})
    assert_openai_error(response, 400)
    assert gateway.balance(account) == Decimal(1)


def test_wrong_method_is_405_in_openai_shape(gateway: RunningGateway) -> None:
    response = httpx.get(f"{gateway.base_url}/v1/chat/completions")
    assert_openai_error(response, 405)
