"""Prometheus metrics, one registry per gateway (no module-level state)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from runapi.storage import Generation


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.generations = Counter("runapi_generations", "Settled generations", ["model", "status"],
                                   registry=self.registry)
        self.tokens = Counter("runapi_tokens", "Tokens billed", ["model", "kind"], registry=self.registry)
        self.revenue = Counter("runapi_charged_usd", "USD charged (exact figures live in the ledger)", ["model"],
                               registry=self.registry)
        self.latency = Histogram("runapi_generation_latency_seconds", "End-to-end latency", ["model"],
                                 registry=self.registry)
        self.overhead = Histogram("runapi_gateway_overhead_seconds", "Time added by the gateway",
                                  buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1),
                                  registry=self.registry)
        self.pending_settlements = Gauge("runapi_pending_settlements",
                                         "Settlements answered (journaled) but not yet committed",
                                         registry=self.registry)
        self._cache: dict[tuple[str, str], tuple[Any, tuple[Any, ...]]] = {}

    def observe(self, row: Generation, charged_nanos: int) -> None:
        generations, children = self._children(row.model, row.status)
        generations.inc()
        if row.status != "failed":
            input_tokens, output_tokens, cache_read, revenue, latency = children
            input_tokens.inc(row.input_tokens)
            output_tokens.inc(row.output_tokens)
            cache_read.inc(row.cache_read_tokens)
            revenue.inc(charged_nanos / 1e9)
            latency.observe(row.latency_ms / 1000)
        if row.overhead_ms is not None:
            self.overhead.observe(row.overhead_ms / 1000)

    def _children(self, model: str, status: str) -> tuple[Any, tuple[Any, ...]]:
        """The labelled series of one (model, status), looked up once (`labels()` costs a lock and checks)."""
        found = self._cache.get((model, status))
        if found is None:
            found = self._cache[(model, status)] = (self.generations.labels(model, status), (
                self.tokens.labels(model, "input"), self.tokens.labels(model, "output"),
                self.tokens.labels(model, "cache_read"), self.revenue.labels(model), self.latency.labels(model)))
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)
