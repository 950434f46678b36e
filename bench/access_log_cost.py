"""The access log's CPU per request, in process: `python bench/access_log_cost.py`.

A minimal ASGI app (the settlement noted, a response started and ended) run 10,000 times through
`AccessLog.run` with the gateway's handler and the JSON and text formatters writing to a file, and
without the access logger;
9 alternating rounds, the minimum and the median of each. The figure the full gateway pays per request
on top of this app is the difference to "off". See bench/RESULTS.md, "The cost of the access log".
"""

from __future__ import annotations

import asyncio
import logging.config
import tempfile
import time
from pathlib import Path
from typing import Any

from runapi.http.access_log import AccessLog
from runapi.logs import logging_config
from runapi.pipeline.call_facts import note_settlement

LOG_FILE = Path(tempfile.gettempdir()) / "runapi-access-log-cost.log"
GENERATION = b"gen-01a24df46617ad456c356224a322913e"


async def app(scope: Any, receive: Any, send: Any) -> None:
    note_settlement("glm-4.5-air", GENERATION.decode(), "succeeded", 7000)
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"), (b"x-runapi-generation-id", GENERATION),
        (b"x-runapi-overhead-ms", b"0.312")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def send(message: Any) -> None:
    pass


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


async def run(n: int, fmt: Any, enabled: bool) -> float:
    cfg = logging_config(fmt, access_log=enabled)
    log_file = LOG_FILE.open("w")  # the gateway's handler, writing to a file instead of stderr
    cfg["handlers"]["console"] = {**cfg["handlers"]["console"], "stream": log_file}
    logging.config.dictConfig(cfg)
    access = AccessLog()
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "client": ("127.0.0.1", 5555),
             "headers": []}
    t = time.process_time()
    for _ in range(n):
        if access.enabled():
            await access.run(app, scope, receive, send)
        else:
            await app(scope, receive, send)
    spent = (time.process_time() - t) / n * 1e6
    logging.shutdown()
    log_file.close()
    return spent


def main() -> None:
    res: dict[str, list[float]] = {"off": [], "json": [], "text": []}
    for _ in range(9):
        res["off"].append(asyncio.run(run(10000, "json", False)))
        res["json"].append(asyncio.run(run(10000, "json", True)))
        res["text"].append(asyncio.run(run(10000, "text", True)))
    for name, values in res.items():
        print(f"{name:5} min {min(values):.1f} µs  median {sorted(values)[len(values) // 2]:.1f} µs per request")


if __name__ == "__main__":
    main()
