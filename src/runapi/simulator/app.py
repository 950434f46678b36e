"""The development upstream simulator as a raw ASGI app, and `serve()` to run it in uvicorn.

Routes: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models` (OpenAI); `POST /v1/messages`,
`POST /v1/messages/count_tokens` (Anthropic); the media routes of `runapi.simulator.media_routes`
(embeddings, images, video jobs; OpenAI's under `/v1`, Z.ai's under `/api/paas/v4`, where
`/chat/completions` answers too); control endpoints `POST /_sim/faults`
(`{"faults": [...]}`, consumed one per model request, before any configured fault),
`POST /_sim/script` (`{"script": [turns]}`: the instance's scripted agent exchange, see
`runapi.simulator.script`; `[]` ends it), `POST /_sim/reset` (faults, stats and the script
set at run time cleared) and `GET /_sim/stats` (request count, the last request's body, headers and
path with query, model requests by path; media `GET`s are not counted). A model request's body may carry
`"x_sim": {...}` with `SimulatorConfig` fields (`script` included) that override the instance config;
an `x-sim` header with the same JSON object does the same for relays that drop unknown body fields
(Portkey's gateway, in the benchmark). The body's `x_sim` wins when both are sent.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections import deque
from typing import Any

import msgspec
import uvicorn
from starlette.types import Receive, Scope, Send

from .anthropic_protocol import AnthropicMessages, count_tokens_body
from .config import FAULTS, SimulatorConfig, with_overrides
from .faults import STALL_SECONDS, drop_connection, play_stream, wait_for_disconnect
from .generation import WireFormat, plan_reply
from .completions_protocol import OpenAICompletions
from .media_routes import (
    MEDIA_POST_PATHS,
    ZAI_PREFIX,
    MediaRoutes,
    SimResponse,
    is_media_get,
    media_error,
    shape_of,
)
from .openai_protocol import MODELS_BODY, OpenAIChat
from .script import ScriptTurn
from .tokens import IMAGE_TOKENS, count_images
from .videos import parse_form

__all__ = ["SimulatorApp", "create_simulator_app", "serve"]

_OPENAI = OpenAIChat()
_ANTHROPIC = AnthropicMessages()
_TEXT = OpenAICompletions()
_JSON = b"application/json"
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_MESSAGES = {429: "Rate limit reached (simulated).", 500: "The server had an error (simulated)."}


class _FaultsRequest(msgspec.Struct, forbid_unknown_fields=True):
    faults: list[str]


class _ScriptRequest(msgspec.Struct, forbid_unknown_fields=True):
    script: tuple[ScriptTurn, ...]


class SimulatorApp:
    """ASGI app that plays OpenAI and Anthropic upstreams on loopback (a development tool).

    One instance is one simulated upstream: its fault queue and request stats
    live on the instance. Not for production traffic.
    """

    def __init__(self, config: SimulatorConfig | None = None) -> None:
        self.config = config or SimulatorConfig()
        self._initial_config = self.config
        self._faults: deque[str] = deque()
        self._requests = 0
        self._last_request: Any = None
        self._last_headers: dict[str, str] = {}
        self._last_target = ""
        self._by_path: dict[str, int] = {}
        self._media = MediaRoutes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path == f"{ZAI_PREFIX}/chat/completions":
            path = "/v1/chat/completions"  # Z.ai's chat is OpenAI's wire format under its own base URL
        if path in MEDIA_POST_PATHS:
            return await self._media_post(scope, path, method, receive, send)
        if is_media_get(path):
            if method != "GET":
                return await _write(send, media_error(shape_of(path), 405, f"Method {method} not allowed on {path}"))
            query = dict(urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            return await _write(send, self._media.get(path, query, _base_url(scope)))
        fmt: WireFormat = _ANTHROPIC if path.startswith("/v1/messages") else _TEXT if path == "/v1/completions" else _OPENAI
        expected = "GET" if path in ("/v1/models", "/_sim/stats") else "POST"
        if path not in _ROUTES:
            return await _respond(send, 404, fmt.error(404, f"Invalid URL ({method} {path})"))
        if method != expected:
            return await _respond(send, 405, fmt.error(405, f"Method {method} not allowed on {path}"))
        body = await _read_body(receive) if method == "POST" else b""
        if path in ("/v1/chat/completions", "/v1/completions", "/v1/messages"):
            await self._generate(fmt, scope, body, receive, send)
        elif path == "/v1/messages/count_tokens":
            await self._count_tokens(scope, body, send)
        elif path == "/v1/models":
            await _respond(send, 200, MODELS_BODY)
        elif path == "/_sim/faults":
            await self._queue_faults(body, send)
        elif path == "/_sim/script":
            await self._set_script(body, send)
        elif path == "/_sim/reset":
            self._faults.clear()
            self.config = self._initial_config
            self._requests, self._last_request, self._last_headers, self._last_target = 0, None, {}, ""
            self._by_path = {}
            await _respond(send, 200, b'{"ok":true}')
        else:
            stats = {"requests": self._requests, "last_request": self._last_request, "last_headers": self._last_headers,
                     "last_target": self._last_target, "by_path": self._by_path}
            await _respond(send, 200, _encode(stats))

    def _record(self, scope: Scope, raw: Any) -> None:
        self._requests += 1
        self._by_path[scope["path"]] = self._by_path.get(scope["path"], 0) + 1
        self._last_request = raw
        self._last_headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
        query = scope.get("query_string", b"").decode("latin-1")
        self._last_target = scope["path"] + (f"?{query}" if query else "")

    async def _generate(self, fmt: WireFormat, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        try:
            raw = _decode(body)
        except msgspec.DecodeError as exc:
            self._record(scope, None)
            return await _respond(send, 400, fmt.error(400, f"Invalid JSON body: {exc}"))
        self._record(scope, raw)
        if not isinstance(raw, dict):
            return await _respond(send, 400, fmt.error(400, "The request body must be a JSON object"))
        try:
            config = self.config
            if "x_sim" in raw:
                config = with_overrides(config, raw["x_sim"])
            elif (header := _sim_header(scope)) is not None:
                config = with_overrides(config, _decode(header))
            call = fmt.parse(raw)
            if config.image_tokens != IMAGE_TOKENS and isinstance(raw.get("messages"), list):
                extra = count_images(raw["messages"]) * (config.image_tokens - IMAGE_TOKENS)
                call = msgspec.structs.replace(call, prompt_tokens=call.prompt_tokens + extra)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            return await _respond(send, 400, fmt.error(400, str(exc)))
        if config.reject_system_messages and any(
                isinstance(m, dict) and m.get("role") == "system" for m in raw.get("messages") or ()) \
                and fmt is _ANTHROPIC:
            message = "messages: role 'system' is not supported on this model (simulated)"
            return await _respond(send, 400, fmt.error(400, message))
        fault = self._faults.popleft() if self._faults else config.fault
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        if fault in ("429", "500") or (fault == "error_event" and not call.stream):
            status = 429 if fault == "429" else 500
            headers = [(b"retry-after", b"1")] if status == 429 else []
            return await _respond(send, status, fmt.error(status, _MESSAGES[status]), headers)
        if fault == "cut" and not call.stream:
            return await drop_connection(send)
        if fault == "stall" and not call.stream:
            return await wait_for_disconnect(receive, STALL_SECONDS)
        reply = plan_reply(call, config)
        if call.stream:
            await play_stream(send, receive, fmt.stream(reply, call, config), fault, config.chunk_delay_ms / 1000)
        else:
            await _respond(
                send, 200, fmt.malformed_json if fault == "bad_json" else fmt.completion(reply, call, config)
            )

    async def _media_post(self, scope: Scope, path: str, method: str, receive: Receive, send: Send) -> None:
        shape = shape_of(path)
        if method != "POST":
            return await _write(send, media_error(shape, 405, f"Method {method} not allowed on {path}"))
        body = await _read_body(receive)
        content_type = _header(scope, b"content-type")
        try:
            raw = parse_form(content_type, body) if content_type.startswith("multipart/form-data") else _decode(body)
        except (msgspec.DecodeError, ValueError) as exc:
            self._record(scope, None)
            return await _write(send, media_error(shape, 400, f"Invalid body: {exc}"))
        self._record(scope, raw)
        if not isinstance(raw, dict):
            return await _write(send, media_error(shape, 400, "The request body must be a JSON object"))
        try:
            config = with_overrides(self.config, raw["x_sim"]) if "x_sim" in raw else self.config
        except msgspec.ValidationError as exc:
            return await _write(send, media_error(shape, 400, str(exc)))
        fault = self._faults.popleft() if self._faults else config.fault
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        if fault == "cut":
            return await drop_connection(send)
        if fault == "stall" and not path.startswith(("/v1/videos", f"{ZAI_PREFIX}/videos")):
            return await wait_for_disconnect(receive, STALL_SECONDS)
        await _write(send, self._media.post(path, raw, config, fault, _base_url(scope)))

    async def _count_tokens(self, scope: Scope, body: bytes, send: Send) -> None:
        try:
            raw = _decode(body)
            self._record(scope, raw)
            answer = count_tokens_body(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return await _respond(send, 400, _ANTHROPIC.error(400, str(exc)))
        await _respond(send, 200, answer)

    async def _queue_faults(self, body: bytes, send: Send) -> None:
        try:
            faults = msgspec.json.decode(body, type=_FaultsRequest).faults
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return await _respond(send, 400, _OPENAI.error(400, str(exc)))
        unknown = [fault for fault in faults if fault not in FAULTS]
        if unknown:
            return await _respond(send, 400, _OPENAI.error(400, f"unknown faults {unknown}, expected {sorted(FAULTS)}"))
        self._faults.extend(faults)
        await _respond(send, 200, _encode({"queued": list(self._faults)}))

    async def _set_script(self, body: bytes, send: Send) -> None:
        try:
            script = msgspec.json.decode(body, type=_ScriptRequest).script
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return await _respond(send, 400, _OPENAI.error(400, str(exc)))
        self.config = msgspec.structs.replace(self.config, script=script)
        await _respond(send, 200, _encode({"turns": len(script)}))


_ROUTES = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/models",
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/_sim/faults",
        "/_sim/reset",
        "/_sim/script",
        "/_sim/stats",
    }
)


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body"):
        return body
    parts = [body]
    while message.get("more_body"):
        message = await receive()
        parts.append(message.get("body", b""))
    return b"".join(parts)


def _sim_header(scope: Scope) -> bytes | None:
    """The `x-sim` header's JSON (config overrides), if the request carries one."""
    return next((value for name, value in scope["headers"] if name == b"x-sim"), None)


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    head = [(b"content-type", _JSON), (b"content-length", b"%d" % len(body)), *(headers or ())]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str:
    return next((value.decode("latin-1") for key, value in scope["headers"] if key == name), "")


def _base_url(scope: Scope) -> str:
    """Scheme and host the client called, for the file URLs the simulator hands out."""
    server = scope.get("server") or ("127.0.0.1", 80)
    return f"{scope.get('scheme', 'http')}://{_header(scope, b'host') or f'{server[0]}:{server[1]}'}"


async def _write(send: Send, response: SimResponse) -> None:
    head = [(b"content-type", response.content_type.encode()), (b"content-length", b"%d" % len(response.body)),
            *((name.encode(), value.encode()) for name, value in response.headers)]
    await send({"type": "http.response.start", "status": response.status, "headers": head})
    await send({"type": "http.response.body", "body": response.body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_simulator_app(config: SimulatorConfig | None = None) -> SimulatorApp:
    """A fresh simulator ASGI app (a development tool) with its own fault queue and stats."""
    return SimulatorApp(config)


def serve(host: str, port: int, config: SimulatorConfig | None = None) -> None:
    """Run the development simulator in uvicorn until interrupted (blocking); used by `runapi sim`.

    Shutdown waits at most 2 s for stalled requests.
    """
    uvicorn.run(
        create_simulator_app(config),
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
