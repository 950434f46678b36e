"""RunAPI's benchmark, in one command: `python bench/run.py [--quick] [--postgres] [--profile] [--soak SECONDS]`
(`--workers N` adds a multi-worker row, `--baseline GIT_REF` an A/B row for another commit, `--litellm` and
`--portkey` rows for LiteLLM's proxy and Portkey's gateway as peers).

Starts the upstream simulator, then measures side by side the upstream called directly,
nginx as a plain reverse proxy, and `runapi serve` with its full pipeline (SQLite; and
PostgreSQL + Redis with `--postgres`), prints a table and writes `bench/RESULTS.md`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402

from bench import report  # noqa: E402
from bench.cells import Row, add_baselines, measure_cell  # noqa: E402
from bench.litellm_peer import start_litellm  # noqa: E402
from bench.loads import wrk_available  # noqa: E402
from bench.portkey_peer import start_portkey  # noqa: E402
from bench.profiling import ProfiledRun, profile_section, profile_under_load, py_spy  # noqa: E402
from bench.scenarios import FULL_PLAN, QUICK_PLAN, SCENARIOS  # noqa: E402
from bench.servers import Target, nginx_path, start_floor, start_gateway, start_nginx, start_upstream  # noqa: E402
from bench.soak import soak, soak_section  # noqa: E402

HERE = Path(__file__).resolve().parent
console = Console(width=None if sys.stdout.isatty() else 200)

UPSTREAM_NOTE = """The upstream is the project's own simulator (`runapi sim`: raw ASGI app in uvicorn with uvloop and
httptools, one process), not a leaner stand-in: called directly it answers the small non-streaming request
at {rps} req/s ({cpu} ms CPU per request) in this run, several times what the gateway reaches, so it is not
the bottleneck of the gateway rows; its CPU per request is shown in every row. Scenario knobs travel in the
request body's `x_sim` object, which nginx and RunAPI pass through unchanged."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a subset of cells with short windows (< 60 s)")
    parser.add_argument("--postgres", action="store_true",
                        help="add a RunAPI row on PostgreSQL (127.0.0.1:5432) + Redis (127.0.0.1:6379)")
    parser.add_argument("--litellm", action="store_true",
                        help="add a row for LiteLLM's proxy as a peer (installed once into its own virtual "
                             "environment under ~/.cache/runapi-bench: bench/litellm_peer.py)")
    parser.add_argument("--portkey", action="store_true",
                        help="add a row for Portkey's open-source gateway as a peer (npm, installed once under "
                             "~/.cache/runapi-bench: bench/portkey_peer.py)")
    parser.add_argument("--profile", action="store_true", help="py-spy a gateway under load afterwards")
    parser.add_argument("--profile-target", default="runapi-sqlite", metavar="NAME",
                        help="the gateways --profile samples, comma-separated (default runapi-sqlite; e.g. "
                             "runapi-postgres,runapi-postgres@REF with --baseline REF)")
    parser.add_argument("--soak", type=float, default=0.0, metavar="SECONDS",
                        help="then load the SQLite gateway for SECONDS, sampling its RSS")
    parser.add_argument("--duration", type=float, help="measured seconds per cell (default 4, quick 2)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per cell (default 1, quick 0.5)")
    parser.add_argument("--only", default="", help="comma-separated scenarios to run (default: the plan's)")
    parser.add_argument("--targets", default="",
                        help="comma-separated targets (default: direct,nginx,floor-asgi,runapi-sqlite,"
                             "runapi-sqlite-nolog; --quick leaves floor-asgi out) (direct,nginx,runapi-sqlite, "
                             "runapi-sqlite-nolog: the same "
                             "without its access log; also floor-raw and floor-asgi, a "
                             "bare Python proxy with RunAPI's upstream client: bench/floor.py); "
                             "--postgres adds runapi-postgres, --litellm litellm, --portkey portkey")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="add rows for `runapi serve --workers N` and for one worker set up the same way "
                             "(SQLite + Redis at 127.0.0.1:6379, as several workers need): the scaling, like for like")
    parser.add_argument("--baseline", metavar="GIT_REF", default="",
                        help="add a row for RunAPI at another commit next to each RunAPI row, in the same run (A/B)")
    parser.add_argument("--rounds", type=int, default=1, metavar="N",
                        help="measure every cell N times, the targets taking turns within each cell, and keep "
                             "each target's median (by CPU per request): steadier A/B figures on a noisy machine")
    parser.add_argument("--output", type=Path, help="results file (default bench/RESULTS.md; quick: a temp file)")
    return parser.parse_args(argv)


