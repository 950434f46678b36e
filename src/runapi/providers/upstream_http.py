"""The HTTP exchange every adapter shares: POST with connect / first-byte / idle timeouts, read the
answer, and translate upstream failures into the error tree (`raise_for_status` is pure)."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import aiohttp
import msgspec

from runapi.errors import UpstreamError, UpstreamRejected, UpstreamTimeout, UpstreamUnavailable
from runapi.providers.base import Timeouts

_decode_any = msgspec.json.Decoder().decode


def error_message(body: bytes) -> str:
    """The provider's own error message from an error body (OpenAI or Anthropic shape), if any."""
    try:
        data = _decode_any(body)
    except msgspec.DecodeError:
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])[:500]
    return ""


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
    raise UpstreamRejected(message or f"the upstream rejected the request with HTTP {status}", upstream_status=status)


@functools.lru_cache(maxsize=64)
def _client_timeout(connect: float, idle: float) -> aiohttp.ClientTimeout:
    """aiohttp's timeout object for a deployment's timeouts, built once (it is immutable)."""
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=idle)


async def post_to_upstream(session: aiohttp.ClientSession, timeouts: Timeouts, url: str, headers: dict[str, str],
                           body: bytes) -> aiohttp.ClientResponse:
    """POST `body`; returns the response once its headers arrived with a success status.

    The caller must release the response. Raises `UpstreamTimeout` when the headers take longer
    than the first-byte timeout, `UpstreamUnavailable` on connect errors, and the translation of
    an HTTP error status otherwise.
    """
    timeout = _client_timeout(timeouts.connect, timeouts.idle)
    try:
        async with asyncio.timeout(timeouts.first_byte):
            response = await session.post(url, data=body, headers=headers, timeout=timeout)
    except TimeoutError as exc:
        raise UpstreamTimeout("the upstream did not answer in time") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(f"could not reach the upstream: {type(exc).__name__}") from exc
    if response.status >= 400:
        try:
            error_body = await response.read()
        except (aiohttp.ClientError, TimeoutError):
            error_body = b""
        finally:
            response.release()
        raise_for_status(response.status, error_body, response.headers)
    return response


def response_too_large(limit: int) -> UpstreamError:
    """The error for an upstream answer (or one stream event) over `max_response_bytes`: a 502, failed over."""
    return UpstreamError(f"the upstream answer (or one of its stream events) is larger than the {limit}-byte limit",
                         code="upstream_response_too_large")


async def read_upstream_body(response: aiohttp.ClientResponse, timeouts: Timeouts) -> bytes:
    """The whole body of a successful response (released afterwards), within the idle timeout and
    `max_response_bytes` (refused from Content-Length, else counted as it arrives, decompressed)."""
    limit = timeouts.max_response_bytes
    try:
        if (response.content_length or 0) > limit:
            raise response_too_large(limit)
        async with asyncio.timeout(timeouts.idle):
            parts: list[bytes] = []
            size = 0
            async for part in response.content.iter_any():
                size += len(part)
                if size > limit:
                    raise response_too_large(limit)
                parts.append(part)
            return b"".join(parts)
    except UpstreamError:
        response.close()  # unread bytes: the connection cannot go back to the pool
        raise
    except TimeoutError as exc:
        raise UpstreamTimeout("the upstream stalled while sending its answer") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(f"the upstream connection failed: {type(exc).__name__}") from exc
    finally:
        response.release()
