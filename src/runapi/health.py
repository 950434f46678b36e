"""Model status from real traffic: success rate over a sliding window, per model and per deployment.

`operational` when at least 95% of recent calls succeeded (or there is no recent traffic),
`degraded` from 50%, `down` below. Cancelled calls (the client left) do not count.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import msgspec

WINDOW_S = 300.0
MIN_SAMPLES = 3


class HealthReport(msgspec.Struct, frozen=True):
    status: str
    success_rate: float | None
    samples: int
    p50_latency_ms: float | None
    p50_ttft_ms: float | None


class _Series:
    __slots__ = ("samples",)

    def __init__(self) -> None:
        self.samples: deque[tuple[float, bool, float, float | None]] = deque()

    def add(self, now: float, ok: bool, latency_ms: float, ttft_ms: float | None) -> None:
        self.samples.append((now, ok, latency_ms, ttft_ms))
        self.trim(now)

    def trim(self, now: float) -> None:
        while self.samples and self.samples[0][0] < now - WINDOW_S:
            self.samples.popleft()

    def report(self, now: float) -> HealthReport:
        self.trim(now)
        n = len(self.samples)
        if n == 0:
            return HealthReport("operational", None, 0, None, None)
        rate = sum(1 for s in self.samples if s[1]) / n
        latencies = sorted(s[2] for s in self.samples if s[1])
        ttfts = sorted(s[3] for s in self.samples if s[1] and s[3] is not None)
        status = "operational"
        if n >= MIN_SAMPLES:
            status = "operational" if rate >= 0.95 else "degraded" if rate >= 0.5 else "down"
        return HealthReport(status, round(rate, 4), n, _median(latencies), _median(ttfts))


def _median(values: list[float]) -> float | None:
    return round(values[len(values) // 2], 3) if values else None


class ModelHealth:
    """In-process health windows, fed by every settled generation."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._series: dict[str, _Series] = {}

    def observe(self, key: str, ok: bool, latency_ms: float, ttft_ms: float | None) -> None:
        self._series.setdefault(key, _Series()).add(self._clock(), ok, latency_ms, ttft_ms)

    def report(self, key: str) -> HealthReport:
        series = self._series.get(key)
        return series.report(self._clock()) if series else HealthReport("operational", None, 0, None, None)
