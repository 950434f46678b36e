"""The `runapi` command: serve the gateway, try it locally, and run the operator's book."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from decimal import Decimal
from pathlib import Path

import typer
import uvicorn

from runapi.cli.accounts_cmd import accounts_app, credits_app, keys_app
from runapi.cli.common import Stores, console, errors, settings_or_exit
from runapi.cli.models_cmd import models_app
from runapi.cli.skill_cmd import skill_app
from runapi.cli.tasks_cmd import tasks_app
from runapi.cli.usage_cmd import register as register_usage
from runapi.storage import SchemaMismatch, check_schema, create_engine, is_sqlite, upgrade

app = typer.Typer(help="RunAPI: an OpenAI-compatible LLM gateway with exact per-token billing.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
app.add_typer(credits_app, name="credits")
app.add_typer(models_app, name="models")
app.add_typer(skill_app, name="skill")
app.add_typer(tasks_app, name="tasks")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema of RUNAPI_DATABASE_URL to this version."""
    settings = settings_or_exit()
    upgrade(settings.database_url)
    console.print("[green]Database schema is up to date.[/green]")


def _check_schema(database_url: str) -> None:
    async def check() -> None:
        engine = create_engine(database_url)
        try:
            await check_schema(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(check())
    except SchemaMismatch as exc:
        errors.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="Interface to listen on"),
          port: int = typer.Option(8787, help="TCP port"),
          workers: int = typer.Option(1, help="Worker processes (more than one needs RUNAPI_REDIS_URL)")) -> None:
    """Serve the gateway (settings from RUNAPI_* variables and RUNAPI_CONFIG)."""
    from runapi.http.server_protocol import guarded_protocol

    settings = settings_or_exit()
    if workers > 1 and not settings.redis_url:
        errors.print("[red]Several workers must share holds and limits: set RUNAPI_REDIS_URL "
                     "(and use PostgreSQL for RUNAPI_DATABASE_URL).[/red]")
        raise typer.Exit(2)
    _check_schema(settings.database_url)
    console.print(f"RunAPI gateway on http://{host}:{port}/v1 ({workers} worker{'s' if workers > 1 else ''})")
    uvicorn.run("runapi.http.app:create_app_from_env", factory=True, host=host, port=port, workers=workers,
                loop="uvloop", http=guarded_protocol(settings.server),
                log_level="warning", access_log=False)


@app.command()
def sim(host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8790),
        latency_ms: float = typer.Option(0.0, help="Delay before the first byte"),
        chunk_delay_ms: float = typer.Option(0.0, help="Delay between streamed chunks"),
        completion_tokens: int = typer.Option(12, help="Words in each reply"),
        script: Path | None = typer.Option(None, help="JSON file: a list of scripted turns (docs/simulator.md)"),
        ) -> None:
    """Run the local upstream simulator alone (a development tool, not a provider)."""
    import msgspec

    from runapi.simulator import ScriptTurn, SimulatorConfig, serve as serve_simulator

    turns = msgspec.json.decode(script.read_bytes(), type=tuple[ScriptTurn, ...]) if script else ()
    console.print(f"Upstream simulator (development tool) on http://{host}:{port}/v1")
    serve_simulator(host, port, SimulatorConfig(latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms,
                                                completion_tokens=completion_tokens, script=turns))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _demo_key(database_url: str) -> str:
    """The demo account (created once, topped up to $10 when low) and a fresh key for it."""
    from runapi.config import load_settings

    stores = Stores(load_settings({"RUNAPI_DATABASE_URL": database_url}))
    try:
        try:
            account = await stores.accounts.find_account("demo")
        except Exception:
            account = await stores.accounts.create_account("demo", "tier-1")
        balance, _ = await stores.ledger.balance(account.id)
        if balance < 1_000_000_000:
            await stores.ledger.add_entry(account.id, "topup", 10_000_000_000 - balance, "runapi dev demo credit")
        _, secret = await stores.accounts.create_key(account.id, "runapi dev")
        return secret
    finally:
        await stores.engine.dispose()


@app.command()
def dev(port: int = typer.Option(8787, help="Gateway port"),
        database: str = typer.Option("runapi-dev.db", help="SQLite file for the dev database")) -> None:
    """A first look without provider keys: the gateway, the upstream simulator and a demo key."""
    import msgspec

    from runapi.catalog import builtin_catalog_data
    from runapi.config import ConfigFile, load_settings
    from runapi.http import create_app
    from runapi.http.server_protocol import guarded_protocol
    from runapi.simulator import create_simulator_app

    database_url = os.environ.get("RUNAPI_DATABASE_URL") or f"sqlite+aiosqlite:///{os.path.abspath(database)}"
    if not is_sqlite(database_url):
        console.print(f"Using {database_url.split('@')[-1]}")
    upgrade(database_url)
    secret = asyncio.run(_demo_key(database_url))

    sim_port = _free_port()
    sim_server = uvicorn.Server(uvicorn.Config(create_simulator_app(), host="127.0.0.1", port=sim_port,
                                               log_level="warning", loop="uvloop", http="httptools"))
    sim_server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    threading.Thread(target=sim_server.run, daemon=True).start()
    while not sim_server.started:
        time.sleep(0.02)

    sim_url = f"http://127.0.0.1:{sim_port}"
    providers = {name: {"base_url": f"{sim_url}/v1" if spec["protocol"] == "openai" else sim_url, "api_key_env": ""}
                 for name, spec in builtin_catalog_data()["providers"].items()}
    config = msgspec.convert({"providers": providers}, ConfigFile)
    settings = load_settings({**os.environ, "RUNAPI_DATABASE_URL": database_url}, config)
    base = f"http://127.0.0.1:{port}/v1"
    console.print(f"""[bold]RunAPI dev[/bold]: gateway {base}  ·  simulator {sim_url}/v1 (every provider points here)
Demo account "demo" has ${Decimal(10)} of credit. Your demo key (shown once):

  [bold green]{secret}[/bold green]

curl:
  curl {base}/chat/completions -H "Authorization: Bearer {secret}" \\
    -H "Content-Type: application/json" \\
    -d '{{"model": "glm-4.5-air", "messages": [{{"role": "user", "content": "Hello"}}]}}'

Python (openai SDK):
  from openai import OpenAI
  client = OpenAI(base_url="{base}", api_key="{secret}")
  print(client.chat.completions.create(model="glm-4.5-air",
        messages=[{{"role": "user", "content": "Hello"}}]).choices[0].message.content)
""", soft_wrap=True)
    uvicorn.run(create_app(settings), host="127.0.0.1", port=port, loop="uvloop",
                http=guarded_protocol(settings.server),
                log_level="warning")


register_usage(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
