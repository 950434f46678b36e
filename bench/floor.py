"""The latency and CPU floor of a Python proxy: RunAPI's upstream client with no gateway logic.

`python -m bench.floor --upstream URL --port N --mode raw|asgi` serves `POST /v1/chat/completions`
by sending the body to the upstream with `runapi.transport.http_client.UpstreamClient` and relaying
the answer: whole for JSON (content-length), piece by piece for SSE (chunked). No auth, limits,
pricing or settlement.
- `raw`: a bare asyncio protocol on uvloop with httptools. This is what any Python proxy pays.
- `asgi`: the same as an ASGI app under uvicorn, with the gateway's own server protocol. It adds
  only the ASGI server to `raw`.
The difference between these rows and `runapi-sqlite` is the gateway's pipeline
(`bench/run.py --targets direct,nginx,floor-raw,floor-asgi,runapi-sqlite`).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import httptools
import uvloop

from runapi.transport.http_client import UpstreamClient, UpstreamResponse

JSON_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
TIMEOUTS: dict[str, float] = {"connect_timeout": 5.0, "head_timeout": 60.0, "idle_timeout": 60.0}


class Forwarder:
    """POSTs a body to the upstream's chat-completions URL over one pooled client."""

    def __init__(self, upstream: str) -> None:
        self.url = upstream.rstrip("/") + "/v1/chat/completions"
        self.client = UpstreamClient()

    async def post(self, body: bytes) -> UpstreamResponse:
        return await self.client.post(self.url, {"content-type": "application/json"}, body, **TIMEOUTS)


def is_stream(response: UpstreamResponse) -> bool:
    return response.headers.get("content-type", "").startswith("text/event-stream")


class RawProxy(asyncio.Protocol):
    """One client connection: requests in order (no pipelining), answers relayed as they come."""

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.close()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        body, self.body = b"".join(self.body), []
        asyncio.get_running_loop().create_task(self.answer(body))

    async def answer(self, body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        response = await self.forwarder.post(body)
        try:
            if not is_stream(response):
                data = await response.read()
                transport.write(JSON_HEAD % len(data) + data)
                return
            head = SSE_HEAD
            async for chunk in response.chunks():
                transport.write(head + b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                head = b""
            transport.write(head + b"0\r\n\r\n")
        finally:
            response.release()


def asgi_app(forwarder: Forwarder) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        parts = []
        while True:
            message = await receive()
            parts.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        response = await forwarder.post(b"".join(parts))
        try:
            if not is_stream(response):
                data = await response.read()
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(data)).encode())]})
                await send({"type": "http.response.body", "body": data})
                return
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            async for chunk in response.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            response.release()

    return app


async def serve(upstream: str, port: int, mode: str) -> None:
    forwarder = Forwarder(upstream)
    if mode == "raw":
        server = await asyncio.get_running_loop().create_server(lambda: RawProxy(forwarder), "127.0.0.1", port)
        await server.serve_forever()
        return
    import uvicorn

    from runapi.config import ServerSettings
    from runapi.http.server_protocol import guarded_protocol

    config = uvicorn.Config(asgi_app(forwarder), host="127.0.0.1", port=port, loop="none", lifespan="off",
                            http=guarded_protocol(ServerSettings()), log_level="warning", access_log=False)
    await uvicorn.Server(config).serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", required=True, help="the upstream's base URL, e.g. http://127.0.0.1:8790")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("raw", "asgi"), default="raw")
    args = parser.parse_args()
    uvloop.run(serve(args.upstream, args.port, args.mode))


if __name__ == "__main__":
    main()
