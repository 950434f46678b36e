"""Many tenants and a long history, same run (issue 24 item 4), with the per-request database work.

    python -m bench.tenants [--postgres] [--accounts 10000] [--history 1000000] [--duration 10] [--rounds 2]

Two gateways on two seeded databases (`runapi db seed`, tier `bench`): `fresh` has the accounts and
keys only, `history` also `--history` generations and their charges. Each round drives, on each gateway,
the JSON scenario at c=16 with one key (`1 key`) and with every request on the next of the `--accounts`
keys (`N keys`, wrk reading the keys file), and the 20-chunk stream the same two ways (aiohttp).
Every key is used once before the first round (warm: keys, balances, spend totals loaded), after an
`N keys, cold` cell on `fresh`, whose keys no request has used yet (each first use loads the key, the
balance and the month's spend).

With `--postgres` the gateways use PostgreSQL and a private Redis (its own `redis-server`, so
`INFO commandstats` counts only this bench): each cell also reports Redis commands and their server
time per request, and PostgreSQL transactions, table scans (≈ read statements) and rows written per
request (`pg_stat_database`, `pg_stat_user_tables` deltas; `pg_stat_statements` is not preloaded here).
`--baseline GIT_REF` adds a `fresh@REF` gateway running that commit's `src` on its own copy of the
`fresh` database (A/B in the same run; the cells take turns).
`--count-pg` puts a counting proxy (`bench/pg_wire.py`, its own process) between each gateway and
PostgreSQL: PostgreSQL round trips and statements per request, counted on the wire. `--history 0` runs
the `fresh` gateway only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.loads import LoadResult, run_async_client, run_wrk, run_wrk_keys
from bench.pg_wire import read_counts
from bench.procs import Child, cpu_meter, free_port, wait_for_port
from bench.scenarios import SCENARIOS
from bench.servers import (
    ADMIN_TOKEN,
    BENCH_TIER,
    PYTHON,
    RUNAPI,
    Target,
    _bench_tier_toml,
    create_pg_database,
    start_upstream,
)

CONCURRENCY = 16


@dataclass
class Gateway:
    name: str
    env: dict[str, str]
    keys_file: Path
    keys: list[str]
    child: Child | None = None
    base_url: str = ""
    database: str = ""  # PostgreSQL database name
    pg_control: int = 0  # the counting proxy's control port (`--count-pg`), or 0
    source: Path | None = None  # another checkout's folder with `src/` (`--baseline`)
    rows: list[dict[str, object]] = field(default_factory=list)


def _run(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def prepare(name: str, workdir: Path, upstream: Target, accounts: int, history: int, postgres: bool,
            redis_url: str) -> Gateway:
    """A seeded database and the environment of a gateway on it."""
    directory = workdir / name
    directory.mkdir()
    config = directory / "runapi.toml"
    config.write_text(f'[providers.zai]\nbase_url = "{upstream.base_url}/v1"\n' + _bench_tier_toml())
    env = {**os.environ, "RUNAPI_CONFIG": str(config), "RUNAPI_ADMIN_TOKEN": ADMIN_TOKEN, "ZAI_API_KEY": "sk-bench"}
    env.pop("RUNAPI_REDIS_URL", None)
    database = ""
    if postgres:
        database, env["RUNAPI_DATABASE_URL"] = create_pg_database()
        env["RUNAPI_REDIS_URL"] = redis_url
    else:
        env["RUNAPI_DATABASE_URL"] = f"sqlite+aiosqlite:///{directory / 'runapi.db'}"
    keys_file = directory / "keys.txt"
    _run([*RUNAPI, "db", "upgrade"], env)
    started = time.perf_counter()
    out = _run([*RUNAPI, "db", "seed", "--accounts", str(accounts), "--generations", str(history),
                "--hot", str(min(history, 100_000)), "--tier", BENCH_TIER, "--credit", "100000",
                "--keys-file", str(keys_file)], {**env, "COLUMNS": "200"})
    print(f"[{name}] seeded in {time.perf_counter() - started:.0f} s: {out.strip().splitlines()[-1]}", flush=True)
    keys = keys_file.read_text().split()
    return Gateway(name, env, keys_file, keys, database=database)


def count_pg(gateway: Gateway, workdir: Path) -> Child:
    """Route the gateway's PostgreSQL connections through a counting proxy (`bench/pg_wire.py`)."""
    listen, control = free_port(), free_port()
    url = gateway.env["RUNAPI_DATABASE_URL"]
    upstream = url.split("@", 1)[1].split("/", 1)[0]
    proxy = Child(f"pg-wire-{gateway.name}", [PYTHON, "-m", "bench.pg_wire", "--listen", str(listen), "--upstream",
                                              upstream, "--control", str(control)], workdir / f"pg-wire-{gateway.name}.log",
                  cwd=Path(__file__).resolve().parent.parent)
    wait_for_port(control, proc=proxy.proc)
    gateway.env = {**gateway.env, "RUNAPI_DATABASE_URL": url.replace(upstream, f"127.0.0.1:{listen}")}
    gateway.pg_control = control
    return proxy


