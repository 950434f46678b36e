"""The simulator's media routes: embeddings, images and video jobs in OpenAI's and Z.ai's shapes.

OpenAI paths sit under `/v1`, Z.ai's under `/api/paas/v4` (its real base URL is
`https://api.z.ai/api/paas/v4`, so a deployment's base URL keeps the same suffix). `MediaRoutes`
answers with a `SimResponse` value; the ASGI app writes it. Errors use each provider's body:
OpenAI's `{"error": {message, type, param, code}}`, Z.ai's `{"error": {code, message}}` with its
business codes (https://docs.z.ai/api-reference/api-code: 1214 invalid parameter, 1302 too many
requests, 500 internal error).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from .config import SimulatorConfig
from .embeddings import Shape, embeddings_body, parse_embeddings

__all__ = ["MEDIA_POST_PATHS", "ZAI_PREFIX", "MediaRoutes", "SimResponse", "media_error", "shape_of"]

_encode = msgspec.json.Encoder().encode
ZAI_PREFIX = "/api/paas/v4"
MEDIA_POST_PATHS = frozenset({"/v1/embeddings", f"{ZAI_PREFIX}/embeddings"})
"""Media paths answered to `POST` with a JSON body."""
_ZAI_CODES = {400: "1214", 404: "1222", 405: "1222", 429: "1302", 500: "500"}
_OPENAI_TYPES = {400: "invalid_request_error", 404: "invalid_request_error", 405: "invalid_request_error",
                 429: "requests", 500: "server_error"}
_FAULT_MESSAGES = {429: "Rate limit reached (simulated).", 500: "The server had an error (simulated)."}


class SimResponse(msgspec.Struct, frozen=True):
    """A whole simulator answer: status, body and headers (content type included)."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def shape_of(path: str) -> Shape:
    """Which provider's wire shape a path speaks."""
    return "zai" if path.startswith(ZAI_PREFIX) else "openai"


def media_error(shape: Shape, status: int, message: str) -> SimResponse:
    """An error answer in the provider's body shape."""
    body: dict[str, Any]
    if shape == "zai":
        body = {"error": {"code": _ZAI_CODES.get(status, "500"), "message": message}}
    else:
        body = {"error": {"message": message, "type": _OPENAI_TYPES.get(status, "server_error"), "param": None,
                          "code": None}}
    headers = (("retry-after", "1"),) if status == 429 else ()
    return SimResponse(status, _encode(body), headers=headers)


class MediaRoutes:
    """Media endpoints of one simulator instance (a development tool)."""

    def post(self, path: str, raw: dict[str, Any], config: SimulatorConfig, fault: str) -> SimResponse:
        """Answer a media `POST` whose JSON object body is `raw`, bent by `fault` ("" for none)."""
        shape = shape_of(path)
        if fault in ("429", "500"):
            status: Literal[429, 500] = 429 if fault == "429" else 500
            return media_error(shape, status, _FAULT_MESSAGES[status])
        try:
            call = parse_embeddings(raw, shape)
        except ValueError as exc:
            return media_error(shape, 400, str(exc))
        return SimResponse(200, embeddings_body(call, shape))
