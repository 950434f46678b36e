"""Where the gateway's CPU goes: py-spy samples of the gateway process under load.

py-spy records collapsed stacks without the idle frames (a thread waiting in epoll is
not sampled), so each function's share of samples is its share of CPU time; multiplied
by the measured CPU per request it becomes milliseconds per request.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.cells import drive
from bench.procs import thread_cpu_seconds, tree_cpu_seconds
from bench.scenarios import Scenario
from bench.servers import Target

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


@dataclass
class Profile:
    samples: int
    self_time: list[tuple[str, int]] = field(default_factory=list)
    inclusive: list[tuple[str, int]] = field(default_factory=list)
    areas: list[tuple[str, int]] = field(default_factory=list)


def _short(path: str) -> str:
    for marker in ("site-packages/", "/src/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "lib/python3.":
                path = "stdlib/" + path.split("/", 1)[1]
            break
    return path


def _frame_name(frame: str) -> tuple[str, str]:
    """("func (module/file.py)", file) for one collapsed-stack frame."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip(), ""
    file = _short(match["file"])
    return f"{match['func']} ({file})", file


AREAS = [
    ("settlement + ledger writes (SQLAlchemy, driver)", ("sqlalchemy/", "aiosqlite/", "asyncpg/", "runapi/storage/",
                                                         "runapi/accounting/settlement.py", "greenlet/")),
    ("rate limits, spend caps", ("runapi/limits/", "redis/")),
    ("metrics, health", ("prometheus_client/", "runapi/metrics.py", "runapi/health.py")),
    ("upstream client (http_client + adapters)", ("aiohttp/", "multidict/", "yarl/", "runapi/providers/")),
    ("pipeline (auth, hold, pricing, relay)", ("runapi/pipeline/", "runapi/accounting/", "msgspec/")),
    ("HTTP server (uvicorn, starlette, edge)", ("uvicorn/", "httptools/", "starlette/", "runapi/http/")),
]
OTHER_AREA = "event loop (uvloop C code) and the rest"


def _area(files: list[str]) -> str:
    """The area of the innermost frame that belongs to one (a stack is listed outermost first)."""
    for file in reversed(files):
        for name, prefixes in AREAS:
            if file.startswith(prefixes):
                return name
    return OTHER_AREA


def parse_collapsed(text: str, top: int = 20) -> Profile:
    """Self and inclusive sample counts per function, and self samples per area, from py-spy's raw output."""
    self_count: collections.Counter[str] = collections.Counter()
    incl_count: collections.Counter[str] = collections.Counter()
    area_count: collections.Counter[str] = collections.Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        names = [_frame_name(f) for f in stack.split(";") if f.strip()]
        if not names:
            continue
        total += count
        leaf = names[-1][0]
        self_count[leaf] += count
        # Frames outside the event loop (`runapi serve` → uvicorn.run → Runner.run) say nothing of the work.
        entry = max((i for i, (name, _) in enumerate(names) if name.startswith("Runner.run ")), default=-1)
        area_count[_area([file for _, file in names[entry + 1:]])] += count
        for name in {name for name, _ in names}:
            incl_count[name] += count
    return Profile(total, self_count.most_common(top), incl_count.most_common(top * 2), area_count.most_common())


def record(pid: int, seconds: float, out: Path, rate: int = 200, gil_only: bool = True) -> subprocess.Popen[bytes]:
    """Start `py-spy record` on `pid` for `seconds` (raw collapsed stacks to `out`); the caller waits."""
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy into the venv)")
    argv = [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", str(rate),
            "--format", "raw", "--output", str(out), "--nonblocking", *(["--gil"] if gil_only else [])]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@dataclass
class ProfiledRun:
    scenario: str
    concurrency: int
    requests: int
    cpu_ms_per_request: float
    main_thread_ms: float
    other_threads_ms: float
    profile: Profile


def profile_under_load(target: Target, scenario: Scenario, concurrency: int, seconds: float,
                       workdir: Path, gil_only: bool = True) -> ProfiledRun:
    """py-spy the gateway while the scenario's load runs; CPU per request and per thread from /proc."""
    assert target.pid is not None
    out = workdir / f"profile-{scenario.name}-c{concurrency}.txt"
    drive(target, scenario, concurrency, 1.0, workdir)  # warm
    threads_before, cpu_before = thread_cpu_seconds(target.pid), tree_cpu_seconds(target.pid)
    spy = record(target.pid, seconds + 1, out, gil_only=gil_only)
    load = drive(target, scenario, concurrency, seconds, workdir)
    threads_after, cpu_after = thread_cpu_seconds(target.pid), tree_cpu_seconds(target.pid)
    _, err = spy.communicate(timeout=60)
    if not out.exists():
        raise RuntimeError(f"py-spy wrote no profile: {err.decode(errors='replace')[-2000:]}")
    per_request = 1000 / max(1, load.requests)
    main = (threads_after.get(target.pid, 0.0) - threads_before.get(target.pid, 0.0)) * per_request
    others = sum(after - threads_before.get(tid, 0.0) for tid, after in threads_after.items() if tid != target.pid)
    return ProfiledRun(scenario.name, concurrency, load.requests, (cpu_after - cpu_before) * per_request, main,
                       others * per_request, parse_collapsed(out.read_text()))


def profile_section(runs: list[ProfiledRun], gateway: str) -> str:
    parts = [f"""## Profile (py-spy, {gateway})

Sampled with `py-spy record --nonblocking --gil --rate 200 --format raw` on the gateway process while the
scenario's load ran (the profiled window's figures include py-spy's own perturbation and differ slightly
from the table). Only samples of the thread holding the GIL are kept, so a function's share of samples is
its share of the interpreter's CPU time; `ms/req` spreads the process's CPU per request over those shares
(approximate: SQLite's own C code runs in aiosqlite's threads without the GIL, see the thread split).
Areas: each sample goes to the innermost frame that belongs to a known library or RunAPI package; frames
of C code (uvloop, kernel calls) are charged to their Python caller. Coroutine stacks resumed from C
(greenlets of SQLAlchemy's asyncio layer, tasks) are partial, so inclusive shares are lower bounds.
"""]
    for run in runs:
        prof = run.profile
        total = max(1, prof.samples)

        def ms(count: int, run: ProfiledRun = run, total: int = total) -> str:
            return f"{100 * count / total:.1f} % | {run.cpu_ms_per_request * count / total:.3f}"

        parts.append(f"### `{run.scenario}` at c={run.concurrency}\n\n"
                     f"{run.requests:,} requests; {run.cpu_ms_per_request:.3f} ms CPU per request for the whole "
                     f"process: main (event-loop) thread {run.main_thread_ms:.3f} ms, other threads (aiosqlite "
                     f"workers, …) {run.other_threads_ms:.3f} ms. {prof.samples:,} samples.\n")
        parts.append("| area (self time) | share | ms/req |\n|---|---|---|")
        parts += [f"| {name} | {ms(count)} |" for name, count in prof.areas]
        parts.append("\n| top self frames | share | ms/req |\n|---|---|---|")
        parts += [f"| `{name}` | {ms(count)} |" for name, count in prof.self_time[:15]]
        ours = [(name, count) for name, count in prof.inclusive if "runapi/" in name][:15]
        parts.append("\n| RunAPI functions, inclusive | share | ms/req |\n|---|---|---|")
        parts += [f"| `{name}` | {ms(count)} |" for name, count in ours]
        parts.append("")
    return "\n".join(parts)