def start(gateway: Gateway, workdir: Path) -> None:
    port = free_port()
    runapi, env = RUNAPI, gateway.env
    if gateway.source is not None:
        runapi, env = [PYTHON, "-m", "runapi.cli.main"], {**env, "PYTHONPATH": str(gateway.source / "src")}
    gateway.child = Child(gateway.name, [*runapi, "serve", "--host", "127.0.0.1", "--port", str(port),
                                         "--no-access-log"], workdir / gateway.name / "serve.log", env=env)
    wait_for_port(port, timeout=60, proc=gateway.child.proc)
    gateway.base_url = f"http://127.0.0.1:{port}"


def redis_stats(port: int) -> dict[str, tuple[int, int]]:
    """`INFO commandstats`: command → (calls, usec) (commands run by scripts counted too, their time also
    in the script's), `INFO cpu` as `cpu` → (0, the server's CPU microseconds), and `INFO stats`'s read
    events as `reads` → (count, 0): one per batch of commands a client's write delivered (≈ round trips)."""
    out = subprocess.run(["redis-cli", "-p", str(port), "info", "all"], capture_output=True, text=True,
                         check=False).stdout
    stats = {}
    cpu = sum(float(line.split(":")[1]) for line in out.splitlines()
              if line.startswith(("used_cpu_sys:", "used_cpu_user:")))
    stats["cpu"] = (0, int(cpu * 1e6))
    for line in out.splitlines():
        if line.startswith("total_reads_processed:"):  # read events: about one per round trip received
            stats["reads"] = (int(line.split(":")[1]), 0)
        if line.startswith("cmdstat_"):
            name, _, rest = line.partition(":")
            fields = dict(item.split("=") for item in rest.split(","))
            stats[name.removeprefix("cmdstat_")] = (int(fields["calls"]), int(fields["usec"]))
    return stats


async def _pg_stats(database: str) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database=database)
    try:
        db = await conn.fetchrow("SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted "
                                 "FROM pg_stat_database WHERE datname = current_database()")
        tables = await conn.fetchrow("SELECT sum(coalesce(seq_scan, 0)) AS seq, sum(coalesce(idx_scan, 0)) AS idx "
                                     "FROM pg_stat_user_tables")
    finally:
        await conn.close()
    return {**{k: int(v) for k, v in db.items()}, "scans": int(tables["seq"] or 0) + int(tables["idx"] or 0),
            "seq_scans": int(tables["seq"] or 0)}


def pg_stats(database: str) -> dict[str, int]:
    time.sleep(1.2)  # backends report their counters at most once a second
    return asyncio.run(_pg_stats(database))


def drive(gateway: Gateway, scenario: str, rotate: bool, duration: float, workdir: Path) -> LoadResult:
    spec = SCENARIOS[scenario]
    url = gateway.base_url + spec.path
    single = gateway.keys[-1]  # not the account with the hot history
    if not spec.stream:
        if rotate:
            return run_wrk_keys(url, spec.body, gateway.keys_file, CONCURRENCY, duration, workdir)
        return run_wrk(url, spec.body, single, CONCURRENCY, duration, workdir)
    return run_async_client(url, spec.body, single, CONCURRENCY, stream=True, duration_s=duration,
                            keys=gateway.keys if rotate else None)


