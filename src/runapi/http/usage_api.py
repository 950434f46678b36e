"""Usage reporting: the caller's `GET /v1/usage`, and the operator's usage and revenue reports."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runapi.accounting import revenue_report, usage_by_mode, usage_csv, usage_line, usage_total
from runapi.http.account_api import principal_of
from runapi.http.admin_api import admin_gateway
from runapi.http.limits_api import key_limits_json, tier_json
from runapi.http.responses import json_response
from runapi.money import nanos_to_usd
from runapi.query import choice_param, date_param, text_param
from runapi.runtime import Gateway
from runapi.services import UsageFilter

DEFAULT_DAYS = 30
MAX_DAYS = 366


def _days_before(day: date, days: int) -> date:
    return day - timedelta(days=days) if (day - date.min).days >= days else date.min


def usage_filter(request: Request, **scope: str | None) -> UsageFilter:
    """The date range (`start`, `end`, inclusive, UTC; default the last 30 days) and filters of a query.
    A range longer than `MAX_DAYS` is cut to the `MAX_DAYS` ending at `end`, and a `start` after `end`
    is an empty range (answers say which days they cover)."""
    params = request.query_params
    # The storage query ends the day after `end`: keep that inside `date`'s range.
    end = min(date_param(params, "end") or datetime.now(UTC).date(), date.max - timedelta(days=1))
    start = date_param(params, "start") or _days_before(end, DEFAULT_DAYS - 1)
    start = max(start, _days_before(end, MAX_DAYS - 1))
    return UsageFilter(start=start, end=end, model=text_param(params, "model"), **scope)


async def get_usage(request: Request) -> Response:
    """The caller's balance, limits and month-to-date spend, and usage by day and model and by mode and unit."""
    gw: Gateway = request.app.state.gateway
    principal = await principal_of(request)
    where = usage_filter(request, account_id=principal.account_id, key_id=text_param(request.query_params, "key_id"))
    rows = await gw.usage.by_day_and_model(where)
    balance = await gw.accounts.balance(principal.account_id)
    available = await gw.accounts.available(principal.account_id)
    month = gw.usage.month()
    return json_response({
        "object": "usage",
        "account_id": principal.account_id,
        "tier": principal.tier,
        "balance": nanos_to_usd(balance),
        "available": nanos_to_usd(max(0, available)),
        "currency": "USD",
        "limits": tier_json(principal.tier, gw.limits.tiers.get(principal.tier)),
        "key": {"id": principal.key_id, "limits": key_limits_json(principal.limits),
                "spend": nanos_to_usd(await gw.usage.key_spend(principal.key_id))},
        "month": month,
        "month_spend": nanos_to_usd(await gw.usage.account_month_spend(principal.account_id)),
        "start": where.start.isoformat(),
        "end": where.end.isoformat(),
        "total": usage_total(rows),
        "by_mode": usage_by_mode(rows, gw.catalog),
        "data": [usage_line(r, gw.catalog) for r in rows],
    })


async def admin_usage(request: Request) -> Response:
    """Usage by day, model and unit for any account, key or model, with spend by mode and unit;
    `?format=csv` for a CSV export."""
    gw = admin_gateway(request)
    params = request.query_params
    account = text_param(params, "account_id")
    account_id = (await gw.accounts.find_account(account)).id if account else None
    where = usage_filter(request, account_id=account_id, key_id=text_param(params, "key_id"))
    rows = await gw.usage.by_day_and_model(where)
    if choice_param(params, "format", ("csv", "json")) == "csv":
        return Response(usage_csv(rows, gw.catalog), media_type="text/csv; charset=utf-8")
    return json_response({"object": "list", "start": where.start.isoformat(), "end": where.end.isoformat(),
                          "total": usage_total(rows), "by_mode": usage_by_mode(rows, gw.catalog),
                          "data": [usage_line(r, gw.catalog) for r in rows]})


async def revenue(request: Request) -> Response:
    """Revenue, upstream cost and margin per model for a date range."""
    gw = admin_gateway(request)
    where = usage_filter(request)
    report = revenue_report(await gw.usage.by_deployment(where), gw.catalog)
    return json_response({"object": "report", "start": where.start.isoformat(), "end": where.end.isoformat(),
                          "currency": "USD", **report})


routes = [
    Route("/admin/usage", admin_usage, methods=["GET"]),
    Route("/admin/reports/revenue", revenue, methods=["GET"]),
]
