"""Tasks over HTTP: `/v1/tasks` (submit, list, get, cancel, deliveries), `/v1/outputs/{id}` (signed,
no API key), the account's webhook secret, and the operator's `/admin/` views and rotation."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runapi.clock import utcnow
from runapi.http.account_api import principal_of
from runapi.http.admin_api import admin_gateway
from runapi.http.asgi import bounded_body
from runapi.http.responses import json_response
from runapi.outbound import OutputExpired
from runapi.public_url import public_root
from runapi.query import choice_param, int_param, optional_int_param, text_param
from runapi.tasks import (
    DeliveryAttempt,
    TaskRuntime,
    WebhookEvent,
    decode_new_task,
    idempotency_key,
)

TASK_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
MAX_EXPIRES = 10**12  # an output URL's `expires` (Unix seconds) beyond this is not one we signed


def _runtime(request: Request) -> TaskRuntime:
    runtime: TaskRuntime = request.app.state.tasks
    return runtime


def _status_param(request: Request) -> str | None:
    return choice_param(request.query_params, "status", TASK_STATUSES)


async def create_task(request: Request) -> Response:
    runtime = _runtime(request)
    principal = await principal_of(request)
    body = await bounded_body(request, runtime.gw.settings.server.max_body_bytes)
    new, raw = decode_new_task(body)
    key = idempotency_key({k.encode("latin-1"): v.encode("latin-1") for k, v in request.headers.items()})
    origin = public_root(runtime.gw.settings.server, request.scope)
    task, replayed = await runtime.submit(principal, new, raw, origin, key)
    response = json_response(await runtime.view(task), status_code=202)
    response.headers["location"] = f"/v1/tasks/{task.id}"
    if replayed:
        response.headers["idempotent-replayed"] = "true"
    return response


async def list_tasks(request: Request) -> Response:
    runtime = _runtime(request)
    principal = await principal_of(request)
    limit = int_param(request.query_params, "limit", 20, 1, 100)
    rows = await runtime.store.list(principal.account_id, status=_status_param(request), limit=limit + 1,
                                    after=text_param(request.query_params, "after"))
    data = await runtime.views(rows[:limit])
    return json_response({"object": "list", "data": data, "has_more": len(rows) > limit,
                          "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None})


async def get_task(request: Request) -> Response:
    runtime = _runtime(request)
    principal = await principal_of(request)
    task = await runtime.store.get(request.path_params["task_id"], principal.account_id)
    return json_response(await runtime.view(task))


async def cancel_task(request: Request) -> Response:
    runtime = _runtime(request)
    principal = await principal_of(request)
    task = await runtime.cancel(principal, request.path_params["task_id"])
    return json_response(await runtime.view(task))


def event_json(event: WebhookEvent) -> dict[str, Any]:
    return {"id": event.id, "object": "webhook_event", "type": event.event_type, "url": event.url,
            "status": event.status, "attempts": event.attempts, "created_at": int(event.created_at.timestamp()),
            "next_attempt_at": int(event.next_attempt_at.timestamp()) if event.status == "pending" else None,
            "finished_at": int(event.finished_at.timestamp()) if event.finished_at else None}


def attempt_json(attempt: DeliveryAttempt) -> dict[str, Any]:
    return {"id": attempt.id, "object": "webhook_delivery", "webhook_id": attempt.event_id,
            "attempt": attempt.attempt, "url": attempt.url, "status_code": attempt.status_code,
            "error": attempt.error, "duration_ms": attempt.duration_ms, "outcome": attempt.outcome,
            "created_at": attempt.created_at.timestamp()}


async def deliveries_json(runtime: TaskRuntime, task_id: str) -> dict[str, Any]:
    events = await runtime.webhooks.events(task_id)
    attempts = await runtime.webhooks.attempts(task_id)
    return {"object": "list", "task_id": task_id, "events": [event_json(e) for e in events],
            "data": [attempt_json(a) for a in attempts]}


async def list_deliveries(request: Request) -> Response:
    runtime = _runtime(request)
    principal = await principal_of(request)
    task = await runtime.store.get(request.path_params["task_id"], principal.account_id)
    return json_response(await deliveries_json(runtime, task.id))


async def get_output(request: Request) -> Response:
    """A finished task's output, for whoever holds its signed URL (no API key) until it expires."""
    runtime = _runtime(request)
    task_id = request.path_params["task_id"]
    params = request.query_params
    runtime.signer.verify(task_id, optional_int_param(params, "expires", 0, MAX_EXPIRES),
                          text_param(params, "signature"), time.time())
    output = await runtime.store.output(task_id)
    now = utcnow()
    if output is None or output.expires_at <= now:
        raise OutputExpired("This output has expired and is no longer kept.")
    max_age = int((output.expires_at - now).total_seconds())
    return Response(output.body, media_type=output.content_type,
                    headers={"cache-control": f"private, max-age={max_age}", "x-runapi-task-id": task_id})


