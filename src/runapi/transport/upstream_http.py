"""The HTTP exchange every adapter shares: POST with connect / first-byte / idle timeouts, read the
answer, and translate upstream failures into the error tree (`raise_for_status` is pure)."""

from __future__ import annotations

from typing import Any

import msgspec

from runapi.errors import (
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from runapi.transport.http_client import UpstreamClient, UpstreamResponse

_decode_any = msgspec.json.Decoder().decode


class Timeouts(msgspec.Struct, frozen=True):
    """An upstream call's time limits (seconds) and the largest answer or stream event it may send."""

    connect: float = 10.0
    first_byte: float = 120.0
    idle: float = 120.0
    max_response_bytes: int = 32 * 1024 * 1024  # a larger answer (or stream event) is an UpstreamError


# Providers' codes for "refused by the content filter" → OpenAI's, so clients recognise it whatever the
# upstream: Z.ai's 1301 (https://docs.z.ai/api-reference/api-code), OpenAI's own.
CONTENT_POLICY = "content_policy_violation"
_CONTENT_POLICY_CODES = frozenset({"1301", CONTENT_POLICY})


def _error_object(body: bytes) -> dict[str, Any]:
    try:
        data = _decode_any(body)
    except msgspec.DecodeError:
        return {}
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else {}


def error_message(body: bytes) -> str:
    """The provider's own error message from an error body (OpenAI or Anthropic shape), if any."""
    message = _error_object(body).get("message")
    return message[:500] if isinstance(message, str) else ""


def error_code(body: bytes) -> str | None:
    """OpenAI's code for a provider's refusal we translate (the content filter), else None."""
    code = _error_object(body).get("code")
    return CONTENT_POLICY if str(code) in _CONTENT_POLICY_CODES else None


def raise_for_status(status: int, body: bytes, headers: Any) -> None:
    """Translate an upstream HTTP failure into the error tree (pure)."""
    message = error_message(body)
    if status == 429:
        retry_after = headers.get("retry-after")
        try:
            seconds = float(retry_after) if retry_after else None
        except ValueError:
            seconds = None
        raise UpstreamUnavailable(f"the upstream is rate limiting: {message or 'HTTP 429'}", retry_after=seconds)
    if status >= 500 or status in (401, 403, 404, 408):
        # 401/403: our provider key is wrong; 404: the deployment's model is gone. Not the client's fault.
        raise UpstreamUnavailable(f"the upstream failed with HTTP {status}" + (f": {message}" if message else ""))
    raise UpstreamRejected(message or f"the upstream rejected the request with HTTP {status}", upstream_status=status,
                           code=error_code(body))


async def get_from_upstream(client: UpstreamClient, timeouts: Timeouts, url: str,
                            headers: dict[str, str]) -> UpstreamResponse:
    """GET `url`, as `post_to_upstream` posts (the same timeouts and error translation)."""
    return await post_to_upstream(client, timeouts, url, headers, b"", method=b"GET")


async def post_to_upstream(client: UpstreamClient, timeouts: Timeouts, url: str, headers: dict[str, str],
                           body: bytes, *, method: bytes = b"POST") -> UpstreamResponse:
    """POST `body`; returns the response once its head arrived with a success status.

    The caller must release the response. Raises `UpstreamTimeout` when the head takes longer
    than the first-byte timeout, `UpstreamUnavailable` on connection errors, and the translation of
    an HTTP error status otherwise.
    """
    try:
        response = await client.post(url, headers, body, connect_timeout=timeouts.connect,
                                     head_timeout=timeouts.first_byte, idle_timeout=timeouts.idle, method=method)
    except TimeoutError as exc:  # before OSError: TimeoutError is one
        raise UpstreamTimeout("the upstream did not answer in time") from exc
    except OSError as exc:
        raise UpstreamUnavailable(f"could not reach the upstream: {type(exc).__name__}") from exc
    if response.status >= 400:
        try:
            error_body = await read_upstream_body(response, timeouts)
        except UpstreamError:
            error_body = b""
        raise_for_status(response.status, error_body, response.headers)
    return response


def response_too_large(limit: int) -> UpstreamError:
    """The error for an upstream answer (or one stream event) over `max_response_bytes`: a 502, failed over."""
    return UpstreamError(f"the upstream answer (or one of its stream events) is larger than the {limit}-byte limit",
                         code="upstream_response_too_large")


async def read_upstream_body(response: UpstreamResponse, timeouts: Timeouts) -> bytes:
    """The whole body of a response (released afterwards), each read within the idle timeout, and at
    most `max_response_bytes` (refused from Content-Length, else counted as it arrives, decoded)."""
    limit = timeouts.max_response_bytes
    try:
        if (response.content_length or 0) > limit:
            raise response_too_large(limit)
        parts: list[bytes] = []
        size = 0
        while (part := await response.next_chunk()) is not None:
            size += len(part)
            if size > limit:
                raise response_too_large(limit)
            parts.append(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)
    except TimeoutError as exc:
        raise UpstreamTimeout("the upstream stalled while sending its answer") from exc
    except OSError as exc:
        raise UpstreamUnavailable(f"the upstream connection failed: {type(exc).__name__}") from exc
    finally:
        response.release()  # a body not read to its end closes the connection instead of pooling it
