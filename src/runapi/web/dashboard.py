"""The customer dashboard at `/dashboard`: sign in with an API key, see balance, usage and keys.

The session cookie holds the account and key IDs (signed); every page checks that the key is
still usable, so revoking the key a session was opened with ends that session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from runapi.clock import utcnow
from runapi.errors import AuthError
from runapi.query import text_param
from runapi.runtime import Gateway
from runapi.services import FEEDBACK_CATEGORIES
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

if TYPE_CHECKING:
    from runapi.tasks import Task, WebhookEvent

COOKIE = "runapi_session"
COOKIE_PATH = "/dashboard"
RECENT_GENERATIONS = 20
RECENT_TASKS = 10


class TaskRow(msgspec.Struct, frozen=True):
    task: Task
    webhooks: list[WebhookEvent]


async def recent_tasks(app: Starlette, account_id: str) -> list[TaskRow] | None:
    """The account's latest tasks with their webhook events; None when this gateway runs no tasks."""
    runtime = getattr(app.state, "tasks", None)
    if runtime is None:
        return None
    return [TaskRow(task, await runtime.webhooks.events(task.id) if task.callback_url else [])
            for task in await runtime.store.list(account_id, limit=RECENT_TASKS)]


class CustomerDashboard:
    def __init__(self, codec: SessionCodec) -> None:
        self.codec = codec

    def session(self, request: Request) -> dict[str, Any] | None:
        return self.codec.loads(request.cookies.get(COOKIE))

    async def signed_in(self, request: Request) -> dict[str, Any] | None:
        """The session if it belongs to a signed-in, still usable key; else None."""
        session = self.session(request)
        if session is None or not session.get("account"):
            return None
        gw: Gateway = request.app.state.gateway
        keys = {k.id: k for k in await gw.accounts.list_keys(session["account"])}
        key = keys.get(session.get("key", ""))
        return session if key is not None and key.usable(utcnow()) else None

    def _login_page(self, request: Request, error: str = "", status_code: int = 200) -> Response:
        session = self.session(request)
        if session is None or not session.get("csrf"):
            session = {"csrf": new_csrf_token()}
        response = render_page(request, "dashboard_login.html", {"csrf_token": session["csrf"], "error": error},
                               status_code=status_code, private=True)
        set_session_cookie(response, request, COOKIE, self.codec.dumps(session), COOKIE_PATH)
        return response

    async def login_form(self, request: Request) -> Response:
        if await self.signed_in(request) is not None:
            return see_other("/dashboard")
        return self._login_page(request)

    async def login(self, request: Request) -> Response:
        form = await read_form(request)
        check_csrf(form, self.session(request))
        gw: Gateway = request.app.state.gateway
        try:
            principal = await gw.auth.authenticate(form.get("api_key", "").strip(),
                                                   request.client.host if request.client else None)
        except AuthError:
            return self._login_page(request, error="invalid_key", status_code=401)
        session = {"account": principal.account_id, "key": principal.key_id, "csrf": new_csrf_token()}
        response = see_other("/dashboard")
        set_session_cookie(response, request, COOKIE, self.codec.dumps(session), COOKIE_PATH)
        return response

    async def logout(self, request: Request) -> Response:
        form = await read_form(request)
        check_csrf(form, self.session(request))
        response = see_other("/dashboard/login")
        clear_session_cookie(response, request, COOKIE, COOKIE_PATH)
        return response

    async def index(self, request: Request) -> Response:
        session = await self.signed_in(request)
        if session is None:
            return see_other("/dashboard/login")
        return await self._page(request, session)

    async def create_key(self, request: Request) -> Response:
        session = await self.signed_in(request)
        if session is None:
            return see_other("/dashboard/login")
        form = await read_form(request)
        check_csrf(form, session)
        gw: Gateway = request.app.state.gateway
        key, secret = await gw.accounts.create_key(session["account"], form.get("name", "").strip()[:200])
        # Rendered here, not redirected: the secret is shown once and never stored.
        return await self._page(request, session, new_key=(key.name or key.prefix, secret), status_code=201)

    async def revoke_key(self, request: Request) -> Response:
        session = await self.signed_in(request)
        if session is None:
            return see_other("/dashboard/login")
        form = await read_form(request)
        check_csrf(form, session)
        gw: Gateway = request.app.state.gateway
        await gw.accounts.revoke_key(request.path_params["key_id"], account_id=session["account"])
        return see_other("/dashboard")

    async def report_generation(self, request: Request) -> Response:
        """File a quality report on one of the account's generations (the Report button), then back."""
        session = await self.signed_in(request)
        if session is None:
            return see_other("/dashboard/login")
        form = await read_form(request)
        check_csrf(form, session)
        gw: Gateway = request.app.state.gateway
        generation_id = request.path_params["generation_id"]
        await gw.feedback.submit(session["account"], session.get("key"), generation_id,
                                 form.get("category", ""), form.get("comment", ""))
        return see_other(f"/dashboard?reported={generation_id}#generations")

    async def _page(self, request: Request, session: dict[str, Any], new_key: tuple[str, str] | None = None,
                    status_code: int = 200) -> Response:
        gw: Gateway = request.app.state.gateway
        account_id: str = session["account"]
        account = await gw.accounts.get_account(account_id)
        balance = await gw.accounts.balance(account_id)
        available = await gw.accounts.available(account_id)
        usage = await reports.account_usage(gw.usage, account_id, gw.catalog)
        recent = await gw.usage.generations(account_id, limit=RECENT_GENERATIONS)
        feedback = await gw.feedback.for_generations(account_id, (g.id for g in recent))
        tasks = await recent_tasks(request.app, account_id)
        keys = await gw.accounts.list_keys(account_id)
        return render_page(request, "dashboard.html", {
            "account": account, "balance": balance, "available": max(0, available),
            "tier": gw.limits.tiers.get(account.tier), "usage": usage,
            "spend_days": [(d.day.isoformat(), d.cost_nanos) for d in usage.days],
            "token_days": [(d.day.isoformat(), d.tokens) for d in usage.days],
            "spend_models": [(m.model, m.cost_nanos) for m in usage.models],
            "token_models": [(m.model, m.tokens) for m in usage.models],
            "recent": recent, "feedback": feedback, "categories": FEEDBACK_CATEGORIES,
            "reported": text_param(request.query_params, "reported") or "", "tasks": tasks, "keys": keys, "current_key": session.get("key"),
            "new_key": new_key, "csrf_token": session["csrf"], "now": utcnow(),
        }, status_code=status_code, private=True)

