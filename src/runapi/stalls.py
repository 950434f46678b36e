"""What stalls the event loop, measured where it happens, as Prometheus histograms.

- `runapi_gc_pause_seconds{generation}`: every collection of the cyclic garbage collector, timed from
  its start to its end callback (`gc.callbacks`; always on: two clock reads per collection).
- `runapi_event_loop_lag_seconds`: with `[server] loop_lag_probe` > 0, a task that sleeps that long and
  records how late it woke: the time some callback held the loop (a SQLite commit, a long JSON
  encode, a collection), which every request waiting then also waited. Off by default: it wakes an
  idle process `1 / loop_lag_probe` times a second.
A request's tail latency (p99) is its p50 plus the stalls it waited behind; `bench/stalls.py` reads
these after a load to say what each cause costs.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

STALL_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, float("inf"))


class StallWatch:
    """Garbage-collector pauses, and (probe on) the event loop's lag; `start()` on the loop, `stop()` after."""

    def __init__(self, registry: CollectorRegistry, probe_interval: float = 0.0) -> None:
        self.probe_interval = probe_interval
        self.gc_pause = Histogram("runapi_gc_pause_seconds", "Pauses of the cyclic garbage collector",
                                  ["generation"], buckets=STALL_BUCKETS, registry=registry)
        self.loop_lag = Histogram("runapi_event_loop_lag_seconds",
                                  "How late the event loop ran a timer (the loop_lag_probe)", buckets=STALL_BUCKETS,
                                  registry=registry)
        self._gc_started = 0.0
        self._probe: asyncio.Task[None] | None = None

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        if self.probe_interval > 0:
            self._probe = asyncio.get_running_loop().create_task(self._measure_lag(), name="loop-lag-probe")

    async def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            self.gc_pause.labels(str(info.get("generation", "?"))).observe(time.perf_counter() - self._gc_started)
            self._gc_started = 0.0

    async def _measure_lag(self) -> None:
        loop = asyncio.get_running_loop()
        interval, observe = self.probe_interval, self.loop_lag.observe
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            observe(max(0.0, loop.time() - due))
