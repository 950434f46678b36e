"""One cell of the table: a target × a scenario × a concurrency, measured once.

The gateway's CPU per request is the CPU seconds of its process tree during the
measured window divided by the requests completed in it; the upstream's is read the
same way, to show whether the upstream could be the bottleneck.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.loads import LoadResult, run_async_client, run_wrk, wrk_available
from bench.procs import cpu_meter, database_cpu_seconds, peak_rss_mib
from bench.scenarios import Scenario
from bench.servers import Target


@dataclass
class Row:
    target: str
    scenario: str
    concurrency: int
    load: LoadResult
    gateway_cpu_ms: float | None  # per request; None for "direct" (there is no gateway)
    upstream_cpu_ms: float
    peak_rss_mib: float | None  # Σ over the process tree (workers, their supervisor)
    added_p50_ms: float | None = None
    added_ttft_ms: float | None = None
    process_rss_mib: float | None = None  # the largest single process's peak (a worker's, with --workers)
    database_cpu_ms: float | None = None  # per request: the PostgreSQL backends of its database (PostgreSQL rows)

    def as_dict(self) -> dict[str, object]:
        load = self.load
        return {
            "target": self.target, "scenario": self.scenario, "concurrency": self.concurrency,
            "requests": load.requests, "errors": load.errors, "rps": round(load.rps, 1),
            "p50_ms": round(load.p50_ms, 3), "p90_ms": round(load.p90_ms, 3), "p99_ms": round(load.p99_ms, 3),
            "ttft_p50_ms": _r(load.ttft_p50_ms), "ttft_p99_ms": _r(load.ttft_p99_ms),
            "overhead_hdr_p50_ms": _r(load.overhead_hdr_p50_ms), "client": load.client,
            "gateway_cpu_ms_per_req": _r(self.gateway_cpu_ms), "upstream_cpu_ms_per_req": _r(self.upstream_cpu_ms),
            "peak_rss_mib": _r(self.peak_rss_mib, 1), "added_p50_ms": _r(self.added_p50_ms),
            "added_ttft_ms": _r(self.added_ttft_ms), "largest_process_peak_rss_mib": _r(self.process_rss_mib, 1),
            "database_cpu_ms_per_req": _r(self.database_cpu_ms),
        }


def _r(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def drive(target: Target, scenario: Scenario, concurrency: int, duration_s: float, workdir: Path,
          warmup_s: float = 0.0) -> LoadResult:
    """Run the scenario's load against the target: wrk for JSON (if installed), aiohttp for SSE."""
    url = target.base_url + scenario.path
    headers = target.headers_for(scenario)
    if not scenario.stream and wrk_available():
        if warmup_s > 0:
            run_wrk(url, scenario.body, target.api_key, concurrency, warmup_s, workdir, headers)
        return run_wrk(url, scenario.body, target.api_key, concurrency, duration_s, workdir, headers)
    return run_async_client(url, scenario.body, target.api_key, concurrency, stream=scenario.stream,
                            duration_s=duration_s, warmup_s=warmup_s, protocol=scenario.protocol,
                            headers=headers)


def measure_cell(target: Target, upstream: Target, scenario: Scenario, concurrency: int, *, duration_s: float,
                 warmup_s: float, workdir: Path) -> Row:
    if warmup_s > 0:  # warm pools, caches and the account's balance outside the metered window
        drive(target, scenario, concurrency, warmup_s, workdir)
    gateway_pid = None if target is upstream else target.pid
    database = target.drop_database
    database_before = database_cpu_seconds(database) if database else 0.0
    with cpu_meter(gateway_pid) as gateway_cpu, cpu_meter(upstream.pid) as upstream_cpu:
        load = drive(target, scenario, concurrency, duration_s, workdir)
    database_spent = database_cpu_seconds(database) - database_before if database else None
    per_request = 1000 / max(1, load.requests)
    tree_peak, largest_peak = peak_rss_mib(gateway_pid) if gateway_pid else (None, None)
    return Row(
        target=target.name, scenario=scenario.name, concurrency=concurrency, load=load,
        gateway_cpu_ms=gateway_cpu[0] * per_request if gateway_pid else None,
        upstream_cpu_ms=upstream_cpu[0] * per_request,
        peak_rss_mib=tree_peak, process_rss_mib=largest_peak,
        database_cpu_ms=database_spent * per_request if database_spent is not None else None,
    )


def add_baselines(rows: list[Row]) -> None:
    """Fill `added_p50_ms` / `added_ttft_ms`: each row against the direct row of the same cell."""
    direct = {(r.scenario, r.concurrency): r for r in rows if r.target == "direct"}
    for row in rows:
        base = direct.get((row.scenario, row.concurrency))
        if base is None or row is base:
            continue
        row.added_p50_ms = row.load.p50_ms - base.load.p50_ms
        if row.load.ttft_p50_ms is not None and base.load.ttft_p50_ms is not None:
            row.added_ttft_ms = row.load.ttft_p50_ms - base.load.ttft_p50_ms
