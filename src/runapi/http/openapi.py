"""The OpenAPI 3.1 document served at `/openapi.json`: every route of the gateway.

Request bodies are the msgspec Structs the edge decodes with (`msgspec.json.schema_components`), so
the document cannot drift from validation; responses are described by their stable fields only
(extra fields may appear). `tests/test_security_openapi.py` checks every route is documented and
fuzzes every operation with Schemathesis against a live gateway.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from runapi.catalog import InputSpec, build_input_schema
from runapi.http.admin_api import Credit, NewAccount, NewKey
from runapi.http.feedback_api import FeedbackRequest
from runapi.http.limits_api import KeyLimitsPatch, TierPin
from runapi.http.tasks_api import MAX_EXPIRES, TASK_STATUSES
from runapi.protocols.anthropic import CountTokensRequest, MessagesRequest
from runapi.protocols.openai import ChatRequest, CompletionRequest
from runapi.protocols.responses import ResponsesRequest
from runapi.query import MAX_TEXT
from runapi.services import MAX_REPORTS_LISTED
from runapi.tasks import MAX_METADATA_KEYS, NewTask

_BODIES: dict[str, Any] = {
    "ChatRequest": ChatRequest, "CompletionRequest": CompletionRequest, "MessagesRequest": MessagesRequest,
    "ResponsesRequest": ResponsesRequest, "CountTokensRequest": CountTokensRequest,
    "NewTask": NewTask, "NewAccount": NewAccount, "NewKey": NewKey, "Credit": Credit, "TierPin": TierPin,
    "KeyLimitsPatch": KeyLimitsPatch, "FeedbackRequest": FeedbackRequest,
}

_ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
}
_ANTHROPIC_ERROR = {
    "type": "object", "required": ["type", "error"],
    "properties": {"type": {"const": "error"}, "error": {"type": "object", "required": ["type", "message"]}},
}
_OBJECT = {"type": "object"}
_SSE_EVENT = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}
_LIST = {"type": "object", "required": ["data"], "properties": {"data": {"type": "array"}}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _op(summary: str, *, auth: str | None = "apiKey", body: str | None = None, ok: int = 200,
        ok_schema: dict[str, Any] | None = None, ok_content: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None, params: list[dict[str, Any]] | None = None,
        html: bool = False) -> dict[str, Any]:
    """One operation: its success response, and every error as `default` (OpenAI-shaped JSON, or HTML pages)."""
    if html:
        content = {"text/html": {"schema": {"type": "string"}}}
        responses: dict[str, Any] = {str(ok): {"description": "OK", "content": content},
                                     "303": {"description": "Redirect"},
                                     # an unknown page or method is answered like the API's errors
                                     "default": {"description": "Error page", "content": {**content, **_json(_ERROR)}}}
    else:
        success = ok_content or _json(ok_schema or _OBJECT)
        responses = {str(ok): {"description": "OK", "content": success},
                     "default": {"description": "Error", "content": _json(error or _ERROR)}}
    op: dict[str, Any] = {"summary": summary, "responses": responses, "parameters": params or []}
    if auth is not None:
        op["security"] = [{auth: []}]
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(_ref(body))}
    return op


def _path(*names: str) -> list[dict[str, Any]]:
    return [{"name": n, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}} for n in names]


def _query(**names: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "required": False, "schema": s} for n, s in names.items()]


_DAY = {"type": "string", "format": "date"}
_TEXT = {"type": "string", "maxLength": MAX_TEXT}  # IDs, cursors, search terms (`runapi.query`)
_STATUS = {"type": "string", "enum": list(TASK_STATUSES)}
_EXPIRES = {"type": "integer", "minimum": 0, "maximum": MAX_EXPIRES}


def _limit(high: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": 1, "maximum": high}

_FORM = {"application/x-www-form-urlencoded": {"schema": {"type": "object", "additionalProperties": {"type": "string"}}}}


def _form(op: dict[str, Any]) -> dict[str, Any]:
    op["requestBody"] = {"required": False, "content": _FORM}
    return op


def _task_input(request: dict[str, Any], title: str) -> dict[str, Any]:
    """A request body as a task's `input`: `model` may be given beside it instead, and it does not stream."""
    properties = {**request["properties"], "stream": {"enum": [False, None]}}
    return {**request, "title": title, "properties": properties,
            "required": [name for name in request.get("required", []) if name != "model"]}


