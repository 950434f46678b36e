"""The servers under test, each in its own process on a free loopback port.

- `start_upstream`: the project's upstream simulator (`runapi sim`, uvicorn + uvloop + httptools).
- `start_nginx`: Debian's nginx as a plain reverse proxy with a keep-alive upstream pool.
- `start_gateway`: `runapi serve` with the full pipeline, on SQLite or on a throw-away
  PostgreSQL database, with one funded account and key created through the admin API.
- `start_floor`: a bare Python proxy with RunAPI's upstream client (`bench/floor.py`), the floor
  under the gateway's pipeline.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import Child, free_port, wait_for_port
from bench.scenarios import CHAT_PATH, EMBEDDINGS_PATH, MESSAGES_PATH, Scenario

UPSTREAM_PATHS = frozenset({CHAT_PATH, MESSAGES_PATH, EMBEDDINGS_PATH})  # what the simulator serves
# The floor proxies relay every body to the upstream's chat completions: they stand in for plain chat only.
FLOOR_SCENARIOS = frozenset({"json", "stream20", "prompt32k", "paced"})
PEER_PATHS = frozenset({CHAT_PATH, MESSAGES_PATH})  # what the peer gateways are set up for

PYTHON = sys.executable
PROJECT = Path(__file__).resolve().parent.parent  # for `python -m bench.…` children
# `runapi` itself (the venv's console script) when installed, else the same module through this interpreter.
_SCRIPT = Path(sys.executable).parent / "runapi"
RUNAPI = [str(_SCRIPT)] if _SCRIPT.exists() else [PYTHON, "-m", "runapi.cli.main"]
ADMIN_TOKEN = "bench-admin-" + secrets.token_hex(8)
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_URL = "redis://127.0.0.1:6379/0"
CREDIT_USD = "100000"


@dataclass
class Target:
    """Something the load clients can call: a base URL, the key to send, the process tree to meter."""

    name: str
    base_url: str
    api_key: str = ""
    child: Child | None = None
    scenario_headers: Callable[[Scenario], dict[str, str]] | None = None  # Portkey's routing headers
    paths: frozenset[str] | None = None  # the endpoints it serves (None: every scenario's)
    scenarios: frozenset[str] | None = None  # the scenarios it can stand in for (None: any on its paths)
    cleanup: list[Child] = field(default_factory=list)
    drop_database: str = ""

    def serves(self, scenario: Scenario) -> bool:
        """Whether the scenario's endpoint exists here (the simulator, and so nginx, has no /v1/responses)."""
        return ((self.paths is None or scenario.path in self.paths)
                and (self.scenarios is None or scenario.name in self.scenarios))

    def headers_for(self, scenario: Scenario) -> dict[str, str]:
        """Extra headers for the scenario's requests (none for most targets)."""
        return self.scenario_headers(scenario) if self.scenario_headers else {}

    @property
    def url(self) -> str:
        return self.base_url + "/v1/chat/completions"

    @property
    def pid(self) -> int | None:
        return self.child.pid if self.child else None

    def stop(self) -> None:
        for child in [*self.cleanup, *([self.child] if self.child else [])]:
            child.stop()
        if self.drop_database:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{self.drop_database}" WITH (FORCE)'))


def start_upstream(workdir: Path) -> Target:
    """The upstream simulator in its own process (`runapi sim`), called directly."""
    port = free_port()
    child = Child("upstream", [*RUNAPI, "sim", "--host", "127.0.0.1", "--port", str(port)],
                  workdir / "upstream.log")
    try:
        wait_for_port(port, proc=child.proc)
    except RuntimeError:
        child.stop()
        raise RuntimeError(f"the simulator did not start:\n{child.log_tail()}") from None
    return Target("direct", f"http://127.0.0.1:{port}", child=child, paths=UPSTREAM_PATHS)


NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_max_body_size 8m;
    client_body_buffer_size 128k;
    upstream llm {{
        server 127.0.0.1:{upstream_port};
        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://llm;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""


def nginx_path() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)


def start_nginx(workdir: Path, upstream: Target) -> Target:
    """nginx in the foreground (no daemon, no system service), one worker, keep-alive upstream pool."""
    binary = nginx_path()
    if binary is None:
        raise RuntimeError("nginx is not installed (apt-get install -y nginx)")
    directory = workdir / "nginx"
    directory.mkdir(exist_ok=True)
    directory.chmod(0o755)  # the worker drops root and must reach its temp directories
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / sub).mkdir(exist_ok=True)
        (directory / sub).chmod(0o777)
    port = free_port()
    upstream_port = upstream.base_url.rsplit(":", 1)[1]
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=directory, port=port, upstream_port=upstream_port))
    child = Child("nginx", [binary, "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")],
                  workdir / "nginx.log")
    try:
        wait_for_port(port, proc=child.proc)
    except RuntimeError:
        child.stop()
        raise RuntimeError(f"nginx did not start:\n{child.log_tail()}") from None
    return Target("nginx", f"http://127.0.0.1:{port}", child=child, paths=UPSTREAM_PATHS)


