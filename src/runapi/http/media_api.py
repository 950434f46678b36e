"""Cached output URLs of the media store: `GET /v1/media/{key}?expires=..&signature=..`.

No API key: the signature is the credential (see `runapi.outbound.output_urls`). Answers the object
with its content type, single byte ranges (206 / 416), and 410 once the URL or the object's
retention has ended.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from runapi.http.responses import json_response
from runapi.media.keys import content_type_of
from runapi.media.ranges import RangeNotSatisfiable, parse_range
from runapi.media.runtime import MediaRuntime
from runapi.query import optional_int_param, text_param
from runapi.outbound import OutputExpired

__all__ = ["routes", "stored_media_response"]

MAX_EXPIRES = 10**12  # an `expires` (Unix seconds) beyond this is not one we signed


def _days(seconds: float) -> str:
    return f"{seconds / 86400:g} days" if seconds >= 86400 else f"{seconds:g} seconds"


def _utc(seconds: int) -> str:
    """ISO 8601 UTC time of Unix `seconds`; far beyond year 9999 (never an expired URL's), the number."""
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):
        return f"Unix time {seconds}"


async def get_media(request: Request) -> Response:
    """A stored image or video, for whoever holds its signed URL, until it expires."""
    media: MediaRuntime = request.app.state.media
    key: str = request.path_params["key"]
    params = request.query_params
    expires = optional_int_param(params, "expires", 0, MAX_EXPIRES)
    retention = media.settings.media.retention
    kept = f"media is kept for {_days(retention)} after it was generated, then deleted"
    media.signer.verify_media(key, expires, text_param(params, "signature"), time.time(),
                              f"This media URL expired at {_utc(expires or 0)}: {kept}. "
                              "Generate it again for a new URL.")
    return await stored_media_response(request, media, key, expires or 0,
                                       f"This media is no longer kept: {kept}.")


async def stored_media_response(request: Request, media: MediaRuntime, key: str, expires: int,
                                gone_message: str) -> Response:
    """A kept object (a single byte range when asked), cacheable until `expires` (Unix seconds);
    410 `gone_message` when the store no longer has it."""
    size = await media.store.size(key)
    if size is None:
        raise OutputExpired(gone_message, code="media_expired")
    try:
        byte_range = parse_range(request.headers.get("range"), size)
    except RangeNotSatisfiable:
        answer = json_response({"error": {"message": f"The range is outside the {size}-byte file.",
                                          "type": "invalid_request_error", "param": "range",
                                          "code": "range_not_satisfiable"}}, status_code=416)
        answer.headers["content-range"] = f"bytes */{size}"
        return answer
    start, end = (0, size) if byte_range is None else (byte_range.start, byte_range.end)
    headers = {"accept-ranges": "bytes", "content-length": str(end - start),
               "cache-control": f"private, max-age={max(0, expires - int(time.time()))}, immutable",
               "etag": f'"{key.rsplit("/", 1)[-1]}"'}
    if byte_range is not None:
        headers["content-range"] = byte_range.content_range()
    status = 200 if byte_range is None else 206
    if request.method == "HEAD":
        return Response(b"", status_code=status, headers=headers, media_type=content_type_of(key))
    return StreamingResponse(media.store.read(key, start, end), status_code=status, headers=headers,
                             media_type=content_type_of(key))


routes = [Route("/v1/media/{key:path}", get_media, methods=["GET"])]
