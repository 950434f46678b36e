"""The `runapi` command: serve the gateway, try it locally, and run the operator's book."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
import uvicorn
from rich.table import Table

from runapi.cli.accounts_cmd import accounts_app, credits_app, keys_app
from runapi.cli.common import command_group, console, errors, settings_or_exit
from runapi.cli.dev_cmd import dev
from runapi.cli.models_cmd import models_app
from runapi.cli.seed_cmd import db_seed
from runapi.cli.skill_cmd import skill_app
from runapi.cli.tasks_cmd import tasks_app
from runapi.cli.usage_cmd import register as register_usage
from runapi.logs import LOG_FORMATS, LogFormat, logging_config
from runapi.storage import (
    RollupMismatch,
    SchemaMismatch,
    check_schema,
    create_engine,
    rebuild_rollups,
    rollup_mismatches,
    upgrade,
)

app = command_group("RunAPI: an OpenAI-compatible LLM gateway with exact per-token billing.",
                    pretty_exceptions_show_locals=False)
db_app = command_group("Database schema (Alembic migrations).")
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
app.add_typer(credits_app, name="credits")
app.add_typer(models_app, name="models")
app.add_typer(skill_app, name="skill")
app.add_typer(tasks_app, name="tasks")
app.add_typer(db_app, name="db")
db_app.command("seed")(db_seed)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema of RUNAPI_DATABASE_URL to this version."""
    settings = settings_or_exit()
    upgrade(settings.database_url)
    console.print("[green]Database schema is up to date.[/green]")


@db_app.command("reconcile")
def db_reconcile(rebuild: bool = typer.Option(False, "--rebuild",
                                              help="Recompute the roll-ups from the rows (settlements wait)")) -> None:
    """Check the report roll-ups (usage by day, balances) against the generation and ledger rows."""
    settings = settings_or_exit()

    async def check() -> list[RollupMismatch]:
        engine = create_engine(settings.database_url)
        try:
            if rebuild:
                await rebuild_rollups(engine)
            return await rollup_mismatches(engine)
        finally:
            await engine.dispose()

    with console.status("Summing every generation and ledger row …"):
        wrong = asyncio.run(check())
    if not wrong:
        console.print("[green]The roll-ups agree with the generation and ledger rows.[/green]")
        return
    table = Table("table", "group", "roll-up", "rows", title=f"{len(wrong)} roll-up rows disagree")
    for mismatch in wrong[:50]:
        table.add_row(mismatch.table, " · ".join(mismatch.key), ", ".join(map(str, mismatch.rollup)),
                      ", ".join(map(str, mismatch.rows)))
    console.print(table)
    errors.print("[red]The roll-ups disagree with the rows (a hand edit, or tables restored from different "
                 "backups?). `runapi db reconcile --rebuild` recomputes them from the rows.[/red]")
    raise typer.Exit(1)


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
          workers: int = typer.Option(1, help="Worker processes (more than one needs RUNAPI_REDIS_URL)"),
          log_format: str = typer.Option("json", help="Log lines as JSON (one object per line) or readable text",
                                         metavar="json|text"),
          access_log: bool = typer.Option(True, "--access-log/--no-access-log",
                                          help="One log line per request (logger runapi.access)"),
          log_config: Path | None = typer.Option(None, metavar="FILE", help="Your own logging.config.dictConfig "
                                                 "file (.json, .yaml or .ini), instead of --log-format")) -> None:
    """Serve the gateway (settings from RUNAPI_* variables and RUNAPI_CONFIG)."""
    from runapi.http import guarded_protocol

    if log_format not in LOG_FORMATS:
        errors.print(f"[red]--log-format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}.[/red]")
        raise typer.Exit(2)
    fmt: LogFormat = "json" if log_format == "json" else "text"
    settings = settings_or_exit()
    if workers > 1 and not settings.redis_url:
        errors.print("[red]Several workers must share holds and limits: set RUNAPI_REDIS_URL "
                     "(and use PostgreSQL for RUNAPI_DATABASE_URL).[/red]")
        raise typer.Exit(2)
    _check_schema(settings.database_url)
    console.print(f"RunAPI gateway on http://{host}:{port}/v1 ({workers} worker{'s' if workers > 1 else ''})")
    uvicorn.run("runapi.http.app:create_app_from_env", factory=True, host=host, port=port, workers=workers,
                loop="uvloop", http=guarded_protocol(settings.server), access_log=False, log_level=None,
                log_config=str(log_config) if log_config else logging_config(fmt, access_log=access_log))


@app.command()
def sim(host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8790),
        latency_ms: float = typer.Option(0.0, help="Delay before the first byte"),
        chunk_delay_ms: float = typer.Option(0.0, help="Delay between streamed chunks"),
        completion_tokens: int = typer.Option(12, help="Words in each reply"),
        script: Path | None = typer.Option(None, help="JSON file: a list of scripted turns (docs/simulator.md)"),
        video_delay_ms: float = typer.Option(500.0, help="How long a simulated video job runs"),
        media_url_ttl_s: float = typer.Option(3600.0, help="How long generated image and video URLs work"),
        ) -> None:
    """Run the local upstream simulator alone (a development tool, not a provider)."""
    import msgspec

    from runapi.simulator import ScriptTurn, SimulatorConfig
    from runapi.simulator import serve as serve_simulator

    turns = msgspec.json.decode(script.read_bytes(), type=tuple[ScriptTurn, ...]) if script else ()
    console.print(f"Upstream simulator (development tool) on http://{host}:{port}/v1")
    serve_simulator(host, port, SimulatorConfig(latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms,
                                                completion_tokens=completion_tokens, script=turns,
                                                video_delay_ms=video_delay_ms, media_url_ttl_s=media_url_ttl_s))


app.command()(dev)
register_usage(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
