"""`runapi tasks`: the operator's view of asynchronous tasks and their webhook deliveries."""

from __future__ import annotations

from datetime import datetime

import typer

from runapi.cli.common import (
    Stores,
    command_group,
    console,
    print_table,
    run_with_stores,
    settings_or_exit,
)
from runapi.cli.common import (
    table as cli_table,
)
from runapi.money import nanos_to_usd
from runapi.tasks import TaskStore, WebhookStore

tasks_app = command_group("Asynchronous tasks and their webhook deliveries.")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


@tasks_app.command("list")
def tasks_list(account: str = typer.Option(None, help="Account ID or name (all accounts if omitted)"),
               status: str = typer.Option(None, help="queued, running, succeeded, failed or cancelled"),
               limit: int = typer.Option(50, help="How many, newest first")) -> None:
    """List tasks, newest first."""

    async def work(stores: Stores) -> None:
        account_id = (await stores.accounts.find_account(account)).id if account else None
        headers = ["ID", "Account", "Model", "Status", "Runs", "Cost (USD)", "Created", "Finished"]
        rows = [[task.id, task.account_id, task.model, task.status, str(task.runs),
                 "" if task.cost_nanos is None else str(nanos_to_usd(task.cost_nanos)),
                 _when(task.created_at), _when(task.finished_at)]
                for task in await TaskStore(stores.engine).list(account_id, status=status, limit=limit)]
        print_table(headers, rows, ids=("ID", "Account", "Model"),
                    optional=("Finished", "Runs", "Created", "Account") if account_id is None else
                    ("Account", "Finished", "Runs", "Created"))

    run_with_stores(work)


@tasks_app.command("show")
def tasks_show(task_id: str) -> None:
    """Show one task: status, runs, generation, cost, error."""

    async def work(stores: Stores) -> None:
        task = await TaskStore(stores.engine).get(task_id)
        for name, value in (("ID", task.id), ("Account", task.account_id), ("Model", task.model),
                            ("Endpoint", task.endpoint), ("Status", task.status), ("Runs", task.runs),
                            ("Generation", task.generation_id or ""), ("Callback", task.callback_url or ""),
                            ("Cost (USD)", "" if task.cost_nanos is None else nanos_to_usd(task.cost_nanos)),
                            ("Created", _when(task.created_at)), ("Finished", _when(task.finished_at)),
                            ("Error", (task.error or {}).get("message", ""))):
            console.print(f"[bold]{name:>11}[/bold]  {value}")

    run_with_stores(work)


@tasks_app.command("deliveries")
def tasks_deliveries(task_id: str) -> None:
    """Every webhook event of a task and each delivery attempt."""

    async def work(stores: Stores) -> None:
        await TaskStore(stores.engine).get(task_id)
        webhooks = WebhookStore(stores.engine)
        events = await webhooks.events(task_id)
        if not events:
            console.print(f"Task {task_id} has no webhook events (no callback_url, or not finished yet).")
            return
        table = cli_table("Webhook ID", "Type", "URL", "Status", "Attempts", "Next attempt", ids=("Webhook ID",))
        for event in events:
            table.add_row(event.id, event.event_type, event.url, event.status, str(event.attempts),
                          _when(event.next_attempt_at) if event.status == "pending" else "")
        console.print(table)
        attempts = cli_table("#", "Webhook ID", "When", "HTTP", "Outcome", "ms", "Error", ids=("Webhook ID",))
        for attempt in await webhooks.attempts(task_id):
            attempts.add_row(str(attempt.attempt), attempt.event_id, _when(attempt.created_at),
                             str(attempt.status_code or ""), attempt.outcome, f"{attempt.duration_ms:.1f}",
                             attempt.error or "")
        console.print(attempts)

    run_with_stores(work)


@tasks_app.command("rotate-secret")
def tasks_rotate_secret(account: str = typer.Argument(..., help="Account ID or name")) -> None:
    """Rotate an account's webhook signing secret (the old one keeps signing for the grace period)."""
    grace = settings_or_exit().tasks.webhook_secret_grace

    async def work(stores: Stores) -> None:
        found = await stores.accounts.find_account(account)
        secret = await WebhookStore(stores.engine).rotate(found.id, grace)
        console.print(f"New webhook secret for {found.name}:\n\n  [bold green]{secret}[/bold green]\n")
        console.print(f"Webhooks carry a second signature with the old secret for {grace:g} s.")

    run_with_stores(work)