def _gateway_targets(args: argparse.Namespace) -> list[str]:
    default = "direct,nginx,runapi-sqlite,runapi-sqlite-nolog" if args.quick else FULL_TARGETS
    names = [n.strip() for n in (args.targets or default).split(",") if n.strip()]
    if args.postgres and "runapi-postgres" not in names:
        names.append("runapi-postgres")
    if args.litellm and "litellm" not in names:
        names.append("litellm")
    if args.portkey and "portkey" not in names:
        names.append("portkey")
    if "nginx" in names and nginx_path() is None:
        console.print("[yellow]nginx is not installed (apt-get install -y nginx): skipping its row[/yellow]")
        names.remove("nginx")
    return names


def _checkout(ref: str, workdir: Path) -> Path:
    """The project's files at git `ref`, exported into `workdir` (no worktree is registered)."""
    root = HERE.parent
    target = workdir / "baseline"
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", ref, "src"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"--baseline {ref}: git archive failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def _start(name: str, workdir: Path, upstream: Target) -> Target:
    base, at, _ = name.partition("@")  # "target@REF" (--baseline): the same target at another commit
    source = workdir / "baseline" if at else None
    if base.startswith("runapi-sqlite-x"):
        return start_gateway(workdir, upstream, name=name.replace("@", "-at-"), source=source,
                             workers=int(base.rsplit("x", 1)[1]), shared_state=True)
    if at:
        return start_gateway(workdir, upstream, name=name.replace("@", "-at-"), source=source,
                             postgres=base == "runapi-postgres")
    if name == "nginx":
        return start_nginx(workdir, upstream)
    if name in ("floor-raw", "floor-asgi"):
        return start_floor(workdir, upstream, name.split("-", 1)[1])
    if name == "runapi-sqlite":
        return start_gateway(workdir, upstream, name=name)
    if name == "runapi-sqlite-nolog":  # the access log's cost: this row against runapi-sqlite, same run
        return start_gateway(workdir, upstream, name=name, serve_args=["--no-access-log"])
    if name == "runapi-postgres":
        return start_gateway(workdir, upstream, name=name, postgres=True)
    if name == "litellm":
        return start_litellm(workdir, upstream, console)
    if name == "portkey":
        return start_portkey(workdir, upstream, console)
    raise SystemExit(f"unknown target {name!r}")


PEERS = ("litellm", "portkey")  # other projects' gateways, measured where they can serve a scenario
# A full run's targets: the floor of a Python proxy (uvicorn + RunAPI's upstream client, no pipeline) next to
# nginx, so each run shows how much of RunAPI's cost any Python ASGI gateway pays.
FULL_TARGETS = "direct,nginx,floor-asgi,runapi-sqlite,runapi-sqlite-nolog"


