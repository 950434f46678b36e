"""The customer and operator dashboards against a real gateway: in Chromium, and over plain HTTP
for what a browser would never send (forms without their CSRF token, forged cookies)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from runapi.web.rendering import format_usd
from tests.support.browser import BrowserThread, artifact
from tests.support.gateway import ADMIN_TOKEN, RunningGateway


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has no CSRF field"
    return match.group(1)


def sign_in(client: httpx.Client, key: str) -> str:
    """Sign in through the form; returns the signed-in dashboard's CSRF token."""
    token = csrf_of(client.get("/dashboard/login").text)
    response = client.post("/dashboard/login", data={"csrf_token": token, "api_key": key})
    assert response.status_code == 303 and response.headers["location"] == "/dashboard"
    return csrf_of(client.get("/dashboard").text)


def key_ids(gateway: RunningGateway, account: str) -> dict[str, bool]:
    """{key ID: revoked} from the admin API."""
    keys = gateway.admin.get(f"/admin/accounts/{account}/keys").raise_for_status().json()["data"]
    return {k["id"]: k["revoked"] for k in keys}


@pytest.fixture()
def web(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        yield client


def _customer_journey(browser: Any, gateway: RunningGateway, key: str, generation: str, cost: Decimal,
                      balance: Decimal) -> None:
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 1000})
    try:
        page = context.new_page()
        page.goto(f"{gateway.base_url}/dashboard")
        page.wait_for_url("**/dashboard/login")
        page.fill("#api-key", key)
        page.click("#sign-in")
        page.wait_for_url("**/dashboard")
        assert page.locator("#balance").inner_text() == format_usd(balance)
        row = page.locator(f"tr[data-generation='{generation}']")
        assert row.locator("td.cost").inner_text() == format_usd(cost)
        assert "glm-4.5-air" in row.inner_text() and "succeeded" in row.inner_text()
        assert page.locator("svg.chart").count() == 4
        assert page.locator("svg.chart rect.bar title", has_text="glm-4.5-air").count() >= 2  # spend and tokens
        assert page.locator("#spend-30d").inner_text() == format_usd(cost)
        page.screenshot(path=str(artifact("dashboard-en.png")), full_page=True)

        # Create a key: its secret is shown once, and it works.
        page.fill("#new-key-name", "ci laptop")
        page.click("#create-key")
        secret = page.locator("#new-key-secret").inner_text().strip()
        assert secret.startswith("rk-")
        usage = httpx.get(f"{gateway.base_url}/v1/usage", headers={"authorization": f"Bearer {secret}"})
        assert usage.status_code == 200
        new_row = page.locator("tr[data-key]", has_text="ci laptop")
        new_id = new_row.get_attribute("data-key")

        # Revoke it: the page says so and the gateway refuses it at once.
        page.click(f"button[data-revoke='{new_id}']")
        page.wait_for_url("**/dashboard")
        assert page.locator(f"tr[data-key='{new_id}'] td.key-status").inner_text() == "Revoked"
        assert page.locator("#new-key-secret").count() == 0  # never shown again
        refused = httpx.get(f"{gateway.base_url}/v1/usage", headers={"authorization": f"Bearer {secret}"})
        assert refused.status_code == 401

        page.click("#sign-out")
        page.wait_for_url("**/dashboard/login")
        page.goto(f"{gateway.base_url}/dashboard")
        page.wait_for_url("**/dashboard/login")
    finally:
        context.close()


def test_customer_dashboard_in_a_browser(browser: BrowserThread, gateway: RunningGateway) -> None:
    account, key = gateway.create_account("5")
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="glm-4.5-air", messages=[{"role": "user", "content": "hello dashboard"}])
    completion = raw.parse()
    cost = Decimal(str(raw.http_response.json()["usage"]["cost"]))
    balance = gateway.balance(account)
    assert balance == Decimal(5) - cost
    browser.run(lambda b: _customer_journey(b, gateway, key, completion.id, cost, balance))
    assert key_ids(gateway, account)  # the session key itself is untouched
    assert sum(1 for revoked in key_ids(gateway, account).values() if revoked) == 1


def test_dashboard_zh_hant_screenshot(browser: BrowserThread, gateway: RunningGateway) -> None:
    _, key = gateway.create_account("1")

    def scenario(b: Any) -> str:
        context = b.new_context(locale="zh-TW", viewport={"width": 1280, "height": 1000})
        try:
            page = context.new_page()
            page.goto(f"{gateway.base_url}/dashboard/login")
            page.fill("#api-key", key)
            page.click("#sign-in")
            page.wait_for_url("**/dashboard")
            page.screenshot(path=str(artifact("dashboard-zh-Hant.png")), full_page=True)
            return str(page.locator("h1").inner_text())
        finally:
            context.close()

    assert browser.run(scenario) == "控制台"


