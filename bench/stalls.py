"""Tail latency at c=16, and what stalls the event loop behind it (issue 24 item 6).

    python -m bench.stalls [--seconds 20] [--postgres] [--probe 0.002] [--scenario json] [--pin]

Starts the simulator and `runapi serve` (SQLite; and PostgreSQL + Redis with `--postgres`) with the
event-loop lag probe on (`[server] loop_lag_probe`, `runapi/stalls.py`), drives the scenario at c=16
and reads the gateway's /metrics before and after: the garbage collector's pauses by generation and
the loop's lag (how late a timer ran: the time some callback held the loop). Prints, per gateway,
p50/p99 and the stalls: how many, how long in all, and their share of the run, and how often the
kernel took the CPU from the event loop for another process (its involuntary context switches).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.cells import drive
from bench.scenarios import SCENARIOS
from bench.servers import Target, start_gateway, start_upstream

Buckets = dict[str, dict[tuple[tuple[str, str], ...], float]]


def scrape(target: Target) -> Buckets:
    """Every sample of the stall histograms: {sample name: {labels: value}}."""
    text = httpx.get(target.base_url + "/metrics", timeout=10).raise_for_status().text
    out: Buckets = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("runapi_gc_pause_seconds", "runapi_event_loop_lag_seconds"):
            for sample in family.samples:
                out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _delta(after: Buckets, before: Buckets, name: str, **labels: str) -> float:
    key = tuple(sorted(labels.items()))
    return after.get(name, {}).get(key, 0.0) - before.get(name, {}).get(key, 0.0)


def stall_lines(before: Buckets, after: Buckets, seconds: float, requests: int) -> list[str]:
    lines = []
    for generation in ("0", "1", "2"):
        count = _delta(after, before, "runapi_gc_pause_seconds_count", generation=generation)
        total = _delta(after, before, "runapi_gc_pause_seconds_sum", generation=generation)
        over = count - _delta(after, before, "runapi_gc_pause_seconds_bucket", generation=generation, le="0.005")
        lines.append(f"GC gen {generation}: {count:,.0f} pauses, {total * 1000:,.1f} ms in all "
                     f"({100 * total / seconds:.2f} % of the run, {total * 1e6 / max(1, requests):.1f} µs/request), "
                     f"{over:,.0f} over 5 ms")
    count = _delta(after, before, "runapi_event_loop_lag_seconds_count")
    total = _delta(after, before, "runapi_event_loop_lag_seconds_sum")
    parts = []
    for bound in ("0.002", "0.005", "0.01", "0.02", "0.05"):
        over = count - _delta(after, before, "runapi_event_loop_lag_seconds_bucket", le=bound)
        parts.append(f"> {float(bound) * 1000:g} ms: {over:,.0f}")
    lines.append(f"loop lag: {count:,.0f} probes, {total * 1000:,.1f} ms late in all; " + ", ".join(parts))
    return lines


def involuntary_switches(pid: int) -> int:
    """How often the kernel took the CPU from the process's main thread (another process wanted it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("nonvoluntary_ctxt_switches:"):
            return int(line.split()[1])
    return 0


def pin(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` onto `cpus`."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except ProcessLookupError:
            pass  # the thread ended meanwhile


def _pids(name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


@contextmanager
def others_on(cpu: int) -> Iterator[None]:
    """This process (so the simulator and the load generator it starts), PostgreSQL's and Redis's processes
    on `cpu` for the block; everything back on every core after it."""
    every = set(range(os.cpu_count() or 1))
    services = [p for name in ("postgres", "redis-server") for p in _pids(name)]
    os.sched_setaffinity(0, {cpu})
    for pid in services:
        pin(pid, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, every)
        for pid in services:
            try:
                pin(pid, every)
            except FileNotFoundError:
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--probe", type=float, default=0.002, help="seconds between loop-lag probes")
    parser.add_argument("--scenario", default="json", choices=sorted(SCENARIOS))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--pin", action="store_true",
                        help="the gateway alone on CPU 0; everything else (load, simulator, databases) on CPU 1")
    args = parser.parse_args()
    if args.pin and (os.cpu_count() or 1) < 2:
        raise SystemExit("--pin needs 2 cores")
    with others_on(1) if args.pin else nullcontext():
        run(args)


def run(args: argparse.Namespace) -> None:
    scenario = SCENARIOS[args.scenario]
    with tempfile.TemporaryDirectory(prefix="runapi-stalls-") as tmp:
        workdir = Path(tmp)
        upstream = start_upstream(workdir)
        targets: list[Target] = []
        try:
            targets.append(start_gateway(workdir, upstream, name="runapi-sqlite",
                                         server_toml=f"loop_lag_probe = {args.probe}"))
            if args.postgres:
                targets.append(start_gateway(workdir, upstream, name="runapi-postgres", postgres=True,
                                             server_toml=f"loop_lag_probe = {args.probe}"))
            for target in targets:
                assert target.pid is not None
                if args.pin:
                    pin(target.pid, {0})
                drive(target, scenario, args.concurrency, 2.0, workdir)  # warm
                before, switches = scrape(target), involuntary_switches(target.pid)
                load = drive(target, scenario, args.concurrency, args.seconds, workdir)
                after, switches = scrape(target), involuntary_switches(target.pid) - switches
                print(f"### {target.name}, {scenario.name} at c={args.concurrency}, {args.seconds:g} s "
                      f"(probe every {args.probe * 1000:g} ms{'; gateway pinned to CPU 0' if args.pin else ''})\n")
                print(f"- {load.requests:,} requests: p50 {load.p50_ms:.2f} ms, p90 {load.p90_ms:.2f} ms, "
                      f"p99 {load.p99_ms:.2f} ms (p99/p50 {load.p99_ms / max(load.p50_ms, 1e-9):.2f})")
                for line in stall_lines(before, after, args.seconds, load.requests):
                    print(f"- {line}")
                print(f"- the kernel took the CPU from the event loop {switches:,} times "
                      f"({switches / args.seconds:,.0f}/s: other processes on the same cores)")
                print()
        finally:
            for target in targets:
                target.stop()
            upstream.stop()


if __name__ == "__main__":
    main()
