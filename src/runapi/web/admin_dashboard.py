"""The operator dashboard at `/admin/dashboard`: accounts, balances and tiers, top-ups, revenue
per model, and model and deployment health. Signed in with `RUNAPI_ADMIN_TOKEN`.

The session carries a fingerprint of the admin token, so rotating the token ends every session.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from runapi.accounting import revenue_report
from runapi.errors import InvalidRequest, NotFound, PermissionDenied
from runapi.health import DeploymentHealth, HealthReport
from runapi.money import usd_to_nanos
from runapi.query import int_param, text_param
from runapi.runtime import Gateway
from runapi.services import FeedbackReport, UsageFilter
from runapi.web import reports
from runapi.web.rendering import render_page, see_other
from runapi.web.sessions import (
    SessionCodec,
    check_csrf,
    clear_session_cookie,
    new_csrf_token,
    read_form,
    set_session_cookie,
)

COOKIE = "runapi_admin"
COOKIE_PATH = "/admin/dashboard"
REVENUE_DAYS = 30
ACCOUNTS_PER_PAGE = 50  # the accounts table shows one page, newest first; balances and spend are read for it alone
REPORTS_SHOWN = 200
MAX_TOPUP_USD = Decimal(1_000_000_000)  # keeps every balance far inside a signed 64-bit nano-dollar count


class ModelHealthRow(msgspec.Struct, frozen=True):
    model: str
    status: str
    health: HealthReport
    deployments: list[DeploymentHealth]


def health_rows(gw: Gateway) -> list[ModelHealthRow]:
    """Live health of every model and of each of its deployments (with its circuit)."""
    return [ModelHealthRow(entry.id, *gw.model_health(entry)) for entry in gw.catalog.models.values()]


def reports_by_model(reports: list[FeedbackReport]) -> list[tuple[str, list[FeedbackReport]]]:
    """Reports grouped by model, the model with most reports first (then by name); newest first within. Pure."""
    groups: dict[str, list[FeedbackReport]] = {}
    for report in reports:
        groups.setdefault(report.feedback.model, []).append(report)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


def parse_usd(text: str) -> int:
    """A positive USD amount (at most $1e9, at most 9 decimals) in nano-dollars; `InvalidRequest` otherwise."""
    try:
        amount = Decimal(text.strip().lstrip("$"))
        if not amount.is_finite() or not 0 < amount <= MAX_TOPUP_USD:
            raise ValueError(amount)
        return usd_to_nanos(amount)
    except (InvalidOperation, ValueError) as exc:
        raise InvalidRequest(f"{text!r} is not a positive amount of USD up to {MAX_TOPUP_USD:,} with at most "
                             "9 decimals.", param="amount_usd") from exc


class AdminDashboard:
    def __init__(self, codec: SessionCodec, admin_token: str) -> None:
        self.codec = codec
        self._token = admin_token
        self._fingerprint = hashlib.sha256(b"runapi-admin\0" + admin_token.encode()).hexdigest()[:32]

    def _check_enabled(self) -> None:
        if not self._token:
            raise PermissionDenied("The operator dashboard is disabled: set RUNAPI_ADMIN_TOKEN to enable it.")

    def session(self, request: Request) -> dict[str, Any] | None:
        return self.codec.loads(request.cookies.get(COOKIE))

    def signed_in(self, request: Request) -> dict[str, Any] | None:
        session = self.session(request)
        if session is None or not self._token or session.get("admin") != self._fingerprint:
            return None
        return session

    def _login_page(self, request: Request, error: str = "", status_code: int = 200) -> Response:
        session = self.session(request) or {}
        if not session.get("csrf"):
            session = {"csrf": new_csrf_token()}
        response = render_page(request, "admin_login.html", {"csrf_token": session["csrf"], "error": error},
                               status_code=status_code, private=True)
        set_session_cookie(response, request, COOKIE, self.codec.dumps(session), COOKIE_PATH)
        return response

    async def login_form(self, request: Request) -> Response:
        self._check_enabled()
        if self.signed_in(request) is not None:
            return see_other("/admin/dashboard")
        return self._login_page(request)

    async def login(self, request: Request) -> Response:
        self._check_enabled()
        form = await read_form(request)
        check_csrf(form, self.session(request))
        if not hmac.compare_digest(form.get("token", "").strip().encode(), self._token.encode()):
            return self._login_page(request, error="invalid_token", status_code=401)
        response = see_other("/admin/dashboard")
        session = {"admin": self._fingerprint, "csrf": new_csrf_token()}
        set_session_cookie(response, request, COOKIE, self.codec.dumps(session), COOKIE_PATH)
        return response

    async def logout(self, request: Request) -> Response:
        form = await read_form(request)
        check_csrf(form, self.session(request))
        response = see_other("/admin/dashboard/login")
        clear_session_cookie(response, request, COOKIE, COOKIE_PATH)
        return response

    async def topup(self, request: Request) -> Response:
        session = self.signed_in(request)
        if session is None:
            return see_other("/admin/dashboard/login")
        form = await read_form(request)
        check_csrf(form, session)
        gw: Gateway = request.app.state.gateway
        account = await gw.accounts.get_account(form.get("account_id", ""))
        nanos = parse_usd(form.get("amount_usd", ""))
        await gw.accounts.add_credit(account.id, "topup", nanos, form.get("note", "").strip()[:500])
        page = int_param(form, "page", 1, 1, 10**9)
        return see_other(f"/admin/dashboard?page={page}&topped_up={account.id}#accounts")

    async def index(self, request: Request) -> Response:
        self._check_enabled()
        session = self.signed_in(request)
        if session is None:
            return see_other("/admin/dashboard/login")
        gw: Gateway = request.app.state.gateway
        total = await gw.accounts.count_accounts()
        pages = max(1, -(-total // ACCOUNTS_PER_PAGE))
        page = min(int_param(request.query_params, "page", 1, 1, 10**9), pages)
        accounts = await gw.accounts.list_accounts((page - 1) * ACCOUNTS_PER_PAGE, ACCOUNTS_PER_PAGE,
                                                   newest_first=True)
        topped_up = text_param(request.query_params, "topped_up")
        shown = [a.id for a in accounts] + ([topped_up] if topped_up else [])
        balances = await gw.usage.balances(shown)
        spend = await gw.usage.spend_by_account(shown)
        first, last = reports.period(REVENUE_DAYS)
        revenue = revenue_report(await gw.usage.by_deployment(UsageFilter(start=first, end=last)), gw.catalog)
        quality_reports = await gw.feedback.reports(limit=REPORTS_SHOWN)
        topped_up_account = None
        if topped_up:
            with contextlib.suppress(NotFound):
                topped_up_account = await gw.accounts.get_account(topped_up)
        return render_page(request, "admin_dashboard.html", {
            "accounts": accounts, "balances": balances, "spend": spend, "revenue": revenue,
            "revenue_days": REVENUE_DAYS, "revenue_start": first, "revenue_end": last,
            "revenue_models": [(m["model"], usd_to_nanos(m["revenue"])) for m in revenue["data"]],
            "health": health_rows(gw), "csrf_token": session["csrf"],
            "reports": reports_by_model(quality_reports), "reports_shown": REPORTS_SHOWN,
            "topped_up": topped_up_account, "accounts_total": total, "page": page, "pages": pages,
        }, private=True)