def median_row(samples: list[Row]) -> Row:
    """The middle one of a cell's rounds, by gateway CPU per request (req/s for the direct row)."""
    ordered = sorted(samples, key=lambda r: r.gateway_cpu_ms if r.gateway_cpu_ms is not None else -r.load.rps)
    return ordered[len(ordered) // 2]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_at, t0, load_at_start = dt.datetime.now(dt.UTC), time.monotonic(), report.loadavg()
    duration = args.duration or (2.0 if args.quick else 4.0)
    warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    if args.only:
        wanted = {s.strip() for s in args.only.split(",")}
        plan = [(s, c) for s, c in plan if s in wanted]
    if not wrk_available():
        console.print("[yellow]wrk is not installed (apt-get install -y wrk): JSON cells use the aiohttp client, "
                      "whose own CPU limits requests/s[/yellow]")
    names = _gateway_targets(args)
    if args.workers > 1:
        names += ["runapi-sqlite-x1", f"runapi-sqlite-x{args.workers}"]
    if args.baseline:
        names += [f"{name}@{args.baseline}" for name in list(names)
                  if name.startswith("runapi-") and name != "runapi-sqlite-nolog"]
    output = args.output or (Path(tempfile.gettempdir()) / "runapi-bench-quick.md" if args.quick
                             else HERE / "RESULTS.md")
    rows: list[Row] = []
    profiled: dict[str, list[ProfiledRun]] = {}
    sections: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="runapi-bench-") as tmp:
        workdir = Path(tmp)
        if args.baseline:
            _checkout(args.baseline, workdir)
        upstream = start_upstream(workdir)
        targets: dict[str, Target] = {}
        try:
            for name in names:  # all started first: the targets take turns within each cell
                targets[name] = upstream if name == "direct" else _start(name, workdir, upstream)
                console.print(f"[bold]{name}[/bold] at {targets[name].base_url}")
            samples: dict[tuple[str, str, int], list[Row]] = {}
            for round_number in range(1, args.rounds + 1):
                if args.rounds > 1:
                    console.print(f"[bold]round {round_number} of {args.rounds}[/bold]")
                for scenario, concurrency in plan:
                    for name in names:
                        if not targets[name].serves(SCENARIOS[scenario]):
                            continue  # no such endpoint there (the simulator and nginx have no /v1/responses)
                        try:
                            row = measure_cell(targets[name], upstream, SCENARIOS[scenario], concurrency,
                                               duration_s=duration, warmup_s=warmup, workdir=workdir)
                        except RuntimeError as exc:
                            if name not in PEERS:
                                raise
                            # A peer that cannot serve a scenario loses that cell, not the run.
                            console.print(f"  [yellow]{name} {scenario} c={concurrency}: {str(exc)[-300:]}[/yellow]")
                            continue
                        samples.setdefault((name, scenario, concurrency), []).append(row)
                        console.print(f"  {name:<24} {scenario:<10} c={concurrency:<3} {row.load.rps:>8,.0f} req/s  "
                                      f"p50 {row.load.p50_ms:7.3f} ms  gateway CPU "
                                      f"{report._f(row.gateway_cpu_ms, 3)} ms/req  errors {row.load.errors}"
                                      + (f"  database CPU {row.database_cpu_ms:.3f} ms/req"
                                         if row.database_cpu_ms is not None else ""))
            rows = [median_row(samples[(name, scenario, concurrency)])
                    for name in names for scenario, concurrency in plan if (name, scenario, concurrency) in samples]
            profile_targets = [n.strip() for n in args.profile_target.split(",") if n.strip() in targets]
            if profile_targets and args.profile:
                if py_spy() is None:
                    console.print("[yellow]py-spy is not installed (pip install py-spy): no profile[/yellow]")
                for name in profile_targets if py_spy() is not None else []:
                    for scenario, concurrency in (("json", 16), ("stream20", 16), ("json", 1)):
                        console.print(f"  profiling {name} {scenario} c={concurrency} …")
                        profiled.setdefault(name, []).append(profile_under_load(
                            targets[name], SCENARIOS[scenario], concurrency, 8.0 if not args.quick else 4.0, workdir))
            if "runapi-sqlite" in targets and args.soak > 0:
                console.print(f"  soak: {args.soak:.0f} s of json at c=16 …")
                result = soak(targets["runapi-sqlite"], SCENARIOS["json"], 16, args.soak, workdir)
                sections["soak"] = soak_section(result, "runapi-sqlite")
                console.print(f"  RSS growth {result.growth_mib:+.2f} MiB → "
                              f"{result.verdict}")
        finally:
            for target in targets.values():
                if target is not upstream:
                    target.stop()
            upstream.stop()
    add_baselines(rows)
    report.print_table(rows, console)
    for row in rows:
        if row.database_cpu_ms is not None:
            console.print(f"database CPU (its PostgreSQL backends): {row.target} {row.scenario} c={row.concurrency} "
                          f"{row.database_cpu_ms:.3f} ms/req")
    for text, value, verdict in report.target_checks(rows, rounds=samples):
        console.print(f"target: {text}: {value} → {verdict}")
    elapsed = time.monotonic() - t0
    mode = " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    direct = next((r for r in rows if r.target == "direct" and r.scenario == "json"), None)
    note = UPSTREAM_NOTE.format(rps=f"{direct.load.rps:,.0f}" if direct else "?",
                                cpu=report._f(direct.upstream_cpu_ms, 3) if direct else "?")
    sections["header"] = report.header_section(mode, started_at, elapsed, note, (load_at_start, report.loadavg()))
    durations = (f"{'Quick mode: a' if args.quick else 'A'} {duration:g} s measured window per cell after "
                 f"{warmup:g} s of warm-up; wrk (1 thread, 2 at c=64) for JSON, the aiohttp client for SSE.")
    if args.rounds > 1:
        durations += (f" Every cell was measured {args.rounds} times, the targets taking turns within the cell; "
                      "each row is its target's median round by CPU per request (by req/s for direct).")
    sections["results"] = report.results_section(rows, durations)
    sections["targets"] = report.targets_section(rows, samples)
    if profiled:
        sections["profile"] = "\n".join(profile_section(runs, name) for name, runs in profiled.items())
    report.write_results(output, sections)
    (output.with_suffix(".json")).write_text(json.dumps([r.as_dict() for r in rows], indent=1))
    console.print(f"Results written to {output} in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