def _refine_bodies(components: dict[str, Any]) -> None:
    """What the Structs cannot say: rules across fields, and formats checked after decoding."""
    components["ChatTaskInput"] = _task_input(components["ChatRequest"], "ChatTaskInput")
    components["MessagesTaskInput"] = _task_input(components["MessagesRequest"], "MessagesTaskInput")
    task = components["NewTask"]
    task["properties"]["metadata"]["anyOf"][0]["maxProperties"] = MAX_METADATA_KEYS
    model = {"type": "string", "minLength": 1}
    task["allOf"] = [
        {"anyOf": [  # the model is named once: beside the input, or in it
            {"required": ["model"], "properties": {"model": model, "input": {"not": {"required": ["model"]}}}},
            {"properties": {"model": {"type": "null"}, "input": {"required": ["model"], "properties": {"model": model}}}},
        ]},
        {"anyOf": [  # the input is a request of the task's endpoint
            {"properties": {"endpoint": {"const": "/v1/chat/completions"}, "input": _ref("ChatTaskInput")}},
            {"required": ["endpoint"], "properties": {"endpoint": {"const": "/v1/messages"},
                                                      "input": _ref("MessagesTaskInput")}},
        ]},
    ]
    for body in ("NewKey", "KeyLimitsPatch"):
        components[body]["properties"]["expires_at"] = {"anyOf": [{"type": "string", "format": "date-time"},
                                                                  {"type": "null"}]}


def _embeddings_request() -> dict[str, Any]:
    """OpenAI's embeddings request; a model narrows it (dimensions, inputs per request) in its own schema."""
    schema = build_input_schema("embedding", InputSpec(max_dimensions=MAX_EMBEDDING_DIMENSIONS), 0)
    schema.pop("$schema")
    schema["properties"]["model"] = {"type": "string", "minLength": 1}
    schema["properties"]["input"]["anyOf"][0]["maxItems"] = MAX_EMBEDDING_INPUTS
    schema["properties"]["input"]["anyOf"][3]["maxItems"] = MAX_EMBEDDING_INPUTS
    return {"title": "EmbeddingsRequest", **schema}


def _images_request() -> dict[str, Any]:
    """OpenAI's image request; a model narrows it (sizes, qualities, `n`) in its own schema."""
    schema = build_input_schema("image", InputSpec(max_images=MAX_IMAGES), 0)
    schema.pop("$schema")
    schema["properties"]["model"] = {"type": "string", "minLength": 1}
    return {"title": "ImagesRequest", **schema}


def _videos_request() -> dict[str, Any]:
    """`POST /v1/videos`: OpenAI's fields (JSON, or the multipart form the openai SDK posts) and the provider's."""
    text = {"type": "string"}
    return {"title": "VideosRequest", "type": "object", "required": ["model"], "properties": {
        "model": {"type": "string", "minLength": 1}, "prompt": text,
        "seconds": {"type": "string", "pattern": "^[0-9]+$"}, "size": text,
        "input_reference": {"description": "An image file (multipart), or {\"image_url\": URL or data URL}"},
        "quality": text, "fps": {"type": "integer"}, "with_audio": {"type": "boolean"}, "image_url": text}}


MAX_IMAGES = 10
MAX_EMBEDDING_DIMENSIONS = 8192
MAX_EMBEDDING_INPUTS = 2048


_TAGS = [  # (path prefix, tag), first match wins: how /docs groups the operations
    ("/v1/chat/", "OpenAI-compatible"), ("/v1/responses", "OpenAI-compatible"), ("/v1/completions", "OpenAI-compatible"),
    ("/v1/embeddings", "OpenAI-compatible"), ("/v1/images/", "OpenAI-compatible"), ("/v1/videos", "OpenAI-compatible"), ("/v1/models", "Models"), ("/v1/messages", "Anthropic-compatible"),
    ("/v1/generations", "Your account"), ("/v1/usage", "Your account"), ("/v1/webhooks", "Tasks and webhooks"),
    ("/v1/tasks", "Tasks and webhooks"), ("/v1/outputs", "Tasks and webhooks"),
    ("/v1/media", "Tasks and webhooks"), ("/admin/dashboard", "Web pages"),
    ("/admin/", "Admin API"), ("/health", "Operations"), ("/metrics", "Operations"), ("/openapi.json", "Operations"),
]


def _tag(path: str) -> str:
    return next((tag for prefix, tag in _TAGS if path.startswith(prefix)), "Web pages")


