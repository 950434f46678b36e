"""The catalog in a real headless Chromium: language switch, copy buttons, live filters, and the
copied quick-start snippets run against the gateway."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import BrowserThread, artifact
from tests.support.gateway import RunningGateway
from tests.test_web_pages import STATUS_TEXT

SNIPPETS = ["snippet-curl", "snippet-python", "snippet-javascript", "install-command"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return {**env, "NO_PROXY": "127.0.0.1,localhost", **extra}


def test_model_page_in_both_languages_and_the_switch_keeps_the_page(browser: BrowserThread,
                                                                     gateway: RunningGateway) -> None:
    browser.run(lambda b: _language_switch(b, gateway.base_url))


def _language_switch(browser: Any, base_url: str) -> None:
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{base_url}/models/glm-4.5-air")
        assert page.locator("html").get_attribute("lang") == "en"
        assert page.locator("#pricing h2").inner_text() == "Pricing"
        assert [page.locator(f"#price-{p}").inner_text() for p in ("input", "output", "cache-read", "cache-write")] \
            == ["$0.10", "$0.55", "$0.02", "Free"]
        live = httpx.get(f"{base_url}/v1/models/glm-4.5-air").json()["status"]  # other tests' traffic counts
        assert page.locator(".headstatus .status").get_attribute("data-status") == live
        assert page.locator(".headstatus .status").inner_text() == STATUS_TEXT["en"][live]
        page.screenshot(path=str(artifact("model-glm-4.5-air-en.png")), full_page=True)

        page.click(".langswitch a[data-lang='zh-Hant']")
        page.wait_for_url("**/models/glm-4.5-air?lang=zh-Hant")
        assert page.locator("html").get_attribute("lang") == "zh-Hant"
        assert page.locator("#pricing h2").inner_text() == "價格"
        assert page.locator("#price-cache-write").inner_text() == "免費"
        assert page.locator(".headstatus .status").inner_text() == STATUS_TEXT["zh-Hant"][live]
        assert "混合專家" in page.locator("#overview p").inner_text()  # the catalog's zh-Hant text
        page.screenshot(path=str(artifact("model-glm-4.5-air-zh-Hant.png")), full_page=True)

        # The choice sticks (cookie) while browsing: the variant switcher, then the catalog.
        page.click(".variants a[data-variant='glm-4.5']")
        page.wait_for_url("**/models/glm-4.5")
        assert page.locator("html").get_attribute("lang") == "zh-Hant"
        assert page.locator("#price-input").inner_text() == "$0.60"
        assert page.locator(".variants a[aria-current='page']").get_attribute("data-variant") == "glm-4.5"
        page.click(".langswitch a[data-lang='en']")
        page.wait_for_url("**/models/glm-4.5?lang=en")
        assert page.locator("#pricing h2").inner_text() == "Pricing"
    finally:
        context.close()


def test_accept_language_picks_traditional_chinese(browser: BrowserThread, gateway: RunningGateway) -> None:
    def scenario(b: Any) -> tuple[str, str]:
        context = b.new_context(locale="zh-TW")
        try:
            page = context.new_page()
            page.goto(f"{gateway.base_url}/models")
            return page.locator("html").get_attribute("lang"), page.locator("h1").inner_text()
        finally:
            context.close()

    assert browser.run(scenario) == ("zh-Hant", "模型")


def _copy_snippets(browser: Any, base_url: str) -> dict[str, str]:
    """Click each copy button and read what landed on the clipboard."""
    context = browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    copied: dict[str, str] = {}
    try:
        page = context.new_page()
        page.goto(f"{base_url}/models/glm-4.5-air?lang=en")
        for snippet in SNIPPETS:
            page.evaluate("navigator.clipboard.writeText('')")
            button = page.locator(f"button[data-copy='{snippet}']")
            button.click()
            page.wait_for_function("b => b.textContent === 'Copied'", arg=button.element_handle())
            copied[snippet] = page.evaluate("navigator.clipboard.readText()")
            assert copied[snippet] == page.locator(f"#{snippet}").text_content()
    finally:
        context.close()
    return copied


def test_copy_buttons_copy_snippets_that_work(browser: BrowserThread, gateway: RunningGateway,
                                              tmp_path: Path) -> None:
    account, key = gateway.create_account("2")
    copied = browser.run(lambda b: _copy_snippets(b, gateway.base_url))

    # The Python snippet, exactly as copied, run with a real key.
    script = tmp_path / "quickstart.py"
    script.write_text(copied["snippet-python"], "utf-8")
    python = subprocess.run([sys.executable, str(script)], env=_env(RUNAPI_API_KEY=key), capture_output=True,
                            text=True, timeout=60)
    assert python.returncode == 0, python.stderr
    reply, cost_line = python.stdout.strip().splitlines()
    assert reply and cost_line.startswith("cost (USD): ")
    python_cost = Decimal(cost_line.removeprefix("cost (USD): "))
    assert python_cost > 0

    spent = python_cost
    if shutil.which("curl"):
        curl = subprocess.run(["bash", "-c", copied["snippet-curl"]], env=_env(RUNAPI_API_KEY=key),
                              capture_output=True, text=True, timeout=60)
        assert curl.returncode == 0, curl.stderr
        body = json.loads(curl.stdout, parse_float=Decimal)
        assert body["model"] == "glm-4.5-air" and body["choices"][0]["message"]["content"]
        spent += body["usage"]["cost"]
    assert gateway.balance(account) == Decimal(2) - spent

    if shutil.which("node"):  # the openai npm package is not installed here: check that it parses
        module = tmp_path / "quickstart.mjs"
        module.write_text(copied["snippet-javascript"], "utf-8")
        check = subprocess.run(["node", "--check", str(module)], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        javascript = copied["snippet-javascript"]
        assert 'model: "glm-4.5-air"' in javascript and f'baseURL: "{gateway.base_url}/v1"' in javascript

    # Step 1's command, as copied, installs the model skill into a project.
    command = copied["install-command"].split()
    assert command[:4] == ["runapi", "skill", "install", "glm-4.5-air"]
    runapi = Path(sys.executable).with_name("runapi")
    installed = subprocess.run([str(runapi), *command[1:]], cwd=tmp_path, env=_env(), capture_output=True,
                               text=True, timeout=60)
    assert installed.returncode == 0, installed.stderr
    assert (tmp_path / ".claude" / "skills" / "runapi-glm-4-5" / "SKILL.md").read_text("utf-8").startswith("---\n")


def test_catalog_filters_live_in_the_page(browser: BrowserThread, gateway: RunningGateway) -> None:
    browser.run(lambda b: _live_filters(b, gateway))


def _live_filters(browser: Any, gateway: RunningGateway) -> None:
    context = browser.new_context(locale="en-US")
    try:
        page = context.new_page()
        page.goto(f"{gateway.base_url}/models")
        rows = page.locator("#models-table tbody tr")
        total = rows.count()
        assert total == len(gateway.settings.catalog.models)
        page.fill("#model-search", "haiku")
        assert page.locator("#models-table tbody tr:visible").count() == 1
        assert page.locator("#models-table tbody tr:visible").get_attribute("data-model") == "claude-haiku-4-5"
        assert page.locator("#model-count").inner_text() == f"1 of {total} models"
        assert "q=haiku" in page.url
        assert "q=haiku" in (page.locator(".langswitch a[data-lang='zh-Hant']").get_attribute("href") or "")
        page.fill("#model-search", "")
        page.select_option("#provider-filter", "zai")
        visible = {r.get_attribute("data-model") for r in page.locator("#models-table tbody tr:visible").all()}
        assert visible == {m.id for m in gateway.settings.catalog.models.values() if m.provider == "zai"}
        page.fill("#model-search", "no such thing")
        assert page.locator("#no-match").is_visible()
        page.screenshot(path=str(artifact("models-filtered.png")))
    finally:
        context.close()


@pytest.mark.parametrize("lang", ["en", "zh-Hant"])
def test_catalog_index_screenshot(browser: BrowserThread, gateway: RunningGateway, lang: str) -> None:
    def scenario(b: Any) -> int:
        context = b.new_context(viewport={"width": 1280, "height": 900})
        try:
            page = context.new_page()
            page.goto(f"{gateway.base_url}/models?lang={lang}")
            page.screenshot(path=str(artifact(f"models-{lang}.png")), full_page=True)
            return int(page.locator("#models-table tbody tr:visible").count())
        finally:
            context.close()

    assert browser.run(scenario) == len(gateway.settings.catalog.models)
