"""The `runapi` command reads well in an 80-column terminal and in scripts: no `<bool>` metavars in help,
tables that keep every ID whole, and `runapi models list --json`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runapi.cli.main import app
from runapi.config import load_settings
from runapi.storage import upgrade
from tests.support.processes import clean_env

CATALOG = load_settings({}).catalog


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    """Help, as click renders it for an 80-column terminal."""
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "80", "RUNAPI_CONFIG": "", **(env or {})},
                                terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


def _runapi(*args: str, env: dict[str, str] | None = None) -> str:
    """The command in a process of its own, its output piped, in an 80-column terminal (COLUMNS)."""
    result = subprocess.run([sys.executable, "-m", "runapi.cli.main", *args], capture_output=True, text=True,
                            env={**clean_env(COLUMNS="80"), **(env or {})}, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


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
    output = _runapi("models", "list")
    lines = output.splitlines()
    assert max(len(line) for line in lines) <= 80
    first_cells = {line.split()[0] for line in lines if line.strip()}
    assert set(CATALOG.models) <= first_cells  # every ID whole, on one line
    assert "…" not in output


def test_models_list_json_is_the_catalog() -> None:
    data = json.loads(_runapi("models", "list", "--json"))["data"]
    assert [m["id"] for m in data] == list(CATALOG.models)
    air = next(m for m in data if m["id"] == "glm-4.5-air")
    assert air["pricing"] == {"currency": "USD", "unit": "1M tokens", "input": "0.10", "output": "0.55",
                              "cache_read": "0.02", "cache_write": "0"}
    assert air["provider"] == "Z.ai" and air["context_length"] == 131072


def test_keys_and_accounts_tables_keep_ids_whole(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    upgrade(database)
    env = {"RUNAPI_DATABASE_URL": database}
    _runapi("accounts", "create", "a-customer-with-a-rather-long-name", env=env)
    _runapi("keys", "create", "a-customer-with-a-rather-long-name", "--name", "laptop of the night shift", env=env)
    for argv in (["accounts", "list"], ["keys", "list"], ["keys", "list", "a-customer-with-a-rather-long-name"]):
        output = _runapi(*argv, env=env)
        assert max(len(line) for line in output.splitlines()) <= 80
        assert re.search(r"^(?:acct|key)_[0-9a-f]{20}\b", output, flags=re.M)  # whole, on one line
        assert "laptop of the night shift" in output or argv[0] == "accounts"  # dropped columns before wrapping
