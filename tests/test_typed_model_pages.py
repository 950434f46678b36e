"""An image model's and a video model's page in a real headless Chromium, in English and Traditional
Chinese: the unit, the price in it, the typed inputs and a quick start that fits the mode."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.browser import BrowserThread, artifact
from tests.support.gateway import RunningGateway

EXPECTED = {  # model → (unit text per language, price, the call its Python quick start makes)
    "cogview-4": ({"en": "per image", "zh-Hant": "每張圖片"}, "$0.01", "client.images.generate("),
    "cogvideox-3": ({"en": "per video", "zh-Hant": "每支影片"}, "$0.20", "client.videos.create_and_poll("),
}
HEADINGS = {"en": ("Pricing", "Inputs", "Quick start"), "zh-Hant": ("價格", "輸入參數", "快速開始")}


@pytest.mark.parametrize("lang", ["en", "zh-Hant"])
@pytest.mark.parametrize("model_id", sorted(EXPECTED))
def test_media_model_page_shows_unit_price_inputs_and_quick_start(browser: BrowserThread, gateway: RunningGateway,
                                                                  model_id: str, lang: str) -> None:
    entry = gateway.settings.catalog.models[model_id]
    fields = list(entry.input_schema()["properties"])
    browser.run(lambda b: _check_page(b, gateway.base_url, model_id, lang, fields))


def _check_page(browser: Any, base_url: str, model_id: str, lang: str, fields: list[str]) -> None:
    unit, price, call = EXPECTED[model_id]
    context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{base_url}/models/{model_id}?lang={lang}")
        assert page.locator("html").get_attribute("lang") == lang
        pricing, inputs, quick = HEADINGS[lang]
        assert page.locator("#pricing h2").inner_text() == pricing
        assert page.locator("#price-unit").inner_text() == price
        assert page.locator("#price-unit-label").inner_text() == unit[lang]
        assert page.locator("#price-input").count() == 0  # no token prices on a media model
        assert unit[lang] in page.locator("#billing-unit").inner_text()
        assert page.locator("#inputs h2").inner_text() == inputs
        rows = page.locator("#input-table tbody tr")
        assert [rows.nth(i).get_attribute("data-input") for i in range(rows.count())] == fields
        assert page.locator("#inputs").is_visible() and page.locator("#input-table").is_visible()
        assert page.locator("#quickstart h2").inner_text() == quick
        python = page.locator("#snippet-python").inner_text()
        assert call in python and f'model="{model_id}"' in python and f"{base_url}/v1" in python
        curl = page.locator("#snippet-curl").inner_text()
        assert f"{base_url}{'/v1/videos' if 'video' in model_id else '/v1/images/generations'}" in curl
        page.screenshot(path=str(artifact(f"model-{model_id}-{lang}.png")), full_page=True)
    finally:
        context.close()
