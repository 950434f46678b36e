"""Jinja2 rendering of the web pages: one environment per language, filters, security headers.

Every page goes through `render_page`, which negotiates the language, fills the common
context (language switch links, base URL) and sets the security headers: a CSP that allows
this origin only (no CDN, no inline script or style), no framing, no MIME sniffing.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from runapi.money import nanos_to_usd
from runapi.public_url import public_root
from runapi.query import text_param
from runapi.runtime import Gateway
from runapi.web.charts import bar_chart, column_chart
from runapi.web.i18n import (
    LANG_COOKIE,
    LANGUAGES,
    load_translations,
    negotiate_language,
    normalise_language,
)

if TYPE_CHECKING:
    import jinja2

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), clipboard-write=(self)",
}
ASSETS_PATH = "/assets"


def format_usd(amount: Decimal) -> str:
    """`$0.10`, `$2.20`, `$0.000012345`: exact, with at least two decimals."""
    sign = "-" if amount < 0 else ""
    text = format(abs(amount), "f")
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    return f"{sign}${whole}.{fraction}"


def format_nanos(nanos: int) -> str:
    """An integer nano-dollar amount as exact USD (see `format_usd`)."""
    return format_usd(nanos_to_usd(nanos))


def format_count(count: int) -> str:
    return f"{count:,}"


def format_tokens_short(count: int) -> str:
    """128K for 128000 and for 131072, 200K for 204800, 1M for 1048576: context windows as quoted."""
    for unit, suffix in ((1_000_000, "M"), (1024 * 1024, "M"), (1000, "K"), (1024, "K")):
        if count >= unit and count % unit == 0:
            return f"{count // unit}{suffix}"
    return f"{count:,}"


def format_time(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


@cache
def environment(lang: str) -> jinja2.Environment:
    """The template environment for one language (built once; templates compile once each). Jinja2 and
    Babel are imported by the first page (3 MiB a gateway serving only the API does not keep)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("runapi.web", "templates"),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.install_gettext_translations(load_translations(lang), newstyle=True)  # type: ignore[attr-defined]
    env.filters.update(usd=format_usd, nanos=format_nanos, tokens_short=format_tokens_short,
                       time=format_time, ms=format_ms)
    env.globals.update(assets=ASSETS_PATH, languages=LANGUAGES, column_chart=column_chart, bar_chart=bar_chart,
                       format_nanos=format_nanos, format_count=format_count)
    return env


def public_base_url(request: Request) -> str:
    """This instance's public root URL (no trailing slash, no `/v1`): see `runapi.public_url`."""
    gw: Gateway = request.app.state.gateway
    return public_root(gw.settings.server, request.scope)


def request_language(request: Request) -> str:
    return negotiate_language(text_param(request.query_params, "lang"), request.cookies.get(LANG_COOKIE),
                              request.headers.get("accept-language"))


def language_links(request: Request) -> dict[str, str]:
    """For each language, this same page (path and query kept) with `?lang=` set to it."""
    links = {}
    for lang in LANGUAGES:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"] + [("lang", lang)]
        links[lang] = f"{request.url.path}?{urlencode(params)}"
    return links


def render_page(request: Request, template: str, context: dict[str, Any], *, status_code: int = 200,
                private: bool = False, lang: str | None = None) -> HTMLResponse:
    """Render `template` in the negotiated language with the common context and security headers.

    `private` pages (dashboards) are never cached; public pages must revalidate (live status).
    """
    lang = lang or request_language(request)
    html = environment(lang).get_template(template).render(
        lang=lang, language_links=language_links(request), base_url=public_base_url(request),
        path=request.url.path, **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    apply_security_headers(response, private=private)
    response.headers["vary"] = "Accept-Language, Cookie"
    if normalise_language(text_param(request.query_params, "lang")) is not None:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 24 * 3600, path="/", samesite="lax")
    return response


def apply_security_headers(response: Any, *, private: bool) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    response.headers["cache-control"] = "no-store" if private else "no-cache"


def see_other(location: str) -> RedirectResponse:
    """A 303 redirect (after a form POST, or to the sign-in page), never cached."""
    response = RedirectResponse(location, status_code=303)
    apply_security_headers(response, private=True)
    return response
