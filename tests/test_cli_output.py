"""The `runapi` command reads well in an 80-column terminal and in scripts: no `<bool>` metavars in help,
tables that keep every ID whole, and `runapi models list --json`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runapi.cli.main import app
from runapi.config import load_settings
from runapi.storage import upgrade

CATALOG = load_settings({}).catalog


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "80", "RUNAPI_CONFIG": "", **(env or {})},
                                terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def _commands() -> list[list[str]]:
    """Every command and group, as argv prefixes."""
    import typer.main

    found: list[list[str]] = [[]]
    root = typer.main.get_command(app)

    def walk(command: object, prefix: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            found.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(root, [])
    return found


@pytest.mark.parametrize("argv", _commands(), ids=lambda argv: " ".join(argv) or "runapi")
def test_help_has_no_bool_metavars_and_fits_80_columns(argv: list[str]) -> None:
    output = _run(*argv, "--help")
    assert "<bool>" not in output and "BOOLEAN" not in output
    assert max(len(line) for line in output.splitlines()) <= 80


def test_models_list_fits_80_columns_with_whole_ids() -> None:
    output = _run("models", "list")
    lines = output.splitlines()
    assert max(len(line) for line in lines) <= 80
    first_cells = {line.split()[0] for line in lines if line.strip()}
    assert set(CATALOG.models) <= first_cells  # every ID whole, on one line
    assert "…" not in output


def test_models_list_json_is_the_catalog() -> None:
    data = json.loads(_run("models", "list", "--json"))["data"]
    assert [m["id"] for m in data] == list(CATALOG.models)
    air = next(m for m in data if m["id"] == "glm-4.5-air")
    assert air["pricing"] == {"currency": "USD", "unit": "1M tokens", "input": "0.10", "output": "0.55",
                              "cache_read": "0.02", "cache_write": "0"}
    assert air["provider"] == "Z.ai" and air["context_length"] == 131072


def test_keys_and_accounts_tables_keep_ids_whole(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    upgrade(database)
    env = {"RUNAPI_DATABASE_URL": database}
    _run("accounts", "create", "a-customer-with-a-rather-long-name", env=env)
    _run("keys", "create", "a-customer-with-a-rather-long-name", "--name", "laptop of the night shift", env=env)
    for argv in (["accounts", "list"], ["keys", "list"]):
        output = _run(*argv, env=env)
        assert max(len(line) for line in output.splitlines()) <= 80
        assert re.search(r"\b(?:acct|key)_[0-9a-f]{20}\b", output)  # whole, on one line
    assert re.search(r"\bkey_[0-9a-f]{20}\b.*\bacct_[0-9a-f]{20}\b", _run("keys", "list", env=env))
