"""Issue 20.9, smaller items: `/metrics` is the operator's (a token, or clients on the host, and the
shipped proxy does not pass it on), and with `public_base_url` unset a request's `Host` header is not
reflected into model pages, SKILL.md or task output URLs (only an allow-listed host is)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.support.gateway import RunningGateway, run_gateway, sqlite_url

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
EVIL = "attacker.example"


def test_metrics_need_the_token_when_one_is_set(sim_url: str, tmp_path: Path) -> None:
    with run_gateway(sqlite_url(tmp_path), sim_url, env={"RUNAPI_METRICS_TOKEN": "scrape-me"}) as gw:
        assert httpx.get(f"{gw.base_url}/metrics").status_code == 401
        assert httpx.get(f"{gw.base_url}/metrics", headers={"authorization": "Bearer scrape-mE"}).status_code == 401
        scraped = httpx.get(f"{gw.base_url}/metrics", headers={"authorization": "Bearer scrape-me"})
        assert scraped.status_code == 200 and "runapi_" in scraped.text


def test_without_a_token_metrics_are_for_this_host_only(gateway: RunningGateway) -> None:
    assert httpx.get(f"{gateway.base_url}/metrics").status_code == 200  # a scraper on the host
    # A client behind the (trusted, loopback) proxy, as nginx forwards it:
    refused = httpx.get(f"{gateway.base_url}/metrics", headers={"x-forwarded-for": "203.0.113.9"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "metrics_restricted"


def test_the_shipped_proxy_keeps_metrics_internal() -> None:
    nginx = (DEPLOY / "nginx.conf").read_text()
    assert re.search(r"location = /metrics \{\s*return 404;", nginx)


def test_a_forged_host_header_is_not_reflected(gateway: RunningGateway) -> None:
    assert not gateway.settings.server.public_base_url
    headers = {"host": EVIL}
    page = httpx.get(f"{gateway.base_url}/models/glm-4.5-air", headers=headers)
    skill = httpx.get(f"{gateway.base_url}/v1/models/glm-4.5-air/skill", headers=headers)
    assert page.status_code == skill.status_code == 200
    assert EVIL not in page.text and EVIL not in skill.text
    assert f"{gateway.base_url}/v1" in page.text and f"{gateway.base_url}/v1" in skill.text  # its own address
    _, key = gateway.create_account("1")
    task = httpx.post(f"{gateway.base_url}/v1/tasks", headers={**headers, "authorization": f"Bearer {key}"},
                      json={"model": "glm-4.5-air", "input": {"messages": [{"role": "user", "content": "hi"}]}})
    assert task.status_code == 202 and EVIL not in task.text


def test_an_allow_listed_host_is_shown(sim_url: str, tmp_path: Path) -> None:
    with run_gateway(sqlite_url(tmp_path), sim_url, allowed_hosts=["llm.example.com"]) as gw:
        page = httpx.get(f"{gw.base_url}/models/glm-4.5-air", headers={"host": "llm.example.com"})
        assert "http://llm.example.com/v1" in page.text
        other = httpx.get(f"{gw.base_url}/models/glm-4.5-air", headers={"host": EVIL})
        assert EVIL not in other.text
