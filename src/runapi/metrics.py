"""Prometheus metrics, one registry per gateway (no module-level state).

Per-settlement figures are kept in plain Python objects and turned into metric families only when
/metrics is scraped (`_SettlementCollector.collect`): prometheus_client's `Counter.inc` and
`Histogram.observe` take a lock and check their arguments on every call, about 13 calls per request.
The gateway is single-threaded asyncio (every `observe` and every scrape runs on the event loop
thread), so the hot path needs no lock. The exposition is the one the prometheus_client metrics gave:
same names, labels, types, HELP text, buckets and `_created` series.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import metrics as _prometheus_metrics
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from runapi.storage import Generation

LATENCY_BUCKETS: tuple[float, ...] = tuple(Histogram.DEFAULT_BUCKETS)  # ends with +Inf
OVERHEAD_BUCKETS: tuple[float, ...] = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, float("inf"))


class _Histogram:
    """Bucket counts (not cumulative: `counts[i]` holds the observations in (bounds[i-1], bounds[i]]), sum."""

    __slots__ = ("counts", "sum", "created")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.counts = [0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def buckets(self, bounds: tuple[float, ...]) -> list[tuple[str, float]]:
        """Cumulative, as Prometheus expects (`le` is "at most"); the last (+Inf) is the count."""
        return [(floatToGoString(bound), count)  # type: ignore[no-untyped-call]  # unannotated upstream
                for bound, count in zip(bounds, accumulate(self.counts))]


class _Model:
    """The series of one model: tokens billed, USD charged, latency."""

    __slots__ = ("input_tokens", "output_tokens", "cache_read_tokens", "revenue", "latency", "created")

    def __init__(self) -> None:
        self.input_tokens = 0
        self.output_tokens = 0
        self.cache_read_tokens = 0
        # Revenue is a float in the exposition only: the exact money lives in the ledger.
        self.revenue = 0.0
        self.latency = _Histogram(LATENCY_BUCKETS)
        self.created = self.latency.created


class _Generations:
    """Settled generations of one (model, status), with that model's series at hand."""

    __slots__ = ("count", "model", "created")

    def __init__(self, model: _Model) -> None:
        self.count = 0
        self.model = model
        self.created = time.time()


class Metrics:
    """Per-settlement figures (plain Python, no lock: single-threaded asyncio) plus the registry that
    exposes them and the pending-settlements gauge."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._generations: dict[tuple[str, str], _Generations] = {}  # (model, status)
        self._models: dict[str, _Model] = {}
        self._overhead = _Histogram(OVERHEAD_BUCKETS)
        self.registry.register(_SettlementCollector(self))
        self.pending_settlements = Gauge("runapi_pending_settlements",
                                         "Settlements answered (journaled) but not yet committed",
                                         registry=self.registry)

    def observe(self, row: Generation, charged_nanos: int) -> None:
        """Count one settled generation: plain attribute and list updates, no lock (the gateway is
        single-threaded asyncio, and a scrape runs on the same thread, never in the middle of this)."""
        status = row.status
        generations = self._generations.get((row.model, status))
        if generations is None:
            generations = self._add(row.model, status)
        if status != "failed":
            input_tokens, output_tokens, cache_read = row.input_tokens, row.output_tokens, row.cache_read_tokens
            # Counters only go up: refuse a negative amount, as prometheus_client's Counter.inc did
            # (before anything is counted). The OR of ints is negative iff one of them is.
            if (input_tokens | output_tokens | cache_read | charged_nanos) < 0:
                raise ValueError("Counters can only be incremented by non-negative amounts.")
            model = generations.model
            model.input_tokens += input_tokens
            model.output_tokens += output_tokens
            model.cache_read_tokens += cache_read
            model.revenue += charged_nanos / 1e9
            latency = row.latency_ms / 1000
            histogram = model.latency
            histogram.sum += latency
            histogram.counts[bisect_left(LATENCY_BUCKETS, latency)] += 1
        generations.count += 1
        overhead_ms = row.overhead_ms
        if overhead_ms is not None:
            overhead = overhead_ms / 1000
            histogram = self._overhead
            histogram.sum += overhead
            histogram.counts[bisect_left(OVERHEAD_BUCKETS, overhead)] += 1

    def _add(self, model_id: str, status: str) -> _Generations:
        """The first generation of a (model, status); a model's series all appear with its first one."""
        model = self._models.get(model_id)
        if model is None:
            model = self._models[model_id] = _Model()
        generations = self._generations[(model_id, status)] = _Generations(model)
        return generations

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _SettlementCollector:
    """Turns `Metrics`' plain figures into metric families at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterator[Metric]:
        """The families without samples, so that the registry knows (and guards) their names."""
        return self._families(with_samples=False)

    def collect(self) -> Iterator[Metric]:
        return self._families(with_samples=True)

    def _families(self, *, with_samples: bool) -> Iterator[Metric]:
        m = self._metrics
        created = getattr(_prometheus_metrics, "_use_created", True)  # PROMETHEUS_DISABLE_CREATED_SERIES
        generations = CounterMetricFamily("runapi_generations", "Settled generations", labels=["model", "status"])
        tokens = CounterMetricFamily("runapi_tokens", "Tokens billed", labels=["model", "kind"])
        revenue = CounterMetricFamily("runapi_charged_usd", "USD charged (exact figures live in the ledger)",
                                      labels=["model"])
        latency = HistogramMetricFamily("runapi_generation_latency_seconds", "End-to-end latency", labels=["model"])
        overhead = HistogramMetricFamily("runapi_gateway_overhead_seconds", "Time added by the gateway")
        if with_samples:
            for (model_id, status), series in list(m._generations.items()):
                generations.add_metric([model_id, status], series.count, series.created if created else None)
            for model_id, model in list(m._models.items()):
                stamp = model.created if created else None
                tokens.add_metric([model_id, "input"], model.input_tokens, stamp)
                tokens.add_metric([model_id, "output"], model.output_tokens, stamp)
                tokens.add_metric([model_id, "cache_read"], model.cache_read_tokens, stamp)
                revenue.add_metric([model_id], model.revenue, stamp)
                _add_histogram(latency, {"model": model_id}, model.latency, LATENCY_BUCKETS, created)
            _add_histogram(overhead, {}, m._overhead, OVERHEAD_BUCKETS, created)
        yield from (generations, tokens, revenue, latency, overhead)


def _add_histogram(family: HistogramMetricFamily, labels: dict[str, str], histogram: _Histogram,
                   bounds: tuple[float, ...], created: bool) -> None:
    """Buckets, count and sum, and (as prometheus_client's Histogram gives) when the series was created."""
    family.add_metric(list(labels.values()), histogram.buckets(bounds), histogram.sum)
    if created:
        family.samples.append(Sample(family.name + "_created", labels, histogram.created))
