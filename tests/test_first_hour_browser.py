"""A new user's first hour, in a real Chromium, in English and Traditional Chinese: the pricing page, the
API reference at /docs, a model page's FAQ links, and a quality report filed from the dashboard that the
operator then sees in theirs."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from runapi.http.openapi import build_openapi
from runapi.web.rendering import format_usd
from tests.support.browser import BrowserThread, artifact
from tests.support.gateway import ADMIN_TOKEN, RunningGateway, run_gateway, sqlite_url

SITE = {"issue_tracker_url": "https://issues.example.com/runapi", "support_email": "support@example.com"}
TIERS = {"tier-1": {"requests_per_minute": 777}}  # an operator override: the pricing page must show it
TEXT = {
    "en": {"pricing": "Prices and usage tiers", "docs": "API reference", "report": "Report",
           "reported": "Reported: Incorrect or made up", "reports": "Quality reports by model"},
    "zh-Hant": {"pricing": "價格與使用等級", "docs": "API 參考文件", "report": "回報",
                "reported": "已回報：內容錯誤或捏造", "reports": "各模型的品質回報"},
}
LANGS = list(TEXT)


@pytest.fixture(scope="module")
def site_gateway(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    directory = tmp_path_factory.mktemp("first-hour")
    with run_gateway(sqlite_url(directory), sim_url, tiers=TIERS, site=SITE, circuit_failures=0) as running:
        yield running


def _context(browser: Any, lang: str) -> Any:
    return browser.new_context(locale="zh-TW" if lang == "zh-Hant" else "en-US",
                               viewport={"width": 1280, "height": 900})


def _watch_errors(page: Any) -> list[str]:
    """Console errors and uncaught exceptions (a CSP violation is a console error)."""
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


@pytest.mark.parametrize("lang", LANGS)
def test_pricing_page_shows_what_the_gateway_enforces(browser: BrowserThread, site_gateway: RunningGateway,
                                                      lang: str) -> None:
    gw = site_gateway.gateway
    def expected_row(e: Any) -> list[str | None]:  # media: one price per unit; embeddings: input only
        if e.unit_pricing is not None:
            return [format_usd(e.unit_pricing.price)]
        row = [format_usd(p) if p else None for p in (e.pricing.input, e.pricing.output, e.pricing.cache_read,
                                                     e.pricing.cache_write)]
        return [row[0], "—", "—", "—"] if e.mode == "embedding" else row

    expected_prices = {e.id: expected_row(e) for e in gw.catalog.models.values()}
    expected_tiers = {name: f"{t.requests_per_minute:,}" for name, t in gw.limits.tiers.tiers.items()}

    def scenario(b: Any) -> tuple[dict[str, list[str]], dict[str, str], str, list[str]]:
        context = _context(b, lang)
        try:
            page = context.new_page()
            errors = _watch_errors(page)
            page.goto(f"{site_gateway.base_url}/pricing?lang={lang}")
            prices = {row.get_attribute("data-model"): [cell.inner_text().split("\n")[0]
                                                        for cell in row.locator("td[data-price]").all()]
                      for row in page.locator("#price-table tbody tr").all()}
            tiers = {row.get_attribute("data-tier"): row.locator("td").nth(1).inner_text()
                     for row in page.locator("#tier-table tbody tr").all()}
            page.screenshot(path=str(artifact(f"pricing-{lang}.png")), full_page=True)
            return prices, tiers, page.locator("h1").inner_text(), errors
        finally:
            context.close()

    prices, tiers, heading, errors = browser.run(scenario)
    assert heading == TEXT[lang]["pricing"]
    free = "Free" if lang == "en" else "免費"
    assert prices == {model: [shown or free for shown in row] for model, row in expected_prices.items()}
    assert tiers == expected_tiers and tiers["tier-1"] == "777"
    assert errors == []


@pytest.mark.parametrize("lang", LANGS)
def test_docs_page_renders_every_operation_offline(browser: BrowserThread, site_gateway: RunningGateway,
                                                   lang: str) -> None:
    operations = sum(len(item) for item in build_openapi()["paths"].values())

    def scenario(b: Any) -> tuple[str, int, list[str], list[str]]:
        context = _context(b, lang)
        requested: list[str] = []
        try:
            page = context.new_page()
            errors = _watch_errors(page)
            page.on("request", lambda request: requested.append(request.url))
            page.goto(f"{site_gateway.base_url}/docs?lang={lang}")
            page.wait_for_selector("#swagger-ui .opblock", timeout=30_000)
            page.wait_for_function(f"document.querySelectorAll('#swagger-ui .opblock').length >= {operations}")
            count = page.locator("#swagger-ui .opblock").count()
            page.screenshot(path=str(artifact(f"docs-{lang}.png")))
            return page.locator("h1").first.inner_text(), count, errors, requested
        finally:
            context.close()

    heading, count, errors, requested = browser.run(scenario)
    assert heading == TEXT[lang]["docs"]
    assert count == operations
    assert errors == []
    assert all(url.startswith(site_gateway.base_url) for url in requested), requested  # nothing from a CDN


@pytest.mark.parametrize("lang", LANGS)
def test_model_page_faq_links_lead_to_pricing_and_the_operators_contacts(
        browser: BrowserThread, site_gateway: RunningGateway, lang: str) -> None:
    def scenario(b: Any) -> dict[str, Any]:
        context = _context(b, lang)
        try:
            page = context.new_page()
            page.goto(f"{site_gateway.base_url}/models/glm-4.5-air?lang={lang}")
            page.click("#faq-quality summary")
            found = {"tracker": page.locator("#faq-issue-tracker").get_attribute("href"),
                     "email": page.locator("#faq-support-email").get_attribute("href"),
                     "dashboard": page.locator("#faq-dashboard-link").get_attribute("href"),
                     "unit": page.locator("#billing-unit").inner_text()}
            page.screenshot(path=str(artifact(f"model-faq-{lang}.png")), full_page=True)
            page.click("#faq-rate-limits summary")
            page.click("#faq-pricing-link")
            page.wait_for_url("**/pricing#tiers")
            found["landed"] = page.locator("#tier-table").is_visible()
            found["heading"] = page.locator("h1").inner_text()
            return found
        finally:
            context.close()

    found = browser.run(scenario)
    assert found["tracker"] == SITE["issue_tracker_url"]
    assert found["email"] == f"mailto:{SITE['support_email']}"
    assert found["dashboard"] == "/dashboard#generations"
    assert "$0.0001" in found["unit"] and "$0.00055" in found["unit"]  # 1K tokens at $0.10 / $0.55 per 1M
    assert found["landed"] and found["heading"] == TEXT[lang]["pricing"]


@pytest.mark.parametrize("lang", LANGS)
def test_a_quality_report_filed_on_the_dashboard_reaches_the_operator(
        browser: BrowserThread, site_gateway: RunningGateway, lang: str) -> None:
    _, key = site_gateway.create_account("2")
    reply = httpx.post(f"{site_gateway.base_url}/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                       json={"model": "glm-4.5-air", "messages": [{"role": "user", "content": "Hello"}]}, timeout=30)
    generation_id = reply.raise_for_status().json()["id"]
    cost = Decimal(str(reply.json()["usage"]["cost"]))
    comment = f"The answer about {lang} was made up."

    def scenario(b: Any) -> dict[str, Any]:
        context = _context(b, lang)
        try:
            page = context.new_page()
            page.goto(f"{site_gateway.base_url}/dashboard/login?lang={lang}")
            page.fill("#api-key", key)
            page.click("#sign-in")
            page.wait_for_url("**/dashboard")
            report = page.locator(f"details[data-report='{generation_id}']")
            before = report.locator("summary").inner_text()
            report.locator("summary").click()
            report.locator("select[name=category]").select_option("incorrect")
            report.locator("textarea[name=comment]").fill(comment)
            report.locator("button[type=submit]").click()
            page.wait_for_url(f"**/dashboard?reported={generation_id}#generations")
            after = {"before": before, "notice": page.locator("#report-filed").is_visible(),
                     "summary": page.locator(f"details[data-report='{generation_id}'] summary").inner_text()}
            page.screenshot(path=str(artifact(f"dashboard-report-{lang}.png")), full_page=True)

            page.goto(f"{site_gateway.base_url}/admin/dashboard/login?lang={lang}")
            page.fill("#admin-token", ADMIN_TOKEN)
            page.click("#sign-in")
            page.wait_for_url("**/admin/dashboard")
            row = page.locator(f"#quality-reports tr[data-report='{generation_id}']")
            section = page.locator("#quality-reports")
            after.update(heading=section.locator("h2").inner_text(),
                         model=section.locator("h3[data-report-model='glm-4.5-air']").count(),
                         category=row.locator("td.category").get_attribute("data-category"),
                         comment=row.locator("td.comment").inner_text(), cells=row.inner_text())
            section.screenshot(path=str(artifact(f"admin-quality-reports-{lang}.png")))
            return after
        finally:
            context.close()

    seen = browser.run(scenario)
    assert seen["before"] == TEXT[lang]["report"]
    assert seen["notice"] and seen["summary"] == TEXT[lang]["reported"]
    assert seen["heading"].startswith(TEXT[lang]["reports"]) and seen["model"] == 1
    assert seen["category"] == "incorrect" and seen["comment"] == comment
    assert format_usd(cost) in seen["cells"] and "zai: glm-4.5-air" in seen["cells"]  # the generation's facts
    listed = site_gateway.admin.get("/admin/feedback", params={"model": "glm-4.5-air"}).raise_for_status().json()
    assert any(r["generation_id"] == generation_id and r["comment"] == comment for r in listed["data"])