def test_posts_without_the_csrf_token_are_refused(web: httpx.Client, gateway: RunningGateway) -> None:
    account, key = gateway.create_account("1")
    # Even signing in needs the token of the form the site served.
    refused = web.post("/dashboard/login", data={"api_key": key})
    assert refused.status_code == 403 and "did not come from this site" in refused.text
    token = sign_in(web, key)
    before = key_ids(gateway, account)
    (session_key,) = before
    with httpx.Client(base_url=gateway.base_url, timeout=10) as other:
        foreign = sign_in(other, gateway.create_account("1")[1])  # a valid token, of another session
    for data in ({"name": "x"}, {"name": "x", "csrf_token": ""}, {"name": "x", "csrf_token": token + "x"},
                 {"name": "x", "csrf_token": foreign}):
        response = web.post("/dashboard/keys", data=data)
        assert response.status_code == 403, data
        assert response.headers["content-type"].startswith("text/html")
    assert web.post(f"/dashboard/keys/{session_key}/revoke", data={}).status_code == 403
    assert web.post("/dashboard/logout", data={}).status_code == 403
    assert key_ids(gateway, account) == before  # nothing created, nothing revoked
    assert web.get("/dashboard").status_code == 200  # still signed in
    created = web.post("/dashboard/keys", data={"name": "ok", "csrf_token": token})
    assert created.status_code == 201 and len(key_ids(gateway, account)) == 2


def test_session_cookie_is_signed_http_only_and_strict(web: httpx.Client, gateway: RunningGateway) -> None:
    _, key = gateway.create_account("1")
    token = csrf_of(web.get("/dashboard/login").text)
    response = web.post("/dashboard/login", data={"csrf_token": token, "api_key": key})
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    assert key not in cookie  # the cookie names the key; it never holds the secret
    assert response.headers["cache-control"] == "no-store"
    value = web.cookies["runapi_session"]
    payload, _, signature = value.partition(".")
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + signature
    with httpx.Client(base_url=gateway.base_url, cookies={"runapi_session": forged}, timeout=10) as forger:
        assert forger.get("/dashboard").headers["location"] == "/dashboard/login"


def test_wrong_key_is_refused_and_revoking_the_session_key_ends_the_session(web: httpx.Client,
                                                                            gateway: RunningGateway) -> None:
    token = csrf_of(web.get("/dashboard/login").text)
    wrong = web.post("/dashboard/login", data={"csrf_token": token, "api_key": "rk-not-a-key"})
    assert wrong.status_code == 401 and 'id="login-error"' in wrong.text
    account, key = gateway.create_account("1")
    token = sign_in(web, key)
    (session_key,) = key_ids(gateway, account)
    assert web.post(f"/dashboard/keys/{session_key}/revoke", data={"csrf_token": token}).status_code == 303
    assert web.get("/dashboard").headers["location"] == "/dashboard/login"


def _operator_journey(browser: Any, gateway: RunningGateway, account: str) -> dict[str, str]:
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 1000})
    try:
        page = context.new_page()
        page.goto(f"{gateway.base_url}/admin/dashboard")
        page.wait_for_url("**/admin/dashboard/login")
        page.fill("#admin-token", ADMIN_TOKEN)
        page.click("#sign-in")
        page.wait_for_url("**/admin/dashboard")
        row = page.locator(f"tr[data-account='{account}']")
        before = row.locator("td.balance").inner_text()
        row.locator("input[name='amount_usd']").fill("50")
        row.locator("input[name='note']").fill("dashboard top-up")
        row.locator("button[type='submit']").click()
        page.wait_for_url(f"**/admin/dashboard?page=1&topped_up={account}*")
        assert page.locator("#topup-done").is_visible()
        result = {"before": before, "after": row.locator("td.balance").inner_text(),
                  "tier": row.locator("td").nth(2).inner_text(),
                  "revenue": page.locator("tr[data-revenue='glm-4.5-air'] td.revenue").inner_text(),
                  "health": page.locator("tr[data-health='glm-4.5-air'] .status").get_attribute("data-status") or ""}
        page.screenshot(path=str(artifact("admin-dashboard-en.png")), full_page=True)
        page.click("#sign-out")
        page.wait_for_url("**/admin/dashboard/login")
        return result
    finally:
        context.close()


