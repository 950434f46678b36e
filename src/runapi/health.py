"""Model status from real traffic: success rate over a sliding window, per model and per deployment.

`operational` when at least 95% of recent calls succeeded (or there is no recent traffic),
`degraded` from 50%, `down` below. Cancelled calls (the client left) do not count.
"Recent" is the last `WINDOW_S` seconds, at most the last `MAX_SAMPLES` calls of a series, so
memory and the cost of a report stay bounded however busy the model is.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import msgspec

WINDOW_S = 300.0
MIN_SAMPLES = 3
# Without a cap a series holds every call of the window: ~160 bytes each, so at 1,000 req/s
# two series (model and deployment) held ~100 MB and each report sorted 300,000 samples.
MAX_SAMPLES = 2048


class HealthReport(msgspec.Struct, frozen=True):
    status: str
    success_rate: float | None
    samples: int
    p50_latency_ms: float | None
    p50_ttft_ms: float | None


class _Series:
    __slots__ = ("samples",)

    def __init__(self) -> None:
        self.samples: deque[tuple[float, bool, float, float | None]] = deque(maxlen=MAX_SAMPLES)

    def add(self, now: float, ok: bool, latency_ms: float, ttft_ms: float | None) -> None:
        self.samples.append((now, ok, latency_ms, ttft_ms))
        self.trim(now)

    def trim(self, now: float) -> None:
        samples, cutoff = self.samples, now - WINDOW_S
        while samples and samples[0][0] < cutoff:
            samples.popleft()

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
        series = self._series.get(key)  # not setdefault: that built a throwaway _Series (and deque) per call
        if series is None:
            series = self._series[key] = _Series()
        series.add(self._clock(), ok, latency_ms, ttft_ms)

    def report(self, key: str) -> HealthReport:
        series = self._series.get(key)
        return series.report(self._clock()) if series else HealthReport("operational", None, 0, None, None)


class DeploymentHealth(msgspec.Struct, frozen=True):
    """One deployment's view: its own window (every attempt, failovers included) and its circuit."""

    provider: str
    upstream_model: str
    status: str
    circuit: str
    success_rate: float | None
    samples: int
    p50_latency_ms: float | None
    p50_ttft_ms: float | None


def deployment_status(provider: str, upstream_model: str, report: HealthReport, circuit: str) -> DeploymentHealth:
    """An open circuit is `down`; otherwise (closed, or half-open awaiting a trial) the window decides."""
    status = "down" if circuit == "open" else report.status
    return DeploymentHealth(provider, upstream_model, status, circuit, report.success_rate, report.samples,
                            report.p50_latency_ms, report.p50_ttft_ms)


def model_status(report: HealthReport, deployments: list[DeploymentHealth]) -> str:
    """What callers experience: the model's own window of settled calls (a deployment's failures
    that failover hid do not count), or `down` while every deployment's circuit is open."""
    if deployments and all(d.circuit == "open" for d in deployments):
        return "down"
    return report.status
