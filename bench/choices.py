"""Why these libraries: CPU per call of the candidates for the upstream client and the JSON codec.

Run: python bench/choices.py  (starts the simulator in its own process on a free port).
Figures are this process's CPU time per call (time.process_time), sequential calls on loopback.
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

BODY = {"model": "glm-4.5-air", "messages": [{"role": "user", "content": "hello there " * 20}], "max_tokens": 64}
N = 1500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def cpu_per_call(call, n: int = N) -> float:  # type: ignore[no-untyped-def]
    for _ in range(50):
        await call()
    start = time.process_time()
    for _ in range(n):
        await call()
    return (time.process_time() - start) / n * 1000


async def clients(url: str) -> dict[str, float]:
    payload = msgspec.json.encode(BODY)
    headers = {"content-type": "application/json", "authorization": "Bearer x"}
    results = {}
    async with aiohttp.ClientSession() as session:
        async def aio() -> None:
            async with session.post(url, data=payload, headers=headers) as r:
                await r.read()
        results["aiohttp"] = await cpu_per_call(aio)
    async with httpx.AsyncClient() as client:
        async def hx() -> None:
            (await client.post(url, content=payload, headers=headers)).read()
        results["httpx"] = await cpu_per_call(hx)
    return results


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

        result = uvloop.run(clients(f"http://127.0.0.1:{port}/v1/chat/completions"))
    finally:
        sim.terminate()
        sim.wait()
    print("upstream client, CPU ms per call:", {k: round(v, 3) for k, v in result.items()})
    print("JSON decode+encode of a chat request, ms:", {k: round(v, 4) for k, v in codecs().items()})


if __name__ == "__main__":
    main()
