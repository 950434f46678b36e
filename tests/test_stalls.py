"""What stalls the event loop (`runapi/stalls.py`): garbage-collector pauses and the loop's lag, on a real
loop and on a real gateway's /metrics."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

from runapi.stalls import StallWatch
from tests.support.gateway import run_gateway, sqlite_url


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return value if value is not None else 0.0


def test_a_blocked_loop_and_a_collection_are_measured() -> None:
    registry = CollectorRegistry()
    watch = StallWatch(registry, probe_interval=0.005)

    async def run() -> None:
        watch.start()
        try:
            await asyncio.sleep(0.02)  # the probe has started its first sleep
            time.sleep(0.06)  # a callback holding the loop for 60 ms
            gc.collect()  # a full collection
            await asyncio.sleep(0.02)  # the probe wakes late once, then on time
        finally:
            await watch.stop()

    asyncio.run(run())
    assert _sample(registry, "runapi_event_loop_lag_seconds_count") >= 2
    # One lag of at least 50 ms (the 60 ms block less at most one probe interval), none of them by chance.
    assert _sample(registry, "runapi_event_loop_lag_seconds_count") - \
        _sample(registry, "runapi_event_loop_lag_seconds_bucket", le="0.05") >= 1
    assert _sample(registry, "runapi_gc_pause_seconds_count", generation="2") >= 1
    assert watch._on_gc not in gc.callbacks  # stopped: no longer called by the collector


def test_the_gateway_exposes_its_stalls(sim_url: str, tmp_path: Path) -> None:
    with run_gateway(sqlite_url(tmp_path), sim_url, loop_lag_probe=0.01) as gw:
        gc.collect()  # observed by the gateway's callback (the collector is the process's)
        text = httpx.get(f"{gw.base_url}/metrics", timeout=10).raise_for_status().text
        lines = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                 if line and not line.startswith("#")}
        assert lines['runapi_gc_pause_seconds_count{generation="2"}'] >= 1
        assert "runapi_event_loop_lag_seconds_count" in lines
