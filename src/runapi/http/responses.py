"""JSON responses encoded with msgspec; Decimals are written as exact JSON numbers."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from runapi.errors import InvalidRequest

_encode = msgspec.json.Encoder(decimal_format="number").encode


def json_response(data: Any, status_code: int = 200) -> Response:
    return Response(_encode(data), status_code=status_code, media_type="application/json")


async def read_json(request: Request, type_: Any) -> Any:
    """Decode a small JSON body into `type_`, or raise `InvalidRequest` naming the bad field."""
    body = await request.body()
    try:
        return msgspec.json.decode(body or b"{}", type=type_)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"Invalid request body: {exc}") from exc
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:  # bad UTF-8, nesting too deep
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc
