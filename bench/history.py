"""Reports on a big history: p95 of the usage and report pages for one account with many generations.

    runapi db seed --accounts 10000 --generations 1000000 --hot 100000 --keys-file keys.txt
    python -m bench.history --database-url URL --keys-file keys.txt [--calls 40] [--explain]

Starts `runapi serve` on the seeded database (the first key of the file is the account with the
`--hot` generations), signs in to both dashboards, and times each page `--calls` times, one at a time:
`GET /v1/usage` over all its days, the customer dashboard (30 days), the admin CSV export of the
account over all its days, the admin revenue (margin) report (every account, 30 days) and the
operator dashboard. `--explain` prints the plans of the usage queries behind them (EXPLAIN ANALYZE on
PostgreSQL, EXPLAIN QUERY PLAN on SQLite).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench.procs import Child, free_port, wait_for_port
from bench.servers import ADMIN_TOKEN, RUNAPI

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _sign_in(client: httpx.Client, path: str, field: str, secret: str) -> None:
    page = client.get(path)
    match = CSRF.search(page.text)
    if match is None:
        raise RuntimeError(f"no CSRF token on {path}")
    answer = client.post(path, data={"csrf_token": match.group(1), field: secret})
    if answer.status_code != 303:
        raise RuntimeError(f"sign-in at {path} answered {answer.status_code}")


def _time(client: httpx.Client, path: str, calls: int, warmup: int, **options: object) -> list[float]:
    for _ in range(warmup):
        client.get(path, **options).raise_for_status()  # type: ignore[arg-type]
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        answer = client.get(path, **options)  # type: ignore[arg-type]
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise RuntimeError(f"{path} answered {answer.status_code}: {answer.text[:200]}")
    return times


def _p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20, method="inclusive")[-1]


def measure(base_url: str, key: str, calls: int, days: int) -> dict[str, list[float]]:
    first = (datetime.now(UTC).date() - timedelta(days=days - 1)).isoformat()
    api = httpx.Client(base_url=base_url, timeout=60, headers={"authorization": f"Bearer {key}"})
    account = api.get("/v1/usage").json()["account_id"]
    admin = httpx.Client(base_url=base_url, timeout=60, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    customer = httpx.Client(base_url=base_url, timeout=60)
    _sign_in(customer, "/dashboard/login", "api_key", key)
    operator = httpx.Client(base_url=base_url, timeout=60)
    _sign_in(operator, "/admin/dashboard/login", "token", ADMIN_TOKEN)
    pages = {
        f"GET /v1/usage ({days} days)": (api, f"/v1/usage?start={first}"),
        "customer dashboard (30 days)": (customer, "/dashboard"),
        f"CSV export of the account ({days} days)": (admin, f"/admin/usage?account_id={account}&format=csv&start={first}"),
        "revenue report (all accounts, 30 days)": (admin, "/admin/reports/revenue"),
        "operator dashboard": (operator, "/admin/dashboard"),
    }
    return {name: _time(client, path, calls, warmup=2) for name, (client, path) in pages.items()}


async def explain(database_url: str, account_id: str, days: int) -> str:
    """The plans of the per-account usage query, the all-accounts revenue query and the dashboard's totals."""
    from runapi.storage import UsageFilter, create_engine
    from runapi.storage.usage import account_usage_query, deployment_usage_query, totals_queries

    engine = create_engine(database_url)
    today = datetime.now(UTC).date()
    queries = {
        "usage by day and model, one account": account_usage_query(
            UsageFilter(start=today - timedelta(days=days - 1), end=today, account_id=account_id)),
        "revenue by deployment, all accounts, 30 days": deployment_usage_query(
            UsageFilter(start=today - timedelta(days=29), end=today)),
        **totals_queries(),
    }
    postgres = engine.dialect.name == "postgresql"
    out = []
    try:
        async with engine.connect() as conn:
            for name, query in queries.items():
                sql = str(query.compile(engine.sync_engine, compile_kwargs={"literal_binds": True}))
                prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
                rows = (await conn.exec_driver_sql(prefix + sql)).all()
                plan = "\n".join(str(r[0]) if postgres else f"{r[-1]}" for r in rows)
                out.append(f"### {name}\n\n```\n{plan}\n```\n")
    finally:
        await engine.dispose()
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--keys-file", type=Path, required=True)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--days", type=int, default=90, help="the seeded period")
    parser.add_argument("--redis-url", default="")
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args()
    key = args.keys_file.read_text().split("\n", 1)[0].strip()
    env = {**os.environ, "RUNAPI_DATABASE_URL": args.database_url, "RUNAPI_ADMIN_TOKEN": ADMIN_TOKEN,
           "RUNAPI_CONFIG": ""}
    env.pop("RUNAPI_REDIS_URL", None)
    if args.redis_url:
        env["RUNAPI_REDIS_URL"] = args.redis_url
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        child = Child("runapi", [*RUNAPI, "serve", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"],
                      Path(workdir) / "serve.log", env=env)
        try:
            wait_for_port(port, timeout=60, proc=child.proc)
            base_url = f"http://127.0.0.1:{port}"
            times = measure(base_url, key, args.calls, args.days)
            account = httpx.get(base_url + "/v1/usage", headers={"authorization": f"Bearer {key}"}).json()["account_id"]
        finally:
            child.stop()
    backend = args.database_url.split(":", 1)[0]
    print(f"| page ({backend}, {args.calls} calls) | p50 ms | p95 ms | max ms |\n| --- | ---: | ---: | ---: |")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.1f} | {_p95(values):.1f} | {max(values):.1f} |")
    if args.explain:
        print(asyncio.run(explain(args.database_url, account, args.days)))


if __name__ == "__main__":
    main()
