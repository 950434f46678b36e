"""Model skills: `GET /v1/models/{id}/skill` and `runapi skill install`, against a real gateway."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from runapi.catalog import builtin_catalog_data, price_line
from runapi.cli.main import app as cli
from runapi.web.skills import render_skill, skill_name, skill_name_from_text
from tests.support.gateway import RunningGateway

MODEL_IDS = [m["id"] for m in builtin_catalog_data()["models"]]


def front_matter(text: str) -> tuple[dict[str, str], str]:
    assert text.startswith("---\n")
    head, _, body = text[4:].partition("\n---\n")
    data = yaml.safe_load(head)
    assert isinstance(data, dict)
    return data, body


def named_model_ids(body: str) -> set[str]:
    """Every model ID the skill tells an agent to use: table rows, headings, defaults and code."""
    ids = set(re.findall(r"^\| `([^`]+)` \|", body, re.MULTILINE))
    ids |= set(re.findall(r"^### `([^`]+)`", body, re.MULTILINE))
    ids |= set(re.findall(r"Default to `([^`]+)`", body))
    ids |= set(re.findall(r'model="([^"]+)"', body)) | set(re.findall(r'"model": "([^"]+)"', body))
    return ids


@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_skill_front_matter_parses_and_names_only_real_models(gateway: RunningGateway, model_id: str) -> None:
    catalog = gateway.settings.catalog
    response = httpx.get(f"{gateway.base_url}/v1/models/{model_id}/skill", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"] == "text/markdown; charset=utf-8"
    meta, body = front_matter(response.text)
    entry = catalog.models[model_id]
    family = {m.id for m in catalog.family_of(entry)}
    assert set(meta) == {"name", "description"}
    assert meta["name"] == skill_name(entry.family) == response.headers["x-skill-name"]
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", meta["name"]) and len(meta["name"]) <= 64
    assert 0 < len(meta["description"]) <= 1024 and "\n" not in meta["description"]
    assert all(i in meta["description"] for i in family)
    assert named_model_ids(body) == family <= set(catalog.models)
    assert f"{gateway.base_url}/v1" in body
    for block in re.findall(r"```python\n(.*?)```", body, re.DOTALL):
        compile(block, "SKILL.md", "exec")
    if entry.mode != "text":  # typed models: price in the unit, and every input of the JSON Schema
        for m in catalog.family_of(entry):
            row = next(line for line in body.splitlines() if line.startswith(f"| `{m.id}` |"))
            assert row.endswith(f"| {price_line(m)} |") and f"| {m.mode} | {m.task_type} |" in row
            section = body[body.index(f"## Inputs of `{m.id}`"):]
            fields = re.findall(r"^\| ([a-z_]+) \|", section.split("\n## ")[0], re.MULTILINE)
            assert fields == list(m.input_schema()["properties"])
        assert f"POST {gateway.base_url}{entry.endpoint}" in body and "HTTP 400 naming the field" in body
        return
    for m in catalog.family_of(entry):  # prices as the catalog has them, USD per 1M tokens
        row = next(line for line in body.splitlines() if line.startswith(f"| `{m.id}` |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")][-4:]
        prices = [m.pricing.input, m.pricing.output, m.pricing.cache_read, m.pricing.cache_write]
        assert [Decimal(0) if c == "free" else Decimal(c.lstrip("$")) for c in cells] == prices
    assert "stream=True" in body and "Failed generations are not charged" in body


def test_skill_is_per_family_and_accepts_aliases(gateway: RunningGateway) -> None:
    air = httpx.get(f"{gateway.base_url}/v1/models/glm-4.5-air/skill").text
    standard = httpx.get(f"{gateway.base_url}/v1/models/glm-4.5/skill").text
    assert air == standard
    meta, body = front_matter(air)
    assert meta["name"] == "runapi-glm-4-5"
    assert "| `glm-4.5-air` | GLM-4.5-Air | air | 131,072 | 98,304 | $0.10 | $0.55 | $0.02 | free |" in body
    entry = next(m for m in gateway.settings.catalog.models.values() if m.aliases)
    by_alias = httpx.get(f"{gateway.base_url}/v1/models/{entry.aliases[0]}/skill")
    assert by_alias.status_code == 200 and front_matter(by_alias.text)[0]["name"] == skill_name(entry.family)


def test_skill_route_does_not_shadow_the_model_api(gateway: RunningGateway) -> None:
    model = httpx.get(f"{gateway.base_url}/v1/models/glm-4.5-air").json()
    assert model["id"] == "glm-4.5-air" and model["object"] == "model"
    missing = httpx.get(f"{gateway.base_url}/v1/models/no-such-model/skill")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"


def test_cli_installs_the_gateways_skill_under_the_project(gateway: RunningGateway, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["skill", "install", "glm-4.5-air", "--dir", str(tmp_path),
                                      "--base-url", gateway.base_url + "/v1/"])
    assert result.exit_code == 0, result.output
    target = tmp_path / ".claude" / "skills" / "runapi-glm-4-5" / "SKILL.md"
    assert target.read_text("utf-8") == httpx.get(f"{gateway.base_url}/v1/models/glm-4.5-air/skill").text
    assert "runapi-glm-4-5" in result.output


def test_cli_defaults_to_the_current_directory_and_the_local_catalog(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"RUNAPI_CONFIG": "", "RUNAPI_BASE_URL": ""}
    result = CliRunner().invoke(cli, ["skill", "install", "claude-haiku-4-5"], env=env)
    assert result.exit_code == 0, result.output
    text = (tmp_path / ".claude" / "skills" / "runapi-claude-haiku" / "SKILL.md").read_text("utf-8")
    meta, body = front_matter(text)
    assert meta["name"] == "runapi-claude-haiku" and "http://127.0.0.1:8787/v1" in body
    assert named_model_ids(body) == {"claude-haiku-4-5"}


def test_cli_reports_unknown_models_and_unreachable_gateways(gateway: RunningGateway, tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(cli, ["skill", "install", "nope", "--dir", str(tmp_path), "--base-url", gateway.base_url])
    assert missing.exit_code == 1 and "does not exist" in missing.output
    away = runner.invoke(cli, ["skill", "install", "glm-4.6", "--dir", str(tmp_path),
                               "--base-url", "http://127.0.0.1:9"])
    assert away.exit_code == 1 and "Could not reach" in away.output
    assert not (tmp_path / ".claude").exists()


@pytest.mark.parametrize("text", [
    "no front matter", "---\nname: ../../etc\n---\n", "---\nname: Has Spaces\n---\n", "---\ndescription: x\n---\n",
    "---\nname: " + "a" * 65 + "\n---\n",
])
def test_a_skill_with_an_unsafe_name_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        skill_name_from_text(text)


def test_skill_mentions_tasks_only_when_the_gateway_serves_them(gateway: RunningGateway) -> None:
    from runapi.web.skills import Features

    catalog = gateway.settings.catalog
    entry = catalog.models["glm-4.7"]
    assert "/v1/tasks" not in render_skill(catalog, entry, "https://api.example.com").text
    with_tasks = render_skill(catalog, entry, "https://api.example.com", Features(tasks=True)).text
    assert "POST https://api.example.com/v1/tasks" in with_tasks and "callback_url" in with_tasks
