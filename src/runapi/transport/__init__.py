"""The upstream transport: a pooled HTTP/1.1 client, the POST-and-read exchange with its timeouts and
error translation, and SSE framing. Adapters (`runapi.providers`) call upstreams through it."""

from runapi.transport.http_client import UpstreamClient, UpstreamResponse
from runapi.transport.sse import (
    DONE,
    SseEvent,
    frame,
    iter_sse_batches,
    parse_sse_event,
)
from runapi.transport.upstream_http import (
    Timeouts,
    error_message,
    get_from_upstream,
    post_to_upstream,
    read_upstream_body,
    response_too_large,
)

__all__ = [
    "DONE",
    "SseEvent",
    "Timeouts",
    "UpstreamClient",
    "UpstreamResponse",
    "error_message",
    "frame",
    "get_from_upstream",
    "iter_sse_batches",
    "parse_sse_event",
    "post_to_upstream",
    "read_upstream_body",
    "response_too_large",
]
