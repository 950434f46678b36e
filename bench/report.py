"""The results: a rich table on the terminal and `bench/RESULTS.md`.

RESULTS.md is made of named sections between `<!-- section:NAME -->` markers. A run
rewrites the sections it measured and keeps the others (the hand-written analysis,
or a profile or soak that this run did not repeat) as they were.
"""

from __future__ import annotations

import datetime as dt
import platform
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.cells import Row
from bench.scenarios import CHAT_TWIN, SCENARIOS

SECTION = re.compile(r"<!-- section:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /section:(?P=name) -->", re.S)
ORDER = ["header", "results", "targets", "notes", "profile", "soak", "analysis"]

TARGETS = [
    ("json", 16, "gateway_cpu", 0.30, "non-streaming, c=16: gateway CPU per request ≤ 0.30 ms"),
    ("stream20", 16, "gateway_cpu", 0.45, "streaming 20 chunks, c=16: gateway CPU per request ≤ 0.45 ms"),
    ("json", 1, "added_p50", 0.30, "non-streaming, c=1: added p50 versus direct ≤ 0.3 ms"),
    ("paced", 1, "added_ttft", 0.50, "paced stream, c=1: TTFT within 0.5 ms of direct"),
]


def _f(value: float | None, digits: int = 2, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


COLUMNS = ["target", "scenario", "c", "req/s", "p50 ms", "p90 ms", "p99 ms", "+p50 vs direct", "TTFT p50",
           "+TTFT", "gateway CPU ms/req", "upstream CPU ms/req", "peak RSS MiB", "errors"]


def _cells(row: Row) -> list[str]:
    load = row.load
    return [row.target, row.scenario, str(row.concurrency), f"{load.rps:,.0f}", _f(load.p50_ms, 3),
            _f(load.p90_ms, 3), _f(load.p99_ms, 3), _f(row.added_p50_ms, 3, True), _f(load.ttft_p50_ms, 3),
            _f(row.added_ttft_ms, 3, True), _f(row.gateway_cpu_ms, 3), _f(row.upstream_cpu_ms, 3),
            _f(row.peak_rss_mib, 1), str(load.errors)]


def _sorted(rows: Sequence[Row]) -> list[Row]:
    order = {name: i for i, name in enumerate(SCENARIOS)}
    targets = {name: i for i, name in enumerate(["direct", "nginx", "runapi-sqlite", "runapi-sqlite-nolog", "runapi-postgres", "portkey", "litellm"])}
    return sorted(rows, key=lambda r: (order.get(r.scenario, 99), r.concurrency, targets.get(r.target, 50)))


def print_table(rows: Sequence[Row], console: Console | None = None) -> None:
    table = Table(title="RunAPI benchmark (loopback)", show_lines=False)
    for column in COLUMNS:
        table.add_column(column, justify="left" if column in ("target", "scenario") else "right")
    previous = None
    for row in _sorted(rows):
        if previous is not None and (row.scenario, row.concurrency) != previous:
            table.add_section()
        previous = (row.scenario, row.concurrency)
        table.add_row(*_cells(row))
    (console or Console()).print(table)


def markdown_table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cells(row)) + " |" for row in _sorted(rows)]
    return "\n".join(lines)


def target_checks(rows: Sequence[Row], gateway: str = "runapi-sqlite",
                  rounds: Mapping[tuple[str, str, int], Sequence[Row]] | None = None) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for each of the issue's targets that this run measured (`rounds`: every
    round's row of each (target, scenario, concurrency), for the per-round twin ratios)."""
    found = {(r.scenario, r.concurrency): r for r in rows if r.target == gateway}
    out = []
    for scenario, c, figure, limit, text in TARGETS:
        row = found.get((scenario, c))
        value = None
        if row is not None:
            value = {"gateway_cpu": row.gateway_cpu_ms, "added_p50": row.added_p50_ms,
                     "added_ttft": row.added_ttft_ms}[figure]
        if value is None:
            out.append((text, "not measured in this run", "–"))
        else:
            verdict = "met" if value <= limit else f"missed ({value / limit:.1f}× the target)"
            out.append((text, f"{value:.3f} ms", verdict))
    return out + messages_cpu(rows, gateway, rounds) + worker_scaling(rows) + worker_rss(rows)


