"""UI languages: negotiation rules, and a complete Traditional Chinese message catalog."""

from __future__ import annotations

from importlib import resources

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from runapi.web.i18n import (
    load_translations,
    negotiate_language,
    normalise_language,
    parse_accept_language,
)
from runapi.web.rendering import format_tokens_short, format_usd

TEMPLATES = resources.files("runapi.web").joinpath("templates")
PO = resources.files("runapi.web").joinpath("locale", "zh_Hant", "LC_MESSAGES", "messages.po")


@pytest.mark.parametrize(("header", "expected"), [
    ("", []),
    ("en-US,en;q=0.9", ["en-US", "en"]),
    ("fr;q=0.5, zh-TW;q=0.8, de", ["de", "zh-TW", "fr"]),
    ("en;q=0, zh-Hant", ["zh-Hant"]),
    ("*;q=0.1, ja", ["ja", "*"]),
    ("en;q=bogus, fr", ["fr"]),
])
def test_accept_language_is_ranked_by_quality(header: str, expected: list[str]) -> None:
    assert parse_accept_language(header) == expected


@pytest.mark.parametrize(("tag", "expected"), [
    ("zh-TW", "zh-Hant"), ("zh_hant", "zh-Hant"), ("zh-HK", "zh-Hant"), ("zh", "zh-Hant"), ("en-GB", "en"),
    ("EN", "en"), ("fr", None), ("", None), (None, None), ("english", None),
])
def test_tags_map_to_shipped_languages(tag: str | None, expected: str | None) -> None:
    assert normalise_language(tag) == expected


@pytest.mark.parametrize(("query", "cookie", "header", "expected"), [
    (None, None, None, "en"),
    (None, None, "zh-TW,zh;q=0.9,en;q=0.8", "zh-Hant"),
    (None, None, "fr-FR, de;q=0.9, en;q=0.5", "en"),
    (None, None, "fr, ja", "en"),
    (None, "zh-Hant", "en", "zh-Hant"),
    ("en", "zh-Hant", "zh-TW", "en"),
    ("klingon", "zh-Hant", "en", "zh-Hant"),
])
def test_query_beats_cookie_beats_accept_language(query: str | None, cookie: str | None, header: str | None,
                                                  expected: str) -> None:
    assert negotiate_language(query, cookie, header) == expected


def _template_messages() -> set[str]:
    options = {"*.html": {"extensions": "jinja2.ext.i18n", "trim_blocks": "yes", "lstrip_blocks": "yes"}}
    found = extract_from_dir(str(TEMPLATES), method_map=[("*.html", "jinja2.ext:babel_extract")], options_map=options)
    return {message if isinstance(message, str) else message[0] for _, _, message, _, _ in found}


def test_every_ui_string_has_a_traditional_chinese_translation() -> None:
    with PO.open("rb") as source:
        catalog = read_po(source)
    translated = {m.id for m in catalog if m.id and m.string and not m.fuzzy}
    missing = _template_messages() - translated
    assert not missing, f"add these to messages.po: {sorted(missing)}"


def test_the_catalog_compiles_at_start_up_and_translates() -> None:
    zh = load_translations("zh-Hant")
    assert zh.gettext("Pricing") == "價格"
    assert zh.gettext("%(shown)s of %(total)s models") % {"shown": 2, "total": 8} == "共 8 個模型，顯示 2 個"
    assert load_translations("en").gettext("Pricing") == "Pricing"


@pytest.mark.parametrize(("amount", "text"), [
    ("0.1", "$0.10"), ("0.55", "$0.55"), ("2.2", "$2.20"), ("15", "$15.00"), ("0.000012345", "$0.000012345"),
    ("0", "$0.00"), ("-1.5", "-$1.50"),
])
def test_usd_is_exact_with_at_least_cents(amount: str, text: str) -> None:
    from decimal import Decimal

    assert format_usd(Decimal(amount)) == text


@pytest.mark.parametrize(("count", "text"), [(131072, "128K"), (204800, "200K"), (1048576, "1M"), (200000, "200K"),
                                             (128000, "128K"), (1234, "1,234")])
def test_context_lengths_read_as_quoted(count: int, text: str) -> None:
    assert format_tokens_short(count) == text
