"""The model catalog: typed entries, the built-in data file, and the operator's overrides.

The built-in catalog is `builtin.toml` beside this module. The operator's config adds
`[providers.NAME]` tables and `[models.ID]` tables that are deep-merged over the built-in
entry of the same ID (or define a new model in full). Every model has a mode (text, embedding,
image, video), a task type, a billing unit with prices in it, and typed inputs (`modes.py`,
`input_schema.py`); `build_catalog` refuses an entry whose parts do not fit, saying what to fix.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from importlib import resources
from typing import Any, Literal

import msgspec

from runapi.money import Pricing, UnitPricing
from runapi.catalog.input_schema import InputSpec, JsonSchema, build_input_schema
from runapi.catalog.modes import (
    CatalogError,
    Mode,
    TaskType,
    Unit,
    check_mode,
    check_prices_present,
    check_unit_pricing,
    default_fields,
)

NO_TOKEN_PRICES = Pricing(input=Decimal(0), output=Decimal(0))


class ProviderSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where and how to reach one upstream provider. The key is named by env var, never stored."""

    base_url: str
    protocol: Literal["openai", "anthropic"] = "openai"
    name: str = ""
    api_key_env: str = ""
    headers: dict[str, str] = {}


class DeploymentSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One way to serve a public model: a provider and the upstream's own model name."""

    provider: str
    upstream_model: str
    weight: float = 1.0
    cost: Pricing | None = None  # what the provider charges us (USD per 1M tokens), for margin reports
    unit_cost: UnitPricing | None = None  # media models: what the provider charges us per unit


class FaqItem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    q: str
    a: str


class ModelText(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The human-facing text of a model page, in one language."""

    overview: str = ""
    differences: list[str] = []
    use_cases: list[str] = []
    faq: list[FaqItem] = []


class ModelEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One public model. `id` never changes meaning; deployments may change behind it."""

    id: str
    name: str
    family: str
    provider: str
    deployments: list[DeploymentSpec]
    # Token modes (text, embedding): USD per 1M tokens. Media modes carry `unit_pricing` instead.
    pricing: Pricing = NO_TOKEN_PRICES
    unit_pricing: UnitPricing | None = None  # USD per image, per video or per second of video
    variant: str = ""
    mode: Mode = "text"
    task_type: TaskType = "synchronous"
    unit: Unit = "tokens"  # what one price is for: 1M tokens, one image, one video, one second
    inputs: InputSpec = InputSpec()
    endpoint: str = "/v1/chat/completions"
    protocol: str = "OpenAI compatible"
    context_length: int = 128_000
    max_output: int = 8_192
    # The most tokens one image can count as input: the provider's formula at the largest image it
    # accepts (Anthropic: about 1,600; OpenAI GPT-4o high detail: 85 + 8 tiles × 170 = 1,445).
    image_tokens: int = 1_600
    # 0: the upstream counts reasoning inside `max_tokens`, which then bounds the output. Otherwise the
    # most output tokens (answer and reasoning) one choice can produce, whatever `max_tokens` says.
    output_ceiling: int = 0
    # Its OpenAI-protocol upstreams also serve legacy text completions, `POST /completions` (vLLM, Ollama,
    # OpenAI's instruct models do; chat-only APIs such as Z.ai's and Anthropic's do not).
    text_completions: bool = False
    billing_unit: str = "1K tokens"
    license: str = ""
    aliases: list[str] = []
    released: str = ""
    fallbacks: list[str] = []
    text: dict[str, ModelText] = {}

    def input_schema(self) -> JsonSchema:
        """The JSON Schema of a request to this model (published, and checked before any hold)."""
        return build_input_schema(self.mode, self.inputs, self.max_output)


class Catalog(msgspec.Struct, frozen=True):
    """All models and providers, with an alias index. Built once at start-up."""

    providers: dict[str, ProviderSpec]
    models: dict[str, ModelEntry]
    aliases: dict[str, str] = {}

    def resolve(self, name: str) -> ModelEntry | None:
        """The entry for a public ID or alias, or None."""
        entry = self.models.get(name)
        if entry is None and name in self.aliases:
            entry = self.models.get(self.aliases[name])
        return entry

    def family_of(self, entry: ModelEntry) -> list[ModelEntry]:
        return [m for m in self.models.values() if m.family == entry.family]


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def builtin_catalog_data() -> dict[str, Any]:
    """The parsed built-in data file, as plain TOML data."""
    text = resources.files("runapi.catalog").joinpath("builtin.toml").read_text("utf-8")
    return tomllib.loads(text)


def _decimal_hook(type_: type, obj: Any) -> Any:
    if type_ is Decimal and isinstance(obj, (str, int)):
        return Decimal(str(obj))
    raise NotImplementedError


def build_catalog(builtin: dict[str, Any], providers: dict[str, Any], models: dict[str, Any]) -> Catalog:
    """Merge operator `providers` and `models` tables over the built-in data and validate.

    Raises `msgspec.ValidationError` with a path such as `$.models.glm-4.5.pricing.input`, or
    `CatalogError` (a `ValueError`) naming the model and the fix when its mode, unit, task type,
    prices or fallbacks do not fit together.
    """
    merged_providers = _deep_merge(builtin.get("providers", {}), providers)
    merged_models = _deep_merge({m["id"]: m for m in builtin.get("models", [])}, models)
    for model_id, data in list(merged_models.items()):
        data = merged_models[model_id] = default_fields({"id": model_id, **data})
        check_prices_present(model_id, data)
    catalog = msgspec.convert(
        {"providers": merged_providers, "models": merged_models}, Catalog, dec_hook=_decimal_hook
    )
    aliases: dict[str, str] = {}
    for entry in catalog.models.values():
        _check_entry(entry, catalog)
        for deployment in entry.deployments:
            if deployment.provider not in catalog.providers:
                raise ValueError(f"model {entry.id!r}: unknown provider {deployment.provider!r}")
        for alias in entry.aliases:
            aliases[alias] = entry.id
    return msgspec.structs.replace(catalog, aliases=aliases)


def _check_entry(entry: ModelEntry, catalog: Catalog) -> None:
    """The typed entry's mode, unit, prices and fallbacks fit together (`CatalogError` if not)."""
    check_mode(entry.id, entry.mode, entry.task_type, entry.unit)
    if entry.unit_pricing is not None:
        check_unit_pricing(entry.id, entry.unit, entry.unit_pricing, entry.inputs.sizes, entry.inputs.qualities)
    if entry.mode == "embedding" and (entry.pricing.output or entry.pricing.cache_read or entry.pricing.cache_write):
        raise CatalogError(f"model {entry.id!r}: an embedding model bills input tokens only; set "
                           "pricing.output, cache_read and cache_write to \"0\" (or leave them out)")
    for name in entry.fallbacks:
        fallback = catalog.resolve(name)
        if fallback is not None and (fallback.mode, fallback.unit) != (entry.mode, entry.unit):
            raise CatalogError(f"model {entry.id!r}: fallback {name!r} is a {fallback.mode} model billed per "
                               f"{fallback.unit}; a fallback must have the same mode and unit ({entry.mode}, "
                               f"{entry.unit})")
