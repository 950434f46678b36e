"""Quality reports: `POST /v1/generations/{id}/feedback` (the generation's own account) and
`GET /admin/feedback` (the operator's list, newest first, with each generation's facts)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from runapi.errors import InvalidRequest, PayloadTooLarge
from runapi.http.account_api import generation_json, principal_of
from runapi.http.admin_api import admin_gateway
from runapi.http.asgi import bounded_body
from runapi.http.responses import json_response
from runapi.query import int_param, text_param
from runapi.runtime import Gateway
from runapi.services import MAX_COMMENT_CHARS, MAX_REPORTS_LISTED, feedback_json

MAX_FEEDBACK_BODY = 16 * 1024

Category = Literal["incorrect", "incomplete", "refusal", "harmful", "formatting", "slow", "other"]


class FeedbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    """A quality report on one of your generations."""

    category: Category
    comment: Annotated[str, msgspec.Meta(max_length=MAX_COMMENT_CHARS)] = ""


def decode_feedback(body: bytes) -> FeedbackRequest:
    """The typed body, or `InvalidRequest` naming the bad field."""
    if len(body) > MAX_FEEDBACK_BODY:
        raise PayloadTooLarge(f"A report is at most {MAX_FEEDBACK_BODY} bytes.")
    try:
        return msgspec.json.decode(body or b"{}", type=FeedbackRequest)
    except msgspec.ValidationError as exc:
        message = str(exc)
        path = message.rpartition(" - at `$.")[2].rstrip("`") if " - at `$." in message else None
        raise InvalidRequest(f"Invalid report: {message}", param=path) from exc
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc


async def post_feedback(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    principal = await principal_of(request)
    report = decode_feedback(await bounded_body(request, MAX_FEEDBACK_BODY))
    feedback, created = await gw.feedback.submit(
        principal.account_id, principal.key_id, request.path_params["generation_id"], report.category, report.comment)
    return json_response(feedback_json(feedback), status_code=201 if created else 200)


async def list_feedback(request: Request) -> Response:
    gw = admin_gateway(request)
    reports = await gw.feedback.reports(text_param(request.query_params, "model"),
                                        int_param(request.query_params, "limit", 100, 1, MAX_REPORTS_LISTED))
    data: list[dict[str, Any]] = [{**feedback_json(r.feedback), "account_id": r.feedback.account_id,
                                   "generation": generation_json(r.generation)} for r in reports]
    return json_response({"object": "list", "data": data})


routes = [
    Route("/v1/generations/{generation_id}/feedback", post_feedback, methods=["POST"]),
    Route("/admin/feedback", list_feedback, methods=["GET"]),
]
