"""The public catalog pages over real HTTP: content in both languages, filters, status, headers."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from runapi.catalog import ModelEntry, builtin_catalog_data
from tests.support.gateway import RunningGateway, run_gateway, sqlite_url

MODEL_IDS = [m["id"] for m in builtin_catalog_data()["models"]]
STATUS_TEXT = {"en": {"operational": "Operational", "degraded": "Degraded", "down": "Down"},
               "zh-Hant": {"operational": "正常運作", "degraded": "效能降低", "down": "服務中斷"}}
UI = {"en": {"pricing": "Pricing", "free": "Free", "not_charged": "Failed generations are not charged"},
      "zh-Hant": {"pricing": "價格", "free": "免費", "not_charged": "生成失敗不收費"}}


def by_id(page: str, element_id: str) -> str:
    """The text inside the element with `id` (no nested tags expected)."""
    match = re.search(rf'id="{re.escape(element_id)}"[^>]*>([^<]*)<', page)
    assert match, f"no element #{element_id}"
    return html.unescape(match.group(1)).strip()


def visible_rows(page: str) -> list[str]:
    return re.findall(r'<tr data-model="([^"]+)" data-provider', page)


def expected_price(amount: Decimal, lang: str) -> str:
    if amount == 0:
        return UI[lang]["free"]
    whole, _, fraction = format(amount, "f").partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


@pytest.fixture()
def web(gateway: RunningGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        yield client


@pytest.mark.parametrize("lang", ["en", "zh-Hant"])
@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_every_model_page_renders_in_both_languages(web: httpx.Client, gateway: RunningGateway, model_id: str,
                                                    lang: str) -> None:
    entry: ModelEntry = gateway.settings.catalog.models[model_id]
    response = web.get(f"/models/{model_id}", params={"lang": lang})
    assert response.status_code == 200
    page = response.text
    assert f'<html lang="{lang}">' in page
    assert f"<h1>{html.escape(entry.name)}</h1>" in page
    assert UI[lang]["pricing"] in page and UI[lang]["not_charged"] in by_id(page, "no-charge-note")
    if entry.unit_pricing is not None:  # media: one price per image / video / second
        assert by_id(page, "price-unit") == expected_price(entry.unit_pricing.price, lang)
        assert by_id(page, "price-unit-label") == UNIT_TEXT[lang][entry.unit] and 'id="price-input"' not in page
    for field in () if entry.unit_pricing else ("input",) if entry.mode == "embedding" else (
            "input", "output", "cache_read", "cache_write"):
        assert by_id(page, f"price-{field.replace('_', '-')}") == expected_price(getattr(entry.pricing, field), lang)
    # The typed inputs: one row per field of the model's JSON Schema.
    assert re.findall(r'data-input="([^"]+)"', page) == list(entry.input_schema()["properties"])
    live = web.get(f"/v1/models/{model_id}").json()["status"]
    assert f'data-status="{live}">{STATUS_TEXT[lang][live]}<' in page
    text, plain = entry.text[lang], html.unescape(page)
    assert text.overview in plain
    assert all(item.q in plain and item.a in plain for item in text.faq)
    assert all(difference in plain for difference in text.differences)
    assert all(use_case in plain for use_case in text.use_cases)
    for sibling in gateway.settings.catalog.family_of(entry):  # the variant switcher
        assert f'href="/models/{sibling.id}" data-variant="{sibling.id}"' in page
    # Quick start and step 1 are filled with this instance's URL and the model ID.
    assert f'base_url=&#34;{gateway.base_url}/v1&#34;' in page and f"model=&#34;{model_id}&#34;" in page
    assert by_id(page, "install-command") == f"runapi skill install {model_id} --base-url {gateway.base_url}"
    for topic in ("faq-rate-limits", "faq-quality", "tier-table"):
        assert f'id="{topic}"' in page


UNIT_TEXT = {"en": {"image": "per image", "video": "per video", "second": "per second of video"},
             "zh-Hant": {"image": "每張圖片", "video": "每支影片", "second": "每秒影片"}}


def test_reference_prices_of_glm_45_air(web: httpx.Client) -> None:
    page = web.get("/models/glm-4.5-air", params={"lang": "zh-Hant"}).text
    assert [by_id(page, f"price-{p}") for p in ("input", "output", "cache-read", "cache-write")] == \
        ["$0.10", "$0.55", "$0.02", "免費"]
    specs = re.sub(r"\s+", " ", page[page.index('id="specs"'):page.index('id="quickstart"')])
    for row in ("<th>模型 ID</th><td><code>glm-4.5-air</code>", "<th>供應商</th><td>Z.ai</td>", "<th>模態</th><td>文字</td>",
                "<th>任務類型</th><td>同步</td>",
                '<th>計費單位</th><td id="billing-unit">1K tokens <small>價格以每 1M tokens 標示；每 1K 輸入 tokens 為 $0.0001，'
                '每 1K 輸出 tokens 為 $0.00055。',
                "<th>端點</th><td><code>/v1/chat/completions</code> (OpenAI compatible)</td>",
                "<th>商業授權</th><td>MIT (commercial use allowed)</td>", "<th>狀態</th>"):
        assert row in specs


def test_models_index_lists_everything_and_filters_server_side(web: httpx.Client, gateway: RunningGateway) -> None:
    catalog = gateway.settings.catalog
    page = web.get("/models", params={"lang": "en"}).text
    assert sorted(visible_rows(page)) == sorted(MODEL_IDS)
    assert by_id(page, "model-count") == f"{len(MODEL_IDS)} of {len(MODEL_IDS)} models"
    glm = web.get("/models", params={"provider": "zai"}).text
    assert sorted(visible_rows(glm)) == sorted(m.id for m in catalog.models.values() if m.provider == "zai")
    assert "<td>Z.ai</td>" in glm and 'value="zai" selected' in glm
    haiku = web.get("/models", params={"q": "HAIKU"}).text
    assert visible_rows(haiku) == ["claude-haiku-4-5"]
    assert by_id(haiku, "no-match") != "" and 'id="no-match" hidden' in haiku
    none = web.get("/models", params={"q": "no such model", "lang": "zh-Hant"}).text
    assert visible_rows(none) == [] and 'id="no-match">' in none and "沒有符合篩選條件的模型" in none
    for mode in ("text", "embedding", "image", "video"):
        rows = visible_rows(web.get("/models", params={"mode": mode}).text)
        assert rows and sorted(rows) == sorted(m.id for m in catalog.models.values() if m.mode == mode)
    row = page[page.index('data-model="glm-4.5-air"'):]
    row = row[:row.index("</tr>")]
    assert ">$0.10<" in row and ">$0.55<" in row and ">$0.02<" in row and ">128K<" in row and "glm-4.5" in row


def test_language_comes_from_query_then_cookie_then_accept_language(gateway: RunningGateway) -> None:
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        assert '<html lang="zh-Hant">' in client.get("/models", headers={"accept-language": "zh-TW,zh;q=0.9"}).text
        assert '<html lang="en">' in client.get("/models", headers={"accept-language": "fr, de"}).text
        switched = client.get("/models/glm-4.6", params={"lang": "zh-Hant"}, headers={"accept-language": "en"})
        assert '<html lang="zh-Hant">' in switched.text and switched.cookies["runapi_lang"] == "zh-Hant"
        # The cookie now wins over Accept-Language, on every page.
        assert '<html lang="zh-Hant">' in client.get("/models", headers={"accept-language": "en"}).text
        # The switch links keep the page and its query.
        page = client.get("/models", params={"provider": "zai", "q": "glm"}).text
        assert 'href="/models?provider=zai&amp;q=glm&amp;lang=en"' in page
        assert 'href="/models?provider=zai&amp;q=glm&amp;lang=zh-Hant"' in page


def test_pages_send_security_headers_and_load_nothing_external(web: httpx.Client) -> None:
    for path in ("/models", "/models/glm-4.5-air", "/dashboard/login", "/admin/dashboard/login"):
        response = web.get(path)
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "http" not in csp and "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
        for url in re.findall(r'(?:src|href)="([^"]+)"', response.text):
            assert not url.startswith(("http:", "https:", "//")) or url.startswith(str(web.base_url)), url
        assert "<script>" not in response.text and " style=" not in response.text and " onclick=" not in response.text
    for asset in ("/assets/site.css", "/assets/site.js", "/assets/favicon.svg"):
        response = web.get(asset)
        assert response.status_code == 200 and response.headers["x-content-type-options"] == "nosniff"
        text = response.text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a namespace name, not a fetch
        assert "http://" not in text and "https://" not in text and "@import" not in text


def test_unknown_model_page_is_a_404_page(web: httpx.Client) -> None:
    response = web.get("/models/no-such-model", params={"lang": "zh-Hant"})
    assert response.status_code == 404 and response.headers["content-type"].startswith("text/html")
    assert "此目錄中沒有模型 no-such-model" in response.text


def test_alias_pages_show_the_canonical_model(web: httpx.Client, gateway: RunningGateway) -> None:
    entry = next(m for m in gateway.settings.catalog.models.values() if m.aliases)
    page = web.get(f"/models/{entry.aliases[0]}").text
    assert by_id(page, "model-id") == entry.id


def test_status_follows_real_traffic(sim_url: str, tmp_path: Path) -> None:
    # A gateway of its own: failing a model on purpose must not change what other tests see.
    with run_gateway(sqlite_url(tmp_path), sim_url, circuit_failures=0) as gw, \
            httpx.Client(base_url=gw.base_url, timeout=30) as client:
        _, key = gw.create_account("1")
        before = client.get("/models/deepseek-chat", params={"lang": "en"}).text
        assert 'data-status="operational">Operational<' in before and "No calls in the last 5 minutes" in before
        for _ in range(3):
            response = client.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, json={
                "model": "deepseek-chat", "messages": [{"role": "user", "content": "hi"}], "x_sim": {"fault": "500"}})
            assert response.status_code >= 500
        assert client.get("/v1/models/deepseek-chat").json()["status"] == "down"
        for lang in ("en", "zh-Hant"):
            page = client.get("/models/deepseek-chat", params={"lang": lang}).text
            assert page.count(f'data-status="down">{STATUS_TEXT[lang]["down"]}<') == 2  # header and specs table
        index = client.get("/models").text
        row = index[index.index('data-model="deepseek-chat"'):]
        assert 'data-status="down"' in row[:row.index("</tr>")]
        other = client.get("/models/glm-4.5-air").text
        assert 'data-status="operational"' in other
