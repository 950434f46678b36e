"""A soak that says which mappings grow: json at c=16 through wrk on the SQLite gateway, sampling
/proc/<pid>/smaps split by kind (`bench/smaps.py`), the thread count and the database's file sizes.

    flock /tmp/runapi-heavy.lock .venv/bin/python bench/memsoak.py --seconds 300 [--env MALLOC_ARENA_MAX=2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench.loads import WRK_LUA
from bench.scenarios import SCENARIOS
from bench.servers import start_gateway, start_upstream
from bench.smaps import KINDS, rollup_kib, split_kib


def sample(pid: int, directory: Path, elapsed: float) -> dict[str, float]:
    arenas: list[int] = []
    row: dict[str, float] = {"t": round(elapsed), **{k: v / 1024 for k, v in split_kib(pid, arenas).items()}}
    row["arena_list"] = [round(a / 1024, 1) for a in sorted(arenas, reverse=True)]  # type: ignore[assignment]
    row["rss"] = rollup_kib(pid)["Rss"] / 1024
    row["threads"] = len(os.listdir(f"/proc/{pid}/task"))
    for suffix in ("", "-wal", "-shm"):
        path = directory / f"runapi.db{suffix}"
        row[f"db{suffix}"] = path.stat().st_size / 2**20 if path.exists() else 0.0
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--interval", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the gateway's environment")
    parser.add_argument("--output", type=Path, help="the samples as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runapi-memsoak-") as tmp:
        workdir = Path(tmp)
        upstream = start_upstream(workdir)
        saved = dict(os.environ)
        os.environ.update(dict(item.split("=", 1) for item in args.env))
        try:
            gateway = start_gateway(workdir, upstream)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        assert gateway.pid is not None
        pid, directory = gateway.pid, workdir / "runapi-sqlite"
        rows = []
        try:
            time.sleep(2)
            rows.append(sample(pid, directory, -1))  # idle, after start-up and the three admin calls
            script, body = workdir / "post.lua", workdir / "body.json"
            script.write_text(WRK_LUA)
            body.write_bytes(SCENARIOS["json"].body)
            argv = ["wrk", "-t", "1", "-c", str(args.concurrency), "-d", f"{round(args.seconds)}s", "--timeout",
                    "10s", "-s", str(script), gateway.url, "--", str(body), gateway.api_key]
            started = time.monotonic()
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            next_at = started
            while proc.poll() is None:
                if time.monotonic() >= next_at:
                    rows.append(sample(pid, directory, time.monotonic() - started))
                    next_at += args.interval
                time.sleep(0.2)
            rows.append(sample(pid, directory, time.monotonic() - started))
            output = proc.stdout.read() if proc.stdout else ""
            line = next((ln for ln in output.splitlines() if ln.startswith("WRKJSON ")), "WRKJSON {}")
            requests = json.loads(line.removeprefix("WRKJSON ")).get("requests", 0)
            time.sleep(5)
            rows.append(sample(pid, directory, time.monotonic() - started))  # idle again
        finally:
            gateway.stop()
            upstream.stop()
    columns = ["t", "rss", *KINDS, "threads", "db", "db-wal", "db-shm"]
    print(f"env {args.env or '-'}: {requests:,} requests in {args.seconds:.0f} s (MiB; -1 = idle before, last = idle 5 s after)")
    print(" ".join(f"{c:>7}" for c in columns))
    for row in rows:
        print(" ".join(f"{row[c]:>7.1f}" if isinstance(row[c], float) else f"{row[c]:>7}" for c in columns),
              " arenas:", row["arena_list"])
    if args.output:
        args.output.write_text(json.dumps({"env": args.env, "requests": requests, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