def build_openapi() -> dict[str, Any]:
    """The whole document, as a plain dict (JSON-ready)."""
    _, components = msgspec.json.schema_components(list(_BODIES.values()),
                                                   ref_template="#/components/schemas/{name}")
    for name, type_ in _BODIES.items():  # expose each body under its own, stable name
        if type_.__name__ != name:
            components[name] = components.pop(type_.__name__)
    _refine_bodies(components)
    components["EmbeddingsRequest"] = _embeddings_request()
    components["ImagesRequest"] = _images_request()
    components["VideosRequest"] = _videos_request()
    video_ok = {"type": "object", "required": ["id", "object", "status", "model", "created_at", "progress"]}
    create_video = _op("Create a video: an asynchronous task billed per video delivered (poll GET /v1/videos/{id}; "
                       "FAIL, timeout and cancellation are free)", body="VideosRequest", ok_schema=video_ok)
    create_video["requestBody"]["content"]["multipart/form-data"] = {"schema": _ref("VideosRequest")}
    chat_ok = {"application/json": {"schema": {"type": "object", "required": ["id", "object", "choices"]}},
               "text/event-stream": {"schema": _SSE_EVENT}}
    responses_ok = {"application/json": {"schema": {"type": "object", "required": ["id", "object", "output"]}},
                    "text/event-stream": {"schema": _SSE_EVENT}}
    messages_ok = {"application/json": {"schema": {"type": "object", "required": ["id", "type"]}},
                   "text/event-stream": {"schema": _SSE_EVENT}}
    paths: dict[str, dict[str, Any]] = {
        "/v1/chat/completions": {"post": _op("Create a chat completion (JSON or SSE)", body="ChatRequest",
                                             ok_content=chat_ok)},
        "/v1/completions": {"post": _op("Create a legacy text completion (JSON or SSE), on models whose upstream "
                                        "serves them (404 `unsupported_endpoint` otherwise)",
                                        body="CompletionRequest", ok_content=chat_ok)},
        "/v1/responses": {"post": _op("Create a response: the OpenAI Responses API (JSON or SSE)", body="ResponsesRequest",
                                      ok_content=responses_ok)},
        "/v1/responses/{response_id}": {
            "get": _op("One of your stored responses", params=_path("response_id")),
            "delete": _op("Delete one of your stored responses", params=_path("response_id"))},
        "/v1/responses/{response_id}/input_items": {
            "get": _op("A stored response's input items", ok_schema=_LIST, params=_path("response_id") + _query(
                limit=_limit(100), after=_TEXT, order={"type": "string", "enum": ["asc", "desc"]}))},
        "/v1/embeddings": {"post": _op(
            "Create embeddings (each model's own limits: its `input_schema` in GET /v1/models/{id})",
            body="EmbeddingsRequest", ok_schema={"type": "object", "required": ["object", "data", "model", "usage"]})},
        "/v1/images/generations": {"post": _op(
            "Generate images, answered as signed cached output URLs or base64 (each model's sizes, qualities and "
            "images per request: its `input_schema` in GET /v1/models/{id})",
            body="ImagesRequest", ok_schema={"type": "object", "required": ["created", "data", "model", "usage"]})},
        "/v1/videos": {"post": create_video,
                       "get": _op("List your videos", ok_schema=_LIST, params=_query(
                           limit=_limit(100), after=_TEXT, order={"type": "string", "enum": ["desc"]}))},
        "/v1/videos/{video_id}": {
            "get": _op("One of your videos", ok_schema=video_ok, params=_path("video_id")),
            "delete": _op("Cancel a video in progress (free), or delete a finished one's stored files",
                          params=_path("video_id"))},
        "/v1/videos/{video_id}/content": {"get": _op(
            "A completed video's MP4 (or `variant=thumbnail`), with byte ranges",
            ok_content={"video/mp4": {"schema": {"type": "string", "format": "binary"}},
                        "image/png": {"schema": {"type": "string", "format": "binary"}}},
            params=_path("video_id") + _query(variant={"type": "string", "enum": ["video", "thumbnail"]}))},
        "/v1/messages": {"post": _op("Anthropic Messages (JSON or SSE)", body="MessagesRequest",
                                     ok_content=messages_ok, error=_ANTHROPIC_ERROR)},
        "/v1/messages/count_tokens": {"post": _op("Count a Messages request's input tokens", body="CountTokensRequest",
                                                  ok_schema={"type": "object", "required": ["input_tokens"]},
                                                  error=_ANTHROPIC_ERROR)},
        "/v1/models": {"get": _op("List models", auth=None, ok_schema=_LIST)},
        "/v1/models/{model_id}": {"get": _op("One model", auth=None, params=_path("model_id"))},
        "/v1/models/{model_id}/skill": {"get": _op("The model family's SKILL.md", auth=None, params=_path("model_id"),
                                                   ok_content={"text/markdown": {"schema": {"type": "string"}}})},
        "/v1/generations/{generation_id}": {"get": _op("One of your generations", params=_path("generation_id"))},
        "/v1/generations/{generation_id}/feedback": {
            "post": _op("Report a quality issue with one of your generations (201; 200 when it replaces your "
                        "earlier report)", body="FeedbackRequest", ok=201, params=_path("generation_id"))},
        "/v1/usage": {"get": _op("Your usage and balance", params=_query(start=_DAY, end=_DAY, model=_TEXT,
                                                                         key_id=_TEXT))},
        "/v1/tasks": {"post": _op("Submit a task", body="NewTask", ok=202),
                      "get": _op("List your tasks", ok_schema=_LIST,
                                 params=_query(limit=_limit(100), after=_TEXT, status=_STATUS))},
        "/v1/tasks/{task_id}": {"get": _op("One of your tasks", params=_path("task_id"))},
        "/v1/tasks/{task_id}/cancel": {"post": _op("Cancel a task", params=_path("task_id"))},
        "/v1/tasks/{task_id}/deliveries": {"get": _op("A task's webhook deliveries", ok_schema=_LIST,
                                                      params=_path("task_id"))},
        "/v1/outputs/{task_id}": {"get": _op("A task's output, by signed URL", auth=None,
                                             params=_path("task_id") + _query(expires=_EXPIRES, signature=_TEXT))},
        "/v1/media/{key}": {"get": _op("Generated media (image, video), by signed cached output URL", auth=None,
                                       ok_content={"application/octet-stream": {"schema": {"type": "string",
                                                                                           "format": "binary"}}},
                                       params=_path("key") + _query(expires=_EXPIRES, signature=_TEXT))},
        "/v1/webhooks/secret": {"get": _op("Your webhook signing secret")},
        "/v1/webhooks/secret/rotate": {"post": _op("Rotate your webhook signing secret")},
        "/health": {"get": _op("Liveness", auth=None)},
        "/metrics": {"get": _op("Prometheus metrics (clients on this host, or Bearer RUNAPI_METRICS_TOKEN)", auth=None,
                                ok_content={"text/plain": {"schema": {"type": "string"}}})},
        "/openapi.json": {"get": _op("This document", auth=None)},
        "/admin/accounts": {"post": _op("Create an account", auth="adminToken", body="NewAccount", ok=201),
                            "get": _op("List accounts", auth="adminToken", ok_schema=_LIST)},
        "/admin/accounts/{account_id}": {"get": _op("One account", auth="adminToken", params=_path("account_id"))},
        "/admin/accounts/{account_id}/keys": {
            "post": _op("Create a key", auth="adminToken", body="NewKey", ok=201, params=_path("account_id")),
            "get": _op("List an account's keys", auth="adminToken", ok_schema=_LIST, params=_path("account_id"))},
        "/admin/accounts/{account_id}/credits": {"post": _op("Add a ledger entry", auth="adminToken", body="Credit",
                                                             ok=201, params=_path("account_id"))},
        "/admin/accounts/{account_id}/ledger": {"get": _op("An account's ledger", auth="adminToken", ok_schema=_LIST,
                                                           params=_path("account_id"))},
        "/admin/accounts/{account_id}/tier": {"put": _op("Pin or unpin a tier", auth="adminToken", body="TierPin",
                                                         params=_path("account_id"))},
        "/admin/accounts/{account_id}/webhook-secret/rotate": {
            "post": _op("Rotate an account's webhook secret", auth="adminToken", params=_path("account_id"))},
        "/admin/keys/{key_id}": {"delete": _op("Revoke a key", auth="adminToken", params=_path("key_id"))},
        "/admin/keys/{key_id}/limits": {
            "get": _op("A key's limits", auth="adminToken", params=_path("key_id")),
            "patch": _op("Change a key's limits", auth="adminToken", body="KeyLimitsPatch", params=_path("key_id"))},
        "/admin/generations": {"get": _op("Generations", auth="adminToken", ok_schema=_LIST,
                                         params=_query(account_id=_TEXT, limit=_limit(1000)))},
        "/admin/tiers": {"get": _op("Usage tiers", auth="adminToken")},
        "/admin/feedback": {"get": _op("Quality reports, newest first, with their generations", auth="adminToken",
                                       ok_schema=_LIST, params=_query(model=_TEXT, limit=_limit(MAX_REPORTS_LISTED)))},
        "/admin/tasks": {"get": _op("Tasks", auth="adminToken", ok_schema=_LIST,
                                    params=_query(account_id=_TEXT, status=_STATUS, limit=_limit(1000),
                                                  after=_TEXT))},
        "/admin/tasks/{task_id}/deliveries": {"get": _op("A task's deliveries", auth="adminToken", ok_schema=_LIST,
                                                         params=_path("task_id"))},
        "/admin/usage": {"get": _op("Usage per account, key or model", auth="adminToken",
                                    ok_content={**_json(_LIST), "text/csv": {"schema": {"type": "string"}}},
                                    params=_query(start=_DAY, end=_DAY, account_id=_TEXT, key_id=_TEXT, model=_TEXT,
                                                  format={"type": "string", "enum": ["json", "csv"]}))},
        "/admin/reports/revenue": {"get": _op("Revenue, upstream cost and margin", auth="adminToken",
                                              params=_query(start=_DAY, end=_DAY))},
        "/": {"get": _op("Home page", auth=None, html=True)},
        "/models": {"get": _op("Model catalog page", auth=None, html=True,
                               params=_query(provider=_TEXT, mode=_TEXT, q=_TEXT, lang=_TEXT))},
        "/models/{model_id}": {"get": _op("Model page", auth=None, html=True, params=_path("model_id"))},
        "/pricing": {"get": _op("Prices of every model and the usage tiers", auth=None, html=True)},
        "/docs": {"get": _op("API reference (this document, in Swagger UI)", auth=None, html=True)},
        "/docs/assets/{name}": {"get": _op("Swagger UI's files", auth=None, params=_path("name"),
                                           ok_content={"text/css": {"schema": {"type": "string"}},
                                                       "text/javascript": {"schema": {"type": "string"}}})},
        "/dashboard": {"get": _op("Customer dashboard", auth=None, html=True)},
        "/dashboard/login": {"get": _op("Customer sign-in form", auth=None, html=True),
                             "post": _form(_op("Sign in with an API key", auth=None, html=True))},
        "/dashboard/logout": {"post": _form(_op("Sign out", auth=None, html=True))},
        "/dashboard/keys": {"post": _form(_op("Create a key (CSRF token required)", auth=None, html=True))},
        "/dashboard/keys/{key_id}/revoke": {"post": _form(_op("Revoke a key (CSRF token required)", auth=None,
                                                              html=True, params=_path("key_id")))},
        "/dashboard/generations/{generation_id}/feedback": {"post": _form(_op(
            "Report a quality issue (CSRF token required)", auth=None, html=True, params=_path("generation_id")))},
        "/admin/dashboard": {"get": _op("Operator dashboard", auth=None, html=True)},
        "/admin/dashboard/login": {"get": _op("Operator sign-in form", auth=None, html=True),
                                   "post": _form(_op("Sign in with the admin token", auth=None, html=True))},
        "/admin/dashboard/logout": {"post": _form(_op("Sign out", auth=None, html=True))},
        "/admin/dashboard/topup": {"post": _form(_op("Top up an account (CSRF token required)", auth=None,
                                                     html=True))},
    }
    for path, item in paths.items():
        for operation in item.values():
            operation["tags"] = [_tag(path)]
    return {
        "openapi": "3.1.0",
        "info": {"title": "RunAPI", "version": "1", "description": "OpenAI- and Anthropic-compatible LLM gateway. "
                 "Money is USD as decimal strings or numbers; errors are `{\"error\": {message, type, param, code}}`."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer", "description": "An API key `rk-...`"},
            "adminToken": {"type": "http", "scheme": "bearer", "description": "RUNAPI_ADMIN_TOKEN"}}},
    }


@functools.cache
def _encoded() -> bytes:  # built once per process: the routes never change at run time
    return msgspec.json.encode(build_openapi())


async def openapi_json(request: Request) -> Response:
    return Response(_encoded(), media_type="application/json")