def cell(gateway: Gateway, scenario: str, rotate: bool, duration: float, workdir: Path, redis_port: int,
         label: str = "") -> dict[str, object]:
    assert gateway.child is not None
    before_redis = redis_stats(redis_port) if redis_port else {}
    before_pg = pg_stats(gateway.database) if gateway.database else {}
    before_wire = read_counts(gateway.pg_control) if gateway.pg_control else {}
    with cpu_meter(gateway.child.pid) as cpu:
        load = drive(gateway, scenario, rotate, duration, workdir)
    row: dict[str, object] = {
        "gateway": gateway.name, "scenario": scenario, "keys": label or (f"{len(gateway.keys)} keys" if rotate else "1 key"),
        "requests": load.requests, "errors": load.errors, "rps": round(load.rps, 1),
        "cpu_ms_per_req": round(cpu[0] * 1000 / max(1, load.requests), 3), "p50_ms": round(load.p50_ms, 2),
        "p99_ms": round(load.p99_ms, 2)}
    if redis_port:
        after = redis_stats(redis_port)
        calls = {k: after[k][0] - before_redis.get(k, (0, 0))[0] for k in after if k not in ("cpu", "info", "reads")}
        per = max(1, load.requests)
        row["redis_reads_per_req"] = round((after["reads"][0] - before_redis["reads"][0]) / per, 2)
        row["redis_cmds_per_req"] = round(sum(calls.values()) / per, 2)
        row["redis_scripts_per_req"] = round(sum(v for k, v in calls.items() if k.startswith("eval")) / per, 2)
        row["redis_cpu_usec_per_req"] = round((after["cpu"][1] - before_redis["cpu"][1]) / per, 1)
        row["redis_top"] = {k: round(v / per, 2) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])[:5] if v}
    if gateway.database:
        after_pg = pg_stats(gateway.database)
        per = max(1, load.requests)
        for name in ("xact_commit", "scans", "seq_scans", "tup_inserted", "tup_updated"):
            row[f"pg_{name}_per_req"] = round((after_pg[name] - before_pg[name]) / per, 3)
    if gateway.pg_control:
        after_wire = read_counts(gateway.pg_control)
        per = max(1, load.requests)
        for name in ("round_trips", "statements", "connections"):
            row[f"pg_{name}_per_req"] = round((after_wire.get(name, 0) - before_wire.get(name, 0)) / per, 3)
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scenarios", default="json,stream20")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    parser.add_argument("--baseline", metavar="GIT_REF", default="",
                        help="add a gateway running this commit (A/B in the same run)")
    parser.add_argument("--count-pg", action="store_true",
                        help="count PostgreSQL round trips and statements on the wire (bench/pg_wire.py)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="runapi-tenants-"))
    children: list[Child] = []
    gateways: list[Gateway] = []
    redis_port = 0
    try:
        upstream = start_upstream(workdir)
        children.append(upstream.child)  # type: ignore[arg-type]
        redis_url = ""
        if args.postgres:
            redis_port = free_port()
            children.append(Child("redis", ["redis-server", "--port", str(redis_port), "--save", "",
                                            "--appendonly", "no"], workdir / "redis.log"))
            wait_for_port(redis_port)
            redis_url = f"redis://127.0.0.1:{redis_port}/0"
        gateways = [prepare("fresh", workdir, upstream, args.accounts, 0, args.postgres, redis_url)]
        if args.baseline:
            baseline = prepare(f"fresh@{args.baseline}", workdir, upstream, args.accounts, 0, args.postgres, redis_url)
            baseline.source = _checkout(args.baseline, workdir)
            gateways.append(baseline)
        if args.history:
            gateways.append(prepare("history", workdir, upstream, args.accounts, args.history, args.postgres,
                                    redis_url))
        for gateway in gateways:
            if args.count_pg and gateway.database:
                children.append(count_pg(gateway, workdir))
            start(gateway, workdir)
        rows = []
        for gateway in gateways:
            if gateway.name.startswith("fresh"):
                rows.append(cell(gateway, "json", True, args.duration, workdir, redis_port,
                                 label=f"{args.accounts} keys, cold"))
        for gateway in gateways:  # every key once: keys, balances and spend totals loaded
            run_async_client(gateway.base_url + SCENARIOS["json"].path, SCENARIOS["json"].body, "", CONCURRENCY,
                             stream=False, requests=len(gateway.keys), keys=gateway.keys)
        for _ in range(args.rounds):
            for scenario in args.scenarios.split(","):
                for gateway in gateways:
                    for rotate in (False, True):
                        rows.append(cell(gateway, scenario, rotate, args.duration, workdir, redis_port))
        summary(rows)
        if args.out:
            args.out.write_text(json.dumps(rows, indent=1))
    finally:
        for gateway in gateways:
            if gateway.child:
                gateway.child.stop()
        for child in children:
            child.stop()
        for gateway in gateways:
            if gateway.database:
                from bench.servers import _pg_admin
                asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{gateway.database}" WITH (FORCE)'))
        shutil.rmtree(workdir, ignore_errors=True)


def _checkout(ref: str, workdir: Path) -> Path:
    """The project's `src` at git `ref`, exported into `workdir` (no worktree is registered)."""
    root = Path(__file__).resolve().parent.parent
    target = workdir / f"baseline-{ref.replace('/', '-')}"
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(root), "archive", "--format=tar", ref, "src"], capture_output=True,
                             check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def summary(rows: list[dict[str, object]]) -> None:
    """Medians per (gateway, scenario, keys): CPU per request against the same gateway's 1-key cell and
    against `fresh`'s, Redis commands, scripts and read events (≈ round trips), PostgreSQL round trips (with `--count-pg`)."""
    groups: dict[tuple[str, str, str], list[dict[str, object]]] = {}
    for row in rows:
        groups.setdefault((str(row["gateway"]), str(row["scenario"]), str(row["keys"])), []).append(row)

    def med(group: list[dict[str, object]] | None, name: str) -> float:
        values = [float(r[name]) for r in group or [] if name in r]  # type: ignore[arg-type]
        return statistics.median(values) if values else float("nan")

    print("\n| gateway | scenario | keys | CPU ms/req | × its 1 key | × fresh, 1 key | Redis cmds | Redis scripts "
          "| Redis reads | PG round trips |\n| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (gateway, scenario, keys), group in groups.items():
        cpu = med(group, "cpu_ms_per_req")
        own = med(groups.get((gateway, scenario, "1 key")), "cpu_ms_per_req")
        fresh = med(groups.get(("fresh", scenario, "1 key")), "cpu_ms_per_req")
        print(f"| {gateway} | {scenario} | {keys} | {cpu:.3f} | {cpu / own:.2f} | {cpu / fresh:.2f} "
              f"| {med(group, 'redis_cmds_per_req'):.1f} | {med(group, 'redis_scripts_per_req'):.2f} "
              f"| {med(group, 'redis_reads_per_req'):.2f} | {med(group, 'pg_round_trips_per_req'):.2f} |")


if __name__ == "__main__":
    main()