def start_floor(workdir: Path, upstream: Target, mode: str) -> Target:
    """`bench/floor.py` in `mode` ("raw" or "asgi") in front of `upstream`."""
    port = free_port()
    name = f"floor-{mode}"
    child = Child(name, [PYTHON, "-m", "bench.floor", "--upstream", upstream.base_url, "--port", str(port),
                         "--mode", mode], workdir / f"{name}.log", env={**os.environ, "PYTHONPATH": str(PROJECT)})
    try:
        wait_for_port(port, proc=child.proc)
    except RuntimeError:
        child.stop()
        raise RuntimeError(f"{name} did not start:\n{child.log_tail()}") from None
    return Target(name, f"http://127.0.0.1:{port}", child=child, paths=UPSTREAM_PATHS, scenarios=FLOOR_SCENARIOS)


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_pg_database() -> tuple[str, str]:
    """A throw-away PostgreSQL database on 127.0.0.1:5432 (trust auth): (name, SQLAlchemy URL)."""
    name = f"runapi_bench_{secrets.token_hex(4)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    return name, f"postgresql+asyncpg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def _admin(base_url: str, method: str, path: str, body: dict[str, str]) -> dict[str, object]:
    request = urllib.request.Request(base_url + path, data=json.dumps(body).encode(), method=method, headers={
        "authorization": f"Bearer {ADMIN_TOKEN}", "content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        data: dict[str, object] = json.loads(response.read())
    return data


BENCH_TIER = "bench"


def _bench_tier_toml() -> str:
    """A `[tiers.bench]` table whose limits the benchmark never reaches (when this version has tiers):
    the limiter still runs on every request, it just never says no."""
    from runapi.config import ConfigFile

    if "tiers" not in ConfigFile.__struct_fields__:
        return ""
    return (f"\n[tiers.{BENCH_TIER}]\nrequests_per_minute = 100000000\ntokens_per_minute = 100000000000\n"
            "concurrent_requests = 100000\nmonthly_spend_cap_usd = \"100000000\"\n"
            "qualifying_topup_usd = \"900000000\"\n")


def start_gateway(workdir: Path, upstream: Target, *, name: str = "runapi-sqlite", postgres: bool = False,
                  command: list[str] | None = None, source: Path | None = None, workers: int = 1,
                  shared_state: bool = False, serve_args: list[str] | None = None, server_toml: str = "") -> Target:
    """`runapi serve` (full pipeline) in front of `upstream`, with a funded account and its key.

    `command` replaces `python -m runapi.cli.main serve` (for A/B experiments); it gets
    `--host 127.0.0.1 --port N` appended and the same environment. `source` runs another checkout's
    `src` folder instead of the installed package (`--baseline`). `workers` > 1 runs `serve --workers N`
    sharing limits and holds through Redis (127.0.0.1:6379), as several workers must; `shared_state` sets
    up one worker the same way (the like-for-like baseline of a scaling figure). `serve_args` are added to
    `runapi serve`'s (`--no-access-log` for the row without the access log); `server_toml`, lines of its
    `[server]` table (the loop-lag probe of `bench/stalls.py`). The gateway's log (JSON lines,
    one per request) goes to `serve.log` in its directory."""
    directory = workdir / name
    directory.mkdir(exist_ok=True)
    config = directory / "runapi.toml"
    # Z.ai (chat completions), Anthropic (Messages, for the native `claude` scenarios) and OpenAI (the
    # `embeddings` scenario) on the simulator.
    config.write_text(f'[providers.zai]\nbase_url = "{upstream.base_url}/v1"\n'
                      f'[providers.anthropic]\nbase_url = "{upstream.base_url}"\n'
                      f'[providers.openai]\nbase_url = "{upstream.base_url}/v1"\n' + _bench_tier_toml()
                      + (f"[server]\n{server_toml}\n" if server_toml else ""))
    env = {**os.environ, "RUNAPI_CONFIG": str(config), "RUNAPI_ADMIN_TOKEN": ADMIN_TOKEN, "ZAI_API_KEY": "sk-bench",
           "ANTHROPIC_API_KEY": "sk-ant-bench", "OPENAI_API_KEY": "sk-bench"}
    env.pop("RUNAPI_REDIS_URL", None)
    runapi = RUNAPI
    if source is not None:
        env["PYTHONPATH"] = str(source / "src")
        runapi = [PYTHON, "-m", "runapi.cli.main"]
    drop = ""
    if postgres:
        drop, env["RUNAPI_DATABASE_URL"] = create_pg_database()
        env["RUNAPI_REDIS_URL"] = REDIS_URL
    elif workers > 1 or shared_state:
        env["RUNAPI_DATABASE_URL"] = f"sqlite+aiosqlite:///{directory / 'runapi.db'}"
        env["RUNAPI_REDIS_URL"] = REDIS_URL
    else:
        env["RUNAPI_DATABASE_URL"] = f"sqlite+aiosqlite:///{directory / 'runapi.db'}"
    target = Target(name, "", drop_database=drop)
    try:
        upgrade = subprocess.run([*runapi, "db", "upgrade"], env=env, capture_output=True,
                                 timeout=120)
        if upgrade.returncode != 0:
            raise RuntimeError(f"runapi db upgrade failed:\n{upgrade.stdout.decode()}{upgrade.stderr.decode()}")
        port = free_port()
        serve = command or [*runapi, "serve", *(["--workers", str(workers)] if workers > 1 else []),
                            *(serve_args or [])]
        target.child = Child(name, [*serve, "--host", "127.0.0.1", "--port", str(port)], directory / "serve.log",
                             env=env)
        try:
            wait_for_port(port, timeout=60, proc=target.child.proc)
        except RuntimeError:
            raise RuntimeError(f"runapi serve did not start:\n{target.child.log_tail()}") from None
        target.base_url = f"http://127.0.0.1:{port}"
        tiered = bool(_bench_tier_toml())
        account = _admin(target.base_url, "POST", "/admin/accounts", {"name": f"bench-{secrets.token_hex(3)}",
                                                                    **({"tier": BENCH_TIER} if tiered else {})})
        _admin(target.base_url, "POST", f"/admin/accounts/{account['id']}/credits", {"amount_usd": CREDIT_USD})
        key = _admin(target.base_url, "POST", f"/admin/accounts/{account['id']}/keys", {"name": "bench"})
        target.api_key = str(key["key"])
    except BaseException:
        target.stop()
        raise
    return target