def test_operator_dashboard_tops_up_and_shows_revenue_and_health(browser: BrowserThread,
                                                                gateway: RunningGateway) -> None:
    account, key = gateway.create_account("5")  # $5 of top-ups: tier-1
    openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0).chat.completions.create(
        model="glm-4.5-air", messages=[{"role": "user", "content": "revenue"}])
    balance = gateway.balance(account)
    seen = browser.run(lambda b: _operator_journey(b, gateway, account))
    assert seen["before"] == format_usd(balance)
    assert seen["after"] == format_usd(balance + 50) == format_usd(gateway.balance(account))
    assert seen["tier"] == "tier-2"  # $55 of top-ups earns tier-2, as through the admin API
    assert Decimal(seen["revenue"].lstrip("$")) > 0
    assert seen["health"] == httpx.get(f"{gateway.base_url}/v1/models/glm-4.5-air").json()["status"]
    entries = gateway.ledger(account)
    assert entries[-1]["kind"] == "topup" and entries[-1]["note"] == "dashboard top-up"


def test_operator_dashboard_refuses_bad_tokens_forms_and_amounts(web: httpx.Client, gateway: RunningGateway) -> None:
    account, _ = gateway.create_account("1")
    token = csrf_of(web.get("/admin/dashboard/login").text)
    assert web.post("/admin/dashboard/login", data={"csrf_token": token, "token": "wrong"}).status_code == 401
    assert web.post("/admin/dashboard/login", data={"token": ADMIN_TOKEN}).status_code == 403
    assert web.post("/admin/dashboard/login", data={"csrf_token": token, "token": ADMIN_TOKEN}).status_code == 303
    token = csrf_of(web.get("/admin/dashboard").text)
    assert web.post("/admin/dashboard/topup", data={"account_id": account, "amount_usd": "5"}).status_code == 403
    for amount in ("abc", "-5", "0", "0.0000000001", "Infinity", "NaN", "1e30", ""):
        response = web.post("/admin/dashboard/topup", data={"csrf_token": token, "account_id": account,
                                                            "amount_usd": amount})
        assert response.status_code == 400, amount
    assert gateway.balance(account) == Decimal(1)
    assert web.post("/admin/dashboard/topup", data={"csrf_token": token, "account_id": account,
                                                    "amount_usd": "$1.25"}).status_code == 303
    assert gateway.balance(account) == Decimal("2.25")
    # The customer session and the operator session are separate cookies: one does not open the other.
    assert web.get("/dashboard").headers["location"] == "/dashboard/login"


def test_dashboard_lists_the_accounts_tasks(web: httpx.Client, gateway: RunningGateway) -> None:
    if getattr(gateway.app.state, "tasks", None) is None:
        pytest.skip("this gateway runs no asynchronous tasks")
    _, key = gateway.create_account("1")
    auth = {"authorization": f"Bearer {key}"}
    submitted = web.post("/v1/tasks", headers=auth, json={
        "model": "glm-4.5-air", "input": {"messages": [{"role": "user", "content": "a task"}]}})
    assert submitted.status_code == 202, submitted.text
    task_id = submitted.json()["id"]
    for _ in range(200):
        task = web.get(f"/v1/tasks/{task_id}", headers=auth).json()
        if task["status"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.05)
    assert task["status"] == "succeeded"
    sign_in(web, key)
    page = web.get("/dashboard", params={"lang": "en"}).text
    row = page[page.index(f'data-task="{task_id}"'):]
    row = row[:row.index("</tr>")]
    assert '<td class="task-status">succeeded</td>' in row and "glm-4.5-air" in row
    assert format_usd(Decimal(str(task["cost"]))) in row


def test_operator_dashboard_pages_its_accounts(web: httpx.Client, gateway: RunningGateway) -> None:
    """Newest first, 50 a page, each page's balances and spend read for its own accounts; a top-up from page 2
    comes back to page 2 with its notice."""
    created = [gateway.create_account("1")[0] for _ in range(51)]
    token = csrf_of(web.get("/admin/dashboard/login").text)
    assert web.post("/admin/dashboard/login", data={"csrf_token": token, "token": ADMIN_TOKEN}).status_code == 303
    first = web.get("/admin/dashboard").text
    rows = re.findall(r'<tr data-account="([^"]+)">', first)
    assert rows[:50] == created[::-1][:50] and len(rows) == 50
    pages = re.search(r"Page (\d+) of (\d+)", first)
    assert pages is not None and pages.group(1) == "1" and int(pages.group(2)) >= 2
    second = web.get("/admin/dashboard?page=2").text
    assert created[0] in re.findall(r'<tr data-account="([^"]+)">', second)
    assert 'rel="prev"' in second
    answer = web.post("/admin/dashboard/topup", data={"csrf_token": csrf_of(second), "account_id": created[0],
                                                      "amount_usd": "2", "page": "2"})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/admin/dashboard?page=2&")
    notice = web.get(answer.headers["location"]).text
    assert 'id="topup-done"' in notice and format_usd(Decimal(3)) in notice
    assert web.get("/admin/dashboard?page=0").status_code == 400
