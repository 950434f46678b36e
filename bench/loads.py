"""Load generators: wrk (with a Lua script) for JSON, an asyncio aiohttp client for SSE.

Both return a `LoadResult` with the same fields, so a cell's row does not depend on
which client produced it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import aiohttp

WRK_LUA = r"""
function init(args)
    local f = assert(io.open(args[1], "rb"))
    wrk.body = f:read("*a")
    f:close()
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    if args[2] ~= nil and args[2] ~= "" then
        wrk.headers["Authorization"] = "Bearer " .. args[2]
    end
    for i = 3, #args do  -- further headers as "name: value"
        local name, value = string.match(args[i], "^([^:]+):%s*(.*)$")
        wrk.headers[name] = value
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'WRKJSON {"requests":%d,"duration_us":%d,"errors":%d,"p50":%d,"p90":%d,"p99":%d,"mean":%.1f,"max":%d}\n',
        summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""


@dataclass
class LoadResult:
    requests: int
    errors: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    overhead_hdr_p50_ms: float | None = None
    client: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


WRK_KEYS_LUA = r"""
-- Like WRK_LUA, but each request carries the next key of a keys file (one a line), in turn from a
-- random start per thread.
local keys, index, body = {}, 0, nil
function init(args)
    local f = assert(io.open(args[1], "rb"))
    body = f:read("*a")
    f:close()
    for line in io.lines(args[2]) do
        if line ~= "" then keys[#keys + 1] = line end
    end
    math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
    index = math.random(#keys)
end

function request()
    index = index % #keys + 1
    return wrk.format("POST", nil, {["Content-Type"] = "application/json",
                                    ["Authorization"] = "Bearer " .. keys[index]}, body)
end
""" + WRK_LUA[WRK_LUA.index("function done"):]


def run_wrk_keys(url: str, body: bytes, keys_file: Path, concurrency: int, duration_s: float,
                 workdir: Path) -> LoadResult:
    """`run_wrk`, each request with the next key of `keys_file` (one a line)."""
    script, body_path = workdir / "post-keys.lua", workdir / f"body-{zlib.crc32(body):08x}.json"
    script.write_text(WRK_KEYS_LUA)
    body_path.write_bytes(body)
    return _wrk(["-s", str(script), url, "--", str(body_path), str(keys_file)], concurrency, duration_s)


def _wrk(args: list[str], concurrency: int, duration_s: float) -> LoadResult:
    threads = 1 if concurrency < 32 else 2
    argv = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{max(1, round(duration_s))}s",
            "--timeout", "10s", *args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    data = json.loads(line.removeprefix("WRKJSON "))
    return LoadResult(requests=data["requests"], errors=data["errors"], duration_s=data["duration_us"] / 1e6,
                      p50_ms=data["p50"] / 1000, p90_ms=data["p90"] / 1000, p99_ms=data["p99"] / 1000, client="wrk")


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, body: bytes, api_key: str, concurrency: int, duration_s: float, workdir: Path,
            headers: dict[str, str] | None = None) -> LoadResult:
    """POST `body` to `url` with wrk on `concurrency` keep-alive connections for `duration_s` (with `headers`)."""
    script, body_path = workdir / "post.lua", workdir / f"body-{zlib.crc32(body):08x}.json"
    if not script.exists():
        script.write_text(WRK_LUA)
    if not body_path.exists():
        body_path.write_bytes(body)
    threads = 1 if concurrency < 32 else 2
    argv = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{max(1, round(duration_s))}s",
            "--timeout", "10s", "-s", str(script), url, "--", str(body_path), api_key,
            *(f"{name}: {value}" for name, value in (headers or {}).items())]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}\n{out.stderr}")
    data = json.loads(line.removeprefix("WRKJSON "))
    return LoadResult(requests=data["requests"], errors=data["errors"], duration_s=data["duration_us"] / 1e6,
                      p50_ms=data["p50"] / 1000, p90_ms=data["p90"] / 1000, p99_ms=data["p99"] / 1000, client="wrk")


_MARKERS = {  # protocol → (first token of a stream, its end, a successful JSON answer)
    "chat": (b'"delta":{"content":"', b"data: [DONE]", b'"choices"'),
    "messages": (b'"type":"text_delta"', b"event: message_stop", b'"content"'),
    # `response.completed` is long (the whole response): its last bytes are its usage's cost
    "responses": (b"response.output_text.delta", b'"cost":', b'"output"'),
    "embeddings": (b"", b"", b'"embedding"'),
}


