"""Usage reporting: `GET /v1/usage`, the CSV export (HTTP and CLI) and the operator's revenue report.

Every figure must equal the sum of the generation rows it covers, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from runapi.cli.main import app as cli
from runapi.money import NANOS_PER_USD, Pricing, Usage, cost_nanos, nanos_to_usd
from tests.support.gateway import RunningGateway, run_gateway
from tests.support.limits import chat, chat_body
from tests.support.sse import decode

UPSTREAM_COST = {"input": "0.05", "output": "0.30", "cache_read": "0.01"}
MODELS = {"glm-4.5-air": {"deployments": [{"provider": "zai", "upstream_model": "glm-4.5-air", "cost": UPSTREAM_COST}]}}
TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "reasoning_tokens")


@pytest.fixture()
def busy(database_url: str, sim_url: str) -> Iterator[tuple[RunningGateway, str, str, str]]:
    """A gateway with traffic: (gateway, database URL, account, its key). Another account also calls."""
    with run_gateway(database_url, sim_url, models=MODELS) as gw:
        account, key = gw.create_account("10")
        calls = [
            chat_body(completion_tokens=7),
            chat_body(completion_tokens=30, cached_tokens=2, reasoning_tokens=4),
            {**chat_body(completion_tokens=12), "stream": True, "stream_options": {"include_usage": True}},
            chat_body(model="glm-4.5", completion_tokens=9),
            chat_body(model="glm-4.5", completion_tokens=21),
            chat_body(model="deepseek-chat", fault="500"),  # failed: counted apart, free
        ]
        for body in calls:
            chat(gw, key, body)
        _, stranger = gw.create_account("10")
        chat(gw, stranger, chat_body(completion_tokens=50))
        yield gw, database_url, account, key


def generation_rows(gw: RunningGateway, account: str) -> list[dict[str, Any]]:
    return list(decode(gw.admin.get("/admin/generations", params={"account_id": account}).content)["data"])


def expected_by_day_and_model(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    groups: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
        day = datetime.fromtimestamp(row["created"], UTC).date().isoformat()
        group = groups[(day, row["model"])]
        if row["status"] == "failed":
            group["failed"] += 1
            continue
        group["requests"] += 1
        for name in TOKENS:
            group[name] += row["usage"][name]
        group["cost"] += Decimal(str(row["cost"]))
    return {k: dict(v) for k, v in groups.items()}


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def test_usage_equals_the_sum_of_the_generation_rows(busy: tuple[RunningGateway, str, str, str]) -> None:
    gw, _, account, key = busy
    rows = generation_rows(gw, account)
    assert len(rows) == 6 and {r["status"] for r in rows} == {"succeeded", "failed"}
    response = httpx.get(f"{gw.base_url}/v1/usage", headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    usage = decode(response.content)
    assert usage["end"] == today() and usage["currency"] == "USD"
    got = {(line["date"], line["model"]): line for line in usage["data"]}
    expected = expected_by_day_and_model(rows)
    assert set(got) == set(expected)
    for group, sums in expected.items():
        line = got[group]
        assert line["requests"] == sums.get("requests", 0) and line["failed"] == sums.get("failed", 0)
        for name in TOKENS:
            assert line[name] == sums.get(name, 0), (group, name)
        assert line["cost"] == sums.get("cost", 0)
        assert line["total_tokens"] == sum(line[n] for n in TOKENS if n != "reasoning_tokens")
    billed = [r for r in rows if r["status"] != "failed"]
    spent = sum(Decimal(str(r["cost"])) for r in billed)
    assert usage["total"]["cost"] == spent and usage["total"]["requests"] == 5 and usage["total"]["failed"] == 1
    assert usage["total"]["output_tokens"] == sum(r["usage"]["output_tokens"] for r in billed)
    assert usage["balance"] == Decimal(10) - spent == gw.balance(account)


def test_usage_date_range_and_filters(busy: tuple[RunningGateway, str, str, str]) -> None:
    gw, _, _, key = busy
    headers = {"authorization": f"Bearer {key}"}
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    empty = httpx.get(f"{gw.base_url}/v1/usage", params={"start": tomorrow, "end": tomorrow}, headers=headers).json()
    assert empty["data"] == [] and empty["total"]["requests"] == 0 and empty["total"]["cost"] == 0
    glm = httpx.get(f"{gw.base_url}/v1/usage", params={"model": "glm-4.5", "start": today(), "end": today()},
                    headers=headers).json()
    assert [line["model"] for line in glm["data"]] == ["glm-4.5"] and glm["total"]["requests"] == 2
    for params in ({"start": "2025-13-01"}, {"start": "²⁰²⁵-01-01"}, {"start": ""}, {"end": "20250101"}):
        bad = httpx.get(f"{gw.base_url}/v1/usage", params=params, headers=headers)
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
    backwards = httpx.get(f"{gw.base_url}/v1/usage", params={"start": tomorrow, "end": today()}, headers=headers)
    assert backwards.status_code == 200 and backwards.json()["data"] == []  # an empty range
    # A range longer than 366 days is cut to the 366 days ending at `end`, and the answer says so.
    long = httpx.get(f"{gw.base_url}/v1/usage", params={"start": "2020-01-01", "end": "2024-12-31"},
                     headers=headers).json()
    assert (long["start"], long["end"]) == ("2024-01-01", "2024-12-31")
    assert httpx.get(f"{gw.base_url}/v1/usage").status_code == 401


def test_csv_export_matches_over_http_and_cli(busy: tuple[RunningGateway, str, str, str]) -> None:
    gw, database_url, account, _ = busy
    exported = gw.admin.get("/admin/usage", params={"account_id": account, "format": "csv"})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(exported.text)))
    expected = expected_by_day_and_model(generation_rows(gw, account))
    assert {(line["date"], line["model"]) for line in lines} == set(expected)
    for line in lines:
        sums = expected[(line["date"], line["model"])]
        assert int(line["requests"]) == sums.get("requests", 0)
        assert int(line["output_tokens"]) == sums.get("output_tokens", 0)
        assert Decimal(line["cost_usd"]) == sums.get("cost", 0)
    result = CliRunner().invoke(cli, ["usage", "--account", account, "--csv"],
                                env={"RUNAPI_DATABASE_URL": database_url, "RUNAPI_CONFIG": ""})
    assert result.exit_code == 0, result.output
    assert result.stdout == exported.text
    table = CliRunner().invoke(cli, ["usage", "--account", account, "--model", "glm-4.5"],
                               env={"RUNAPI_DATABASE_URL": database_url, "RUNAPI_CONFIG": "", "COLUMNS": "200"})
    assert table.exit_code == 0 and "glm-4.5" in table.stdout and "glm-4.5-air" not in table.stdout


def test_revenue_upstream_cost_and_margin_per_model(busy: tuple[RunningGateway, str, str, str]) -> None:
    gw, _, _, _ = busy
    response = gw.admin.get("/admin/reports/revenue", params={"start": today(), "end": today()})
    assert response.status_code == 200, response.text
    report = decode(response.content)
    rows = [r for r in decode(gw.admin.get("/admin/generations").content)["data"] if r["status"] != "failed"]
    by_model = {line["model"]: line for line in report["data"]}
    assert set(by_model) == {"glm-4.5-air", "glm-4.5"}

    air = [r for r in rows if r["model"] == "glm-4.5-air"]
    revenue = sum(Decimal(str(r["cost"])) for r in air)
    usage = Usage(**{name: sum(r["usage"][name] for r in air) for name in TOKENS if name != "reasoning_tokens"})
    upstream = nanos_to_usd(cost_nanos(usage, Pricing(**{k: Decimal(v) for k, v in UPSTREAM_COST.items()})))
    line = by_model["glm-4.5-air"]
    assert line["requests"] == len(air) == 4  # three of one account, one of the other
    assert line["revenue"] == revenue and line["upstream_cost"] == upstream and line["margin"] == revenue - upstream
    assert line["margin_percent"] == (100 * (revenue - upstream) / revenue).quantize(Decimal("0.01"))
    assert line["deployments"][0]["provider"] == "zai" and line["deployments"][0]["upstream_cost"] == upstream

    glm = by_model["glm-4.5"]  # its deployment declares no upstream price: unknown, not zero
    assert glm["revenue"] == sum(Decimal(str(r["cost"])) for r in rows if r["model"] == "glm-4.5")
    assert glm["upstream_cost"] is None and glm["margin"] is None
    assert report["total"]["revenue"] == sum(Decimal(str(r["cost"])) for r in rows)
    assert report["total"]["upstream_cost"] is None
    assert sum(int(Decimal(str(line["revenue"])) * NANOS_PER_USD) for line in report["data"]) == \
        int(report["total"]["revenue"] * NANOS_PER_USD)
    assert httpx.get(f"{gw.base_url}/admin/reports/revenue").status_code == 401
