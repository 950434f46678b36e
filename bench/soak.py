"""A bounded soak: steady load on the gateway while its resident memory is sampled.

RSS is "flat" when the mean of the last quarter of the samples is within
max(2 MiB, 3 %) of the mean of the second quarter (the first quarter is warm-up:
pools, caches and allocator arenas still growing). A run that is not flat has "levelled
off" when its last third of samples spans at most max(2 MiB, 1.5 %): it grew, then stopped
(a warm-up longer than a quarter of the run), which a longer soak then tells from a leak.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.loads import WRK_LUA, run_async_client, wrk_available
from bench.procs import tree_cpu_seconds, tree_peak_rss_mib, tree_rss_mib
from bench.scenarios import Scenario
from bench.servers import Target


@dataclass
class SoakResult:
    seconds: float
    scenario: str
    concurrency: int
    requests: int
    samples: list[tuple[float, float]] = field(default_factory=list)  # (elapsed s, RSS MiB)
    cpu_ms_per_request: float = 0.0
    peak_rss_mib: float = 0.0

    @property
    def growth_mib(self) -> float:
        rss = [value for _, value in self.samples]
        if len(rss) < 4:
            return rss[-1] - rss[0] if rss else 0.0
        quarter = len(rss) // 4
        second = rss[quarter: 2 * quarter]
        last = rss[-quarter:]
        return sum(last) / len(last) - sum(second) / len(second)

    @property
    def flat(self) -> bool:
        base = self.samples[len(self.samples) // 4][1] if self.samples else 0.0
        return self.growth_mib <= max(2.0, 0.03 * base)

    @property
    def levelled_off(self) -> bool:
        """The last third of the samples within max(2 MiB, 1.5 %) of each other."""
        last = [value for _, value in self.samples[-max(1, len(self.samples) // 3):]]
        return bool(last) and max(last) - min(last) <= max(2.0, 0.015 * max(last))

    @property
    def verdict(self) -> str:
        return "flat" if self.flat else "levelled off" if self.levelled_off else "GROWING"


def soak(target: Target, scenario: Scenario, concurrency: int, seconds: float, workdir: Path,
         interval_s: float = 3.0) -> SoakResult:
    """Load `target` for `seconds` (wrk for JSON), sampling the tree's RSS every `interval_s`."""
    assert target.pid is not None
    result = SoakResult(seconds, scenario.name, concurrency, 0)
    cpu_before = tree_cpu_seconds(target.pid)
    started = time.monotonic()
    if wrk_available() and not scenario.stream:
        script, body = workdir / "post.lua", workdir / "soak-body.json"
        script.write_text(WRK_LUA)
        body.write_bytes(scenario.body)
        argv = ["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{round(seconds)}s", "--timeout", "10s",
                "-s", str(script), target.url, "--", str(body), target.api_key]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        while proc.poll() is None:
            result.samples.append((time.monotonic() - started, tree_rss_mib(target.pid)))
            time.sleep(interval_s)
        output = proc.stdout.read() if proc.stdout else ""
        line = next((ln for ln in output.splitlines() if ln.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk failed during the soak: {output}")
        result.requests = int(json.loads(line.removeprefix("WRKJSON "))["requests"])
    else:  # SSE: consecutive short client runs, sampling between them
        while time.monotonic() - started < seconds:
            load = run_async_client(target.url, scenario.body, target.api_key, concurrency, stream=scenario.stream,
                                    duration_s=min(interval_s, seconds - (time.monotonic() - started)))
            result.requests += load.requests
            result.samples.append((time.monotonic() - started, tree_rss_mib(target.pid)))
    result.samples.append((time.monotonic() - started, tree_rss_mib(target.pid)))
    result.cpu_ms_per_request = (tree_cpu_seconds(target.pid) - cpu_before) * 1000 / max(1, result.requests)
    result.peak_rss_mib = tree_peak_rss_mib(target.pid)
    return result


def soak_section(result: SoakResult, target_name: str) -> str:
    rss = [value for _, value in result.samples]
    verdict = result.verdict
    points = ", ".join(f"{t:.0f}s {v:.1f}" for t, v in result.samples[:: max(1, len(result.samples) // 12)])
    return f"""## Soak

{target_name}, `{result.scenario}` at c={result.concurrency} for {result.seconds:.0f} s:
{result.requests:,} requests ({result.requests / max(1.0, result.seconds):,.0f}/s),
{result.cpu_ms_per_request:.3f} ms gateway CPU per request.
RSS samples (MiB): min {min(rss):.1f}, max {max(rss):.1f}, last {rss[-1]:.1f}; peak (VmHWM) {result.peak_rss_mib:.1f}.
Growth from the second to the last quarter of the run: {result.growth_mib:+.2f} MiB → **{verdict}**.

Samples (elapsed, RSS MiB): {points}
"""