class _Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.ttfts: list[float] = []
        self.overheads: list[float] = []
        self.errors = 0
        self.last_error = ""


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], stream: bool,
               tally: _Tally, record: bool, protocol: str = "chat", keys: KeyRing | None = None) -> None:
    first_token, done, answered = _MARKERS[protocol]
    if keys is not None:
        headers = {**headers, "authorization": f"Bearer {keys.next()}"}
    started = time.perf_counter()
    ttft = None
    try:
        async with session.post(url, data=body, headers=headers) as response:
            overhead = response.headers.get("x-runapi-overhead-ms")
            if stream:
                tail = b""
                async for data in response.content.iter_any():
                    if ttft is None and first_token in tail[-32:] + data:
                        ttft = time.perf_counter() - started
                    tail = (tail + data)[-64:]
                ok = response.status == 200 and done in tail and ttft is not None
            else:
                payload = await response.read()
                ok = response.status == 200 and answered in payload
                tail = payload[-200:]
    except (aiohttp.ClientError, TimeoutError) as exc:
        ok, tail = False, repr(exc).encode()
    if not record:
        return
    if not ok:
        tally.errors += 1
        tally.last_error = tail.decode("utf-8", "replace")
        return
    tally.latencies.append((time.perf_counter() - started) * 1000)
    if ttft is not None:
        tally.ttfts.append(ttft * 1000)
    if overhead is not None:
        tally.overheads.append(float(overhead))


class KeyRing:
    """API keys taken in turn, one per request (the many-tenants cells)."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = keys
        self._index = 0

    def next(self) -> str:
        key = self._keys[self._index % len(self._keys)]
        self._index += 1
        return key


async def _load(url: str, body: bytes, api_key: str, concurrency: int, duration_s: float, stream: bool,
                requests: int | None, warmup_s: float, protocol: str, extra_headers: dict[str, str],
                keys: KeyRing | None = None) -> LoadResult:
    headers = {"content-type": "application/json", **extra_headers}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    tally = _Tally()
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
        warm_until = time.perf_counter() + warmup_s
        while time.perf_counter() < warm_until:
            await asyncio.gather(*(_one(session, url, body, headers, stream, tally, False, protocol, keys)
                                   for _ in range(concurrency)))
        budget = [requests] if requests is not None else None
        deadline = time.perf_counter() + duration_s
        started = time.perf_counter()

        async def worker() -> None:
            while True:
                if budget is not None:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                elif time.perf_counter() >= deadline:
                    return
                await _one(session, url, body, headers, stream, tally, True, protocol, keys)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if tally.errors and not tally.latencies:
        raise RuntimeError(f"every request to {url} failed; last answer: {tally.last_error}")
    lat = tally.latencies
    return LoadResult(
        requests=len(lat), errors=tally.errors, duration_s=elapsed,
        p50_ms=percentile(lat, 50), p90_ms=percentile(lat, 90), p99_ms=percentile(lat, 99),
        ttft_p50_ms=percentile(tally.ttfts, 50) if tally.ttfts else None,
        ttft_p99_ms=percentile(tally.ttfts, 99) if tally.ttfts else None,
        overhead_hdr_p50_ms=percentile(tally.overheads, 50) if tally.overheads else None,
        client="aiohttp",
    )


def run_async_client(url: str, body: bytes, api_key: str, concurrency: int, *, stream: bool,
                     duration_s: float = 0.0, requests: int | None = None, warmup_s: float = 0.0,
                     protocol: str = "chat", headers: dict[str, str] | None = None,
                     keys: list[str] | None = None) -> LoadResult:
    """Drive `url` with `concurrency` aiohttp workers for `duration_s` seconds (or `requests` requests).

    For SSE, TTFT is the time to the first chunk carrying text (`delta.content`; a Messages
    `text_delta`); a stream that does not end with `data: [DONE]` (`message_stop`) counts as an error.
    `keys`: send each request with the next of these keys instead of `api_key`.
    """
    load = _load(url, body, api_key, concurrency, duration_s, stream, requests, warmup_s, protocol, headers or {},
                 KeyRing(keys) if keys else None)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of the project
        return asyncio.run(load)
    return uvloop.run(load)