MESSAGES_CPU_MARGIN = 1.15


def messages_cpu(rows: Sequence[Row], gateway: str = "runapi-sqlite",
                 rounds: Mapping[tuple[str, str, int], Sequence[Row]] | None = None) -> list[tuple[str, str, str]]:
    """Issues 19 and 24: the gateway CPU per request of each other endpoint's scenario within 15 % of the
    chat scenario it is held to (`CHAT_TWIN`), at the same concurrency, in the same run. With `rounds`
    (every round's row of each cell), the verdict is the median of the per-round ratios: a twin measured
    in the same round, a minute apart at most, not the medians of rounds that drifted apart."""
    found = {(r.scenario, r.concurrency): r for r in rows if r.target == gateway}
    out = []
    for (scenario, c), row in sorted(found.items()):
        twin = found.get((CHAT_TWIN.get(scenario, ""), c))
        if twin is None or row.gateway_cpu_ms is None or not twin.gateway_cpu_ms:
            continue
        ratio = row.gateway_cpu_ms / twin.gateway_cpu_ms
        measured = f"{row.gateway_cpu_ms:.3f} ms against {twin.gateway_cpu_ms:.3f} ms ({ratio - 1:+.0%})"
        pairs = list(zip((rounds or {}).get((gateway, scenario, c), ()),
                         (rounds or {}).get((gateway, twin.scenario, c), ()), strict=False))
        ratios = sorted(a.gateway_cpu_ms / b.gateway_cpu_ms for a, b in pairs if a.gateway_cpu_ms and b.gateway_cpu_ms)
        if len(ratios) > 1:
            ratio = ratios[len(ratios) // 2]
            measured += f"; per round {', '.join(f'{r - 1:+.0%}' for r in ratios)}, median {ratio - 1:+.0%}"
        out.append((f"{scenario} c={c}: gateway CPU per request within 15 % of {twin.scenario}'s", measured,
                    "met" if ratio <= MESSAGES_CPU_MARGIN else "missed"))
    return out


RSS_PER_WORKER_MIB = 150.0


def worker_rss(rows: Sequence[Row]) -> list[tuple[str, str, str]]:
    """RSS per worker ≤ 150 MiB: the largest peak of any one RunAPI process (a lone gateway or one of
    `--workers N`), over every cell of the RunAPI rows of this commit (not the `--baseline` rows)."""
    peaks = [(r.process_rss_mib, r.target) for r in rows
             if r.target.startswith("runapi-") and "-at-" not in r.target and r.process_rss_mib is not None]
    if not peaks:
        return []
    peak, target = max(peaks)
    return [(f"RSS per worker ≤ {RSS_PER_WORKER_MIB:.0f} MiB (the largest peak of one RunAPI process, any cell)",
             f"{peak:.1f} MiB ({target})", "met" if peak <= RSS_PER_WORKER_MIB else "missed")]


def worker_scaling(rows: Sequence[Row]) -> list[tuple[str, str, str]]:
    """`--workers N` against one worker set up the same way (SQLite + Redis), json c=16: (target, measured,
    verdict). Met when N workers serve more requests per second than one, by more than noise (10 %)."""
    found = {r.target: r for r in rows if (r.scenario, r.concurrency) == ("json", 16)}
    one = found.get("runapi-sqlite-x1")
    many = [r for name, r in found.items() if name.startswith("runapi-sqlite-x") and "-at-" not in name
            and r is not one]  # not a --baseline row
    if one is None or not many or not one.load.rps:
        return []
    row = many[0]
    workers = row.target.rsplit("x", 1)[1]
    ratio = row.load.rps / one.load.rps
    rss = "" if row.peak_rss_mib is None else f"; peak RSS {row.peak_rss_mib:.0f} MiB for the {workers} workers"
    if row.peak_rss_mib is not None and row.process_rss_mib is not None:
        rss += f" and their supervisor (the largest process: {row.process_rss_mib:.0f} MiB)"
    return [(f"--workers {workers}, json c=16 (SQLite + Redis): throughput grows with the workers",
             f"{row.load.rps:,.0f} against {one.load.rps:,.0f} req/s for one worker, {ratio:.2f}×{rss}",
             "met" if ratio > 1.1 else "missed")]


def _run(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return ""
    return (out.stdout + out.stderr).strip()


def machine_description() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?")
    mhz = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("cpu MHz")), "?")
    nginx = _run(["nginx", "-v"]).removeprefix("nginx version: ") if shutil.which("nginx") else "not installed"
    wrk = _run(["wrk", "--version"]).splitlines()[0] if shutil.which("wrk") else "not installed"
    return "\n".join([
        f"- CPU: {model} ({mhz} MHz), `nproc` = {_run(['nproc'])}",
        f"- Kernel: {platform.release()}; Python {platform.python_version()}",
        f"- Load generators: {wrk.split(' Copyright')[0]}; aiohttp client (uvloop) for SSE",
        f"- nginx: {nginx}",
        "- `free -m`:",
        "",
        "```",
        _run(["free", "-m"]),
        "```",
    ])


