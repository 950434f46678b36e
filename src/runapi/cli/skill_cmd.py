"""`runapi skill`: install a model family's agent skill (`SKILL.md`) where coding agents look.

With `--base-url` (or `RUNAPI_BASE_URL`) the skill is fetched from that gateway, so it carries
that instance's URL, prices and features; without it, it is generated from the local catalog.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import typer

from runapi.cli.common import command_group, console, errors, settings_or_exit
from runapi.web import render_skill, skill_name_from_text

skill_app = command_group("Agent skills (SKILL.md) that teach coding agents to call a model family.")
LOCAL_ROOT_URL = "http://127.0.0.1:8787"  # `runapi serve`'s default address
SKILLS_DIR = Path(".claude") / "skills"


def gateway_root(url: str) -> str:
    """`https://host/v1/` → `https://host`: the gateway root, as the skill API expects."""
    root = url.strip().rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def fetch_skill(root_url: str, model: str, timeout: float = 30.0) -> str:
    """The SKILL.md the gateway at `root_url` serves for `model`; exits with a clear message on failure."""
    url = f"{gateway_root(root_url)}/v1/models/{quote(model, safe='')}/skill"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the user's own gateway URL
            return str(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = f"HTTP {exc.code}"
        errors.print(f"[red]{message}[/red]")
        raise typer.Exit(1) from exc
    except (urllib.error.URLError, OSError) as exc:
        errors.print(f"[red]Could not reach the gateway at {url}: {exc}[/red]")
        raise typer.Exit(1) from exc


def local_skill(model: str) -> str:
    settings = settings_or_exit()
    entry = settings.catalog.resolve(model)
    if entry is None:
        errors.print(f"[red]No model {model!r}.[/red] `runapi models list` shows the catalog.")
        raise typer.Exit(1)
    root = gateway_root(settings.server.public_base_url) if settings.server.public_base_url else LOCAL_ROOT_URL
    return render_skill(settings.catalog, entry, root).text


def skill_text(model: str, base_url: str) -> str:
    return fetch_skill(base_url, model) if base_url else local_skill(model)


@skill_app.command("install")
def install(
    model: str = typer.Argument(..., help="A model ID or alias, e.g. glm-4.5-air (the skill covers its family)"),
    directory: Path = typer.Option(Path("."), "--dir", help="Project directory; the skill is written to "
                                   "DIR/.claude/skills/<name>/SKILL.md"),
    base_url: str = typer.Option("", "--base-url", envvar="RUNAPI_BASE_URL",
                                 help="Gateway to fetch the skill from, e.g. https://api.example.com"),
) -> None:
    """Write the model family's SKILL.md under .claude/skills/ of the project (default: here)."""
    text = skill_text(model, base_url)
    try:
        name = skill_name_from_text(text)
    except ValueError as exc:
        errors.print(f"[red]The gateway sent an invalid skill: {exc}[/red]")
        raise typer.Exit(1) from exc
    target = directory / SKILLS_DIR / name / "SKILL.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    console.print(f"Installed skill [bold]{name}[/bold] → {target}")


@skill_app.command("show")
def show(
    model: str = typer.Argument(..., help="A model ID or alias"),
    base_url: str = typer.Option("", "--base-url", envvar="RUNAPI_BASE_URL", help="Gateway to fetch the skill from"),
) -> None:
    """Print the model family's SKILL.md."""
    typer.echo(skill_text(model, base_url), nl=False)
