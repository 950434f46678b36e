"""The public catalog: `/models` (every model, filterable) and `/models/{id}` (one model's page)."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from runapi.catalog import Catalog, ModelEntry, ModelText
from runapi.health import HealthReport
from runapi.query import text_param
from runapi.runtime import Gateway
from runapi.web.features import gateway_features
from runapi.web.input_fields import input_fields
from runapi.web.rendering import public_base_url, render_page, request_language
from runapi.web.skills import family_display_name
from runapi.web.snippets import quick_start, skill_install_command


class ModelCard(msgspec.Struct, frozen=True):
    """What a page shows about one model: the entry, its provider's name and its live status
    (the same as `GET /v1/models/{id}` reports: its own window, worsened by its deployments)."""

    entry: ModelEntry
    provider_name: str
    status: str
    health: HealthReport


def model_card(gw: Gateway, entry: ModelEntry) -> ModelCard:
    spec = gw.catalog.providers.get(entry.provider)
    status, report, _ = gw.model_health(entry)
    return ModelCard(entry, spec.name if spec is not None and spec.name else entry.provider, status, report)


def localised_text(entry: ModelEntry, lang: str) -> ModelText:
    """The model's texts in `lang`, falling back to English, then to nothing."""
    return entry.text.get(lang) or entry.text.get("en") or ModelText()


def matches(card: ModelCard, provider: str, mode: str, query: str) -> bool:
    """The `/models` filter: provider key, mode, and a case-insensitive search over names and IDs."""
    entry = card.entry
    if provider and entry.provider != provider:
        return False
    if mode and entry.mode != mode:
        return False
    if query:
        haystack = " ".join([entry.id, entry.name, entry.family, card.provider_name, *entry.aliases]).lower()
        return all(word in haystack for word in query.lower().split())
    return True


def _options(values: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted(set(values), key=lambda pair: pair[1].lower())


async def models_index(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    cards = [model_card(gw, e) for e in gw.catalog.models.values()]
    params = request.query_params
    provider = text_param(params, "provider") or ""
    mode = text_param(params, "mode") or ""
    query = (text_param(params, "q") or "").strip()
    # Every row is rendered, the non-matching ones hidden, so the page's script can refilter live.
    shown = {c.entry.id for c in cards if matches(c, provider, mode, query)}
    return render_page(request, "models.html", {
        "cards": cards,
        "shown": shown,
        "providers": _options((c.entry.provider, c.provider_name) for c in cards),
        "modes": _options((c.entry.mode, c.entry.mode) for c in cards),
        "provider": provider, "mode": mode, "query": query,
    })


def family_switch(catalog: Catalog, entry: ModelEntry) -> tuple[list[ModelEntry], list[ModelEntry]]:
    """(the variants of `entry`'s family, other models of the same provider when it has no siblings)."""
    family = catalog.family_of(entry)
    related = [] if len(family) > 1 else [m for m in catalog.models.values()
                                          if m.provider == entry.provider and m.family != entry.family]
    return family, related


async def model_page(request: Request) -> Response:
    gw: Gateway = request.app.state.gateway
    model_id = request.path_params["model_id"]
    entry = gw.catalog.resolve(model_id)
    if entry is None:
        return render_page(request, "not_found.html", {"model_id": model_id}, status_code=404)
    lang = request_language(request)
    root = public_base_url(request)
    family, related = family_switch(gw.catalog, entry)
    return render_page(request, "model.html", {
        "card": model_card(gw, entry),
        "text": localised_text(entry, lang),
        "family": family,
        "family_name": family_display_name(family, entry.family),
        "related": related,
        "snippets": quick_start(root, entry.id, entry.mode),
        "inputs": input_fields(entry.input_schema()),
        "install_command": skill_install_command(root, entry.id),
        "features": gateway_features(request.app),
        "tiers": gw.limits.tiers.tiers,
        "site": gw.settings.site,
    }, lang=lang)
