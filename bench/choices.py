"""Why these libraries: CPU per call of the candidates for the upstream client and the JSON codec.

Run: python bench/choices.py [--concurrency N]  (starts the simulator in its own process on a free port).
Figures are this process's CPU time per call (time.process_time: every thread, so a Rust client's
runtime threads count too) on loopback, N calls in flight. Candidates that are not installed are
skipped; to compare them all: pip install pyreqwest rnet aiosonic curl_cffi.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import aiohttp
import httpx
import msgspec

from runapi.transport.http_client import UpstreamClient

BODY = {"model": "glm-4.5-air", "messages": [{"role": "user", "content": "hello there " * 20}], "max_tokens": 64}
N = 1500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def cpu_per_call(call, concurrency: int, n: int = N) -> float:  # type: ignore[no-untyped-def]
    async def calls(count: int) -> None:
        for _ in range(count):
            await call()

    await asyncio.gather(*(calls(50 // concurrency + 1) for _ in range(concurrency)))
    start = time.process_time()
    await asyncio.gather(*(calls(n // concurrency) for _ in range(concurrency)))
    return (time.process_time() - start) / (n // concurrency * concurrency) * 1000


async def clients(url: str, concurrency: int) -> dict[str, float]:
    payload = msgspec.json.encode(BODY)
    headers = {"content-type": "application/json", "authorization": "Bearer x"}
    results = {}

    upstream = UpstreamClient()

    async def runapi_client() -> None:
        response = await upstream.post(url, headers, payload, connect_timeout=5, head_timeout=5, idle_timeout=5)
        await response.read()
        response.release()
    results["runapi UpstreamClient (httptools)"] = await cpu_per_call(runapi_client, concurrency)
    await upstream.close()

    async with aiohttp.ClientSession() as session:
        async def aio() -> None:
            async with session.post(url, data=payload, headers=headers) as r:
                await r.read()
        results["aiohttp"] = await cpu_per_call(aio, concurrency)
    async with httpx.AsyncClient() as client:
        async def hx() -> None:
            (await client.post(url, content=payload, headers=headers)).read()
        results["httpx"] = await cpu_per_call(hx, concurrency)
    for name, make in OPTIONAL.items():
        try:
            call, close = await make(url, payload, headers)
        except ImportError:
            continue
        results[name] = await cpu_per_call(call, concurrency)
        await close()
    return results


async def _nothing_to_close() -> None:
    pass


async def _pyreqwest(url: str, payload: bytes, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    from pyreqwest.client import ClientBuilder

    client = ClientBuilder().build()

    async def call() -> None:
        await (await client.post(url).headers(headers).body_bytes(payload).build().send()).bytes()
    return call, client.close


async def _rnet(url: str, payload: bytes, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    import rnet

    client = rnet.Client()

    async def call() -> None:
        await (await client.post(url, body=payload, headers=headers)).bytes()
    return call, _nothing_to_close


async def _aiosonic(url: str, payload: bytes, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    import aiosonic

    client = aiosonic.HTTPClient()

    async def call() -> None:
        await (await client.post(url, data=payload, headers=headers)).content()
    return call, _nothing_to_close


async def _curl_cffi(url: str, payload: bytes, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    from curl_cffi import AsyncSession

    session = AsyncSession()

    async def call() -> None:
        await session.post(url, data=payload, headers=headers)
    return call, session.close


OPTIONAL = {"pyreqwest (Rust)": _pyreqwest, "rnet (Rust)": _rnet, "aiosonic": _aiosonic,
            "curl_cffi (libcurl)": _curl_cffi}


def codecs() -> dict[str, float]:
    raw = msgspec.json.encode(BODY)
    out = {}
    for name, dec, enc in [("msgspec", msgspec.json.decode, msgspec.json.encode),
                           ("json (stdlib)", json.loads, lambda o: json.dumps(o).encode())]:
        start = time.process_time()
        for _ in range(20000):
            enc(dec(raw))
        out[name] = (time.process_time() - start) / 20000 * 1000
    return out


def main() -> None:
    concurrency = int(sys.argv[sys.argv.index("--concurrency") + 1]) if "--concurrency" in sys.argv else 1
    port = free_port()
    sim = subprocess.Popen([sys.executable, "-m", "runapi.cli.main", "sim", "--port", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=0.5)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        import uvloop

        result = uvloop.run(clients(f"http://127.0.0.1:{port}/v1/chat/completions", concurrency))
    finally:
        sim.terminate()
        sim.wait()
    print(f"upstream client, CPU ms per call, {concurrency} in flight:")
    for name, ms in sorted(result.items(), key=lambda item: item[1]):
        print(f"  {name:<36} {ms:.3f}")
    print("JSON decode+encode of a chat request, ms:", {k: round(v, 4) for k, v in codecs().items()})


if __name__ == "__main__":
    main()