def read_sections(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return {m["name"]: m["body"] for m in SECTION.finditer(path.read_text("utf-8"))}


def write_results(path: Path, new_sections: dict[str, str]) -> None:
    """Rewrite `path` with `new_sections` replacing sections of the same name; keep the rest."""
    sections = read_sections(path)
    sections.update(new_sections)
    parts = []
    for name in ORDER + sorted(set(sections) - set(ORDER)):
        if name in sections:
            body = sections[name].rstrip("\n") + "\n"
            parts.append(f"<!-- section:{name} -->\n{body}<!-- /section:{name} -->\n")
    path.write_text("\n".join(parts), "utf-8")


def loadavg() -> str:
    """The 1-minute load average (other work on this shared machine skews requests/s and latency)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def header_section(mode: str, started: dt.datetime, elapsed_s: float, upstream_note: str,
                   load: tuple[str, str] = ("?", "?")) -> str:
    return f"""# RunAPI benchmark results

Generated by `{('python bench/run.py ' + mode).strip()}` on {started:%Y-%m-%d %H:%M} UTC in {elapsed_s:.0f} s.
Everything runs on this one machine over loopback: the upstream, nginx or the gateway, and the load generator
share its cores, so requests/s are lower than on separate machines; the CPU milliseconds per request (CPU
time of the gateway's whole process tree, from /proc/<pid>/stat utime+stime, over the measured window divided
by the requests completed in it) is the figure that stays stable on a shared machine. The 1-minute load
average was {load[0]} when the run started and {load[1]} when it ended (2 cores: above 2, other work competed).

## Machine

{machine_description()}

## Upstream

{upstream_note}
"""


def results_section(rows: Sequence[Row], durations: str) -> str:
    return f"""## Results

{durations}

{markdown_table(rows)}

Columns: `+p50 vs direct` is the p50 latency minus the p50 of the upstream called directly in the same
scenario and concurrency; `TTFT` is the time to the first chunk carrying `delta.content` (SSE rows);
`gateway CPU ms/req` is nginx's or RunAPI's process tree; `upstream CPU ms/req` is the simulator's.
"""


def targets_section(rows: Sequence[Row], rounds: Mapping[tuple[str, str, int], Sequence[Row]] | None = None) -> str:
    lines = ["## Targets of issue 8 (RunAPI on SQLite, this run)", "", "| target | measured | verdict |",
             "|---|---|---|"]
    lines += [f"| {text} | {value} | {verdict} |" for text, value, verdict in target_checks(rows, rounds=rounds)]
    return "\n".join(lines) + "\n"
