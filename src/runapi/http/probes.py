"""Answers to the reachability probes clients send before their first call.

Claude Code warms its connection with `HEAD {ANTHROPIC_BASE_URL}/api/hello` (Anthropic's API
answers it), and load balancers and uptime checks try `HEAD /`. Both get a 200 with no body
(`GET /api/hello` a small JSON body), without authentication: they reveal nothing but that the
gateway is up, as `/health` does. `GET /` stays the web catalog's front page.
"""

from __future__ import annotations

from runapi.http.asgi import Receive, Scope, Send, send_bytes

__all__ = ["answers_probe", "probe"]

_HELLO = b'{"message":"hello"}'


def answers_probe(method: str, path: str) -> bool:
    """Whether `probe` answers this request (checked before routing)."""
    return (method == "HEAD" and path in ("/", "/api/hello")) or (method == "GET" and path == "/api/hello")


async def probe(scope: Scope, receive: Receive, send: Send) -> None:
    """200: a HEAD gets the headers only, `GET /api/hello` a small JSON body."""
    if scope["method"] == "HEAD":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_HELLO))]})
        await send({"type": "http.response.body", "body": b""})
        return
    await send_bytes(send, 200, _HELLO, [])
