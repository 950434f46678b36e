"""Prometheus metrics, one registry per gateway (no module-level state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

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

    def observe(self, row: Generation, charged_nanos: int) -> None:
        self.generations.labels(row.model, row.status).inc()
        if row.status != "failed":
            self.tokens.labels(row.model, "input").inc(row.input_tokens)
            self.tokens.labels(row.model, "output").inc(row.output_tokens)
            self.tokens.labels(row.model, "cache_read").inc(row.cache_read_tokens)
            self.revenue.labels(row.model).inc(charged_nanos / 1e9)
            self.latency.labels(row.model).observe(row.latency_ms / 1000)
        if row.overhead_ms is not None:
            self.overhead.observe(row.overhead_ms / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)
