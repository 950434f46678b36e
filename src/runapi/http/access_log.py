"""One access line per request: method, path, status, model, generation id, latency, overhead, cost.

`AccessLog.run` wraps the app's dispatch (hot raw-ASGI endpoints and Starlette's routes alike)
when the `runapi.access` logger is enabled for INFO; otherwise the request goes straight through.
The HTTP status and the `x-runapi-overhead-ms` header are read from the response as it is sent;
model, generation id, outcome and cost come from the pipeline's settlement (`CallFacts`), so
logging costs no lookup. A line never carries a key: no header or query string is logged, and a
key-like token in a path is redacted.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from runapi.http.asgi import Message, Receive, Scope, Send
from runapi.pipeline import CALL_FACTS, CallFacts

ACCESS_LOGGER = "runapi.access"
MAX_PATH = 300
_KEY_LIKE = re.compile(r"rk-[A-Za-z0-9_\-]+")
_OVERHEAD = b"x-runapi-overhead-ms"

App = Callable[[Scope, Receive, Send], Awaitable[None]]


def usd_text(nanos: int) -> str:
    """Integer nano-dollars as exact USD text, without trailing zeros: 7000 → "0.000007", 0 → "0"."""
    sign = "-" if nanos < 0 else ""
    whole, fraction = divmod(abs(nanos), 1_000_000_000)
    text = f"{sign}{whole}.{fraction:09d}".rstrip("0")
    return text[:-1] if text.endswith(".") else text


def loggable_path(path: str) -> str:
    """The path as logged: key-like tokens redacted, non-printable characters escaped, length capped."""
    if "rk-" in path:
        path = _KEY_LIKE.sub("rk-[redacted]", path)
    if not path.isprintable():
        path = path.encode("unicode_escape").decode("ascii")
    return path if len(path) <= MAX_PATH else path[:MAX_PATH] + "…"


class AccessEntry(CallFacts):
    """One request as logged; the pipeline fills the `CallFacts` part."""

    __slots__ = ("method", "path", "client", "status", "overhead", "latency_ms")

    def __init__(self, scope: Scope) -> None:
        super().__init__()
        self.method: str = scope["method"]
        self.path = loggable_path(scope["path"])
        client = scope.get("client")
        self.client = str(client[0]) if client else ""
        self.status = 0  # 0: no response was started (the client left first)
        self.overhead: bytes | None = None
        self.latency_ms = 0.0

    def log_fields(self) -> dict[str, Any]:
        """The line's fields, for JSON lines (null where a request made no call)."""
        return {
            "message": f"{self.method} {self.path} {self.status or '-'}",
            "method": self.method, "path": self.path, "status": self.status or None,
            "model": self.model or None, "generation_id": self.generation_id or None,
            "outcome": self.outcome or None,
            "latency_ms": round(self.latency_ms, 3),
            "overhead_ms": msgspec.Raw(self.overhead) if self.overhead is not None else None,  # the header's number
            "cost_usd": usd_text(self.cost_nanos) if self.cost_nanos is not None else None,
            "client": self.client or None,
        }

    def __str__(self) -> str:
        """`POST /v1/chat/completions 200 · glm-4.5-air gen-… · 12.4 ms (overhead 0.312 ms) · $0.0000123`."""
        parts = [f"{self.method} {self.path} {self.status or '- (client gone)'}"]
        if self.generation_id:
            parts.append(f"{self.model} {self.generation_id}")
        timing = f"{self.latency_ms:.1f} ms"
        if self.overhead is not None:
            timing += f" (overhead {self.overhead.decode('ascii', 'replace')} ms)"
        parts.append(timing)
        if self.outcome == "failed":
            parts.append("failed, not charged")
        elif self.cost_nanos is not None:
            cost = f"${usd_text(self.cost_nanos)}"
            parts.append(cost if self.outcome == "succeeded" else f"{self.outcome}, {cost}")
        return " · ".join(parts)


class AccessLog:
    """Logs each request's line after its response, when `runapi.access` is enabled for INFO."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)

    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)

    async def run(self, app: App, scope: Scope, receive: Receive, send: Send) -> None:
        entry = AccessEntry(scope)
        started = time.perf_counter()
        token = CALL_FACTS.set(entry)

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry.status = message["status"]
                for name, value in message.get("headers", ()):
                    if name == _OVERHEAD:
                        entry.overhead = value
            await send(message)

        try:
            await app(scope, receive, send_and_note)
        finally:
            CALL_FACTS.reset(token)
            entry.latency_ms = (time.perf_counter() - started) * 1000
            # `handle` of a record made here: `info()` would also look up the caller's frame (for
            # %(pathname)s, which an access line never shows), a third of the cost of a line.
            logger = self.logger
            logger.handle(logger.makeRecord(logger.name, logging.INFO, "", 0, entry, (), None))
