"""Issue 20.5: every query parameter of every endpoint is parsed by one ASCII-only, bounded parser
(`runapi.query`) and a bad value is a 400 naming it, never a 500. `str.isdigit()` took Unicode digits
("²", "①") that `int()` then refused, and `int()` refuses over 4,300 digits: those requests were 500s
that dropped the keep-alive connection (`/v1/outputs/x?expires=²` needs no key at all)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from runapi.http.openapi import build_openapi
from tests.support.gateway import ADMIN_TOKEN, RunningGateway

SPEC = build_openapi()
SOURCE = Path(__file__).resolve().parents[1] / "src" / "runapi"
BAD_NUMBERS = ["²", "①", "٣", "１０", "9" * 5000, "-1", "1.5", "1e3", " 5"]
BAD_DAYS = ["²⁰²⁵-01-01", "２０２５-01-01", "20250101", "2025-W01-1", "2025-02-30", "9" * 5000, ""]


def query_parameters() -> list[tuple[str, str]]:
    """(path, parameter) for every documented query parameter of every GET operation."""
    return [(path, parameter["name"]) for path, item in SPEC["paths"].items()
            for parameter in item.get("get", {}).get("parameters", []) if parameter["in"] == "query"]


PARAMETERS = query_parameters()


NUMBERS, DAYS, CHOICES = {"limit", "expires"}, {"start", "end"}, {"status", "format"}


def bad_values(name: str) -> list[str]:
    """Values every parameter of its kind must refuse (the kinds do not come from the document, so a
    parameter documented loosely is still held to them)."""
    if name in NUMBERS:
        return BAD_NUMBERS + ["10000000000000"] + (["1001", "0"] if name == "limit" else [])
    if name in DAYS:
        return BAD_DAYS
    if name in CHOICES:
        return ["²", "x" * 5000, "SUCCEEDED"]
    return ["x" * 5000]  # free text: bounded


@pytest.fixture(scope="module")
def key(gateway: RunningGateway) -> str:
    return gateway.create_account("1")[1]


@pytest.mark.parametrize(("path", "name"), PARAMETERS, ids=[f"{p}?{n}" for p, n in PARAMETERS])
def test_a_bad_query_value_is_a_400_naming_it(gateway: RunningGateway, key: str, path: str, name: str) -> None:
    token = ADMIN_TOKEN if path.startswith("/admin") else key
    url = gateway.base_url + path.replace("{task_id}", "task_x")
    with httpx.Client(headers={"authorization": f"Bearer {token}"}, timeout=30) as client:
        for value in bad_values(name):
            response = client.get(url, params={name: value, **({"signature": "x"} if name == "expires" else {})})
            assert response.status_code == 400, (name, value[:20], response.status_code, response.text[:200])
            assert response.json()["error"]["param"] == name
        # the connection survived: the next request on it is answered normally
        assert client.get(f"{gateway.base_url}/health").status_code == 200


def test_the_outputs_url_refuses_unicode_digits_without_a_key(gateway: RunningGateway) -> None:
    response = httpx.get(f"{gateway.base_url}/v1/outputs/x", params={"expires": "²", "signature": "x"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "expires"


def test_empty_and_absent_limits_take_the_default(gateway: RunningGateway, key: str) -> None:
    for url, token in ((f"{gateway.base_url}/v1/tasks", key), (f"{gateway.base_url}/admin/tasks", ADMIN_TOKEN),
                       (f"{gateway.base_url}/admin/generations", ADMIN_TOKEN)):
        for params in ({"limit": ""}, {}, {"limit": "1"}):
            response = httpx.get(url, params=params, headers={"authorization": f"Bearer {token}"})
            assert response.status_code == 200, (url, params, response.text)


def test_every_query_parameter_is_read_through_the_shared_parser() -> None:
    """No module reads a value out of `query_params` itself (rebuilding a URL from them is fine)."""
    offenders = [f"{file.relative_to(SOURCE)}:{number}"
                 for file in SOURCE.rglob("*.py") if file.name != "query.py"
                 for number, line in enumerate(file.read_text().splitlines(), 1)
                 if re.search(r"query_params(\.get\(|\[)", line)]
    assert offenders == []
