"""UI languages: gettext catalogs compiled from the shipped `.po` files, and language negotiation.

The `.po` files under `locale/<locale>/LC_MESSAGES/messages.po` are the source of truth; they
are compiled in memory at start-up (Babel), so a fresh checkout or `pip install -e .` needs no
build step. Model texts are not here: they come from the catalog's `text.<lang>` tables.
"""

from __future__ import annotations

import gettext
import io
from importlib import resources

LANGUAGES: dict[str, str] = {"en": "English", "zh-Hant": "繁體中文"}
"""Page languages (BCP 47 tag → its own name, for the switch)."""
DEFAULT_LANGUAGE = "en"
LANG_COOKIE = "runapi_lang"
_LOCALES = {"zh-Hant": "zh_Hant"}  # BCP 47 tag → gettext locale directory


def load_translations(lang: str) -> gettext.NullTranslations:
    """The compiled message catalog for `lang` (English is the source language: no catalog)."""
    locale = _LOCALES.get(lang)
    if locale is None:
        return gettext.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    po = resources.files("runapi.web").joinpath("locale", locale, "LC_MESSAGES", "messages.po")
    with po.open("rb") as source:
        catalog = read_po(source, locale=locale)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def normalise_language(value: str | None) -> str | None:
    """Map a tag such as `zh-TW`, `zh_hant` or `en-GB` to a supported language, or None."""
    if not value:
        return None
    tag = value.strip().replace("_", "-").lower()
    if tag == "en" or tag.startswith("en-"):
        return "en"
    if tag == "zh" or tag.startswith("zh-"):
        # Traditional Chinese is the only Chinese we ship; it beats English for every zh reader.
        return "zh-Hant"
    return None


def parse_accept_language(header: str) -> list[str]:
    """Language tags of an `Accept-Language` header, best first (q=0 dropped, ties keep order)."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        if not tag.strip():
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, tag.strip()))
    return [tag for _, _, tag in sorted(ranked)]


def negotiate_language(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """`?lang=` first, then the language cookie, then `Accept-Language`, else English."""
    for explicit in (query, cookie):
        lang = normalise_language(explicit)
        if lang is not None:
            return lang
    for tag in parse_accept_language(accept_language or ""):
        if tag == "*":
            break
        lang = normalise_language(tag)
        if lang is not None:
            return lang
    return DEFAULT_LANGUAGE