async def get_webhook_secret(request: Request) -> Response:
    runtime = _runtime(request)
    principal = await principal_of(request)
    secrets = await runtime.webhooks.signing_secrets(principal.account_id)
    return json_response({"object": "webhook_secret", "secret": secrets[0], "previous_secret_active": len(secrets) > 1})


async def rotate_webhook_secret(request: Request) -> Response:
    runtime = _runtime(request)
    principal = await principal_of(request)
    secret = await runtime.webhooks.rotate(principal.account_id, runtime.settings.webhook_secret_grace)
    return json_response({"object": "webhook_secret", "secret": secret,
                          "previous_secret_valid_for_s": runtime.settings.webhook_secret_grace})


async def admin_rotate_webhook_secret(request: Request) -> Response:
    gw = admin_gateway(request)
    runtime = _runtime(request)
    account = await gw.accounts.find_account(request.path_params["account_id"])
    secret = await runtime.webhooks.rotate(account.id, runtime.settings.webhook_secret_grace)
    return json_response({"object": "webhook_secret", "account_id": account.id, "secret": secret,
                          "previous_secret_valid_for_s": runtime.settings.webhook_secret_grace})


async def admin_list_tasks(request: Request) -> Response:
    admin_gateway(request)
    runtime = _runtime(request)
    params = request.query_params
    limit = int_param(params, "limit", 100, 1, 1000)
    rows = await runtime.store.list(text_param(params, "account_id"), status=_status_param(request),
                                    limit=limit, after=text_param(params, "after"))
    return json_response({"object": "list", "data": await runtime.views(rows)})


async def admin_list_deliveries(request: Request) -> Response:
    admin_gateway(request)
    runtime = _runtime(request)
    task = await runtime.store.get(request.path_params["task_id"])
    return json_response(await deliveries_json(runtime, task.id))


routes = [
    Route("/v1/tasks", create_task, methods=["POST"]),
    Route("/v1/tasks", list_tasks, methods=["GET"]),
    Route("/v1/tasks/{task_id}", get_task, methods=["GET"]),
    Route("/v1/tasks/{task_id}/cancel", cancel_task, methods=["POST"]),
    Route("/v1/tasks/{task_id}/deliveries", list_deliveries, methods=["GET"]),
    Route("/v1/outputs/{task_id}", get_output, methods=["GET"]),
    Route("/v1/webhooks/secret", get_webhook_secret, methods=["GET"]),
    Route("/v1/webhooks/secret/rotate", rotate_webhook_secret, methods=["POST"]),
    Route("/admin/tasks", admin_list_tasks, methods=["GET"]),
    Route("/admin/tasks/{task_id}/deliveries", admin_list_deliveries, methods=["GET"]),
    Route("/admin/accounts/{account_id}/webhook-secret/rotate", admin_rotate_webhook_secret, methods=["POST"]),
]
