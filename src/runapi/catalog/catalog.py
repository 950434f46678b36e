"""The model catalog: typed entries, the built-in data file, and the operator's overrides.

The built-in catalog is `builtin.toml` beside this module. The operator's config adds
`[providers.NAME]` tables and `[models.ID]` tables that are deep-merged over the built-in
entry of the same ID (or define a new model in full).
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from importlib import resources
from typing import Any, Literal

import msgspec

from runapi.money import Pricing


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
    pricing: Pricing
    deployments: list[DeploymentSpec]
    variant: str = ""
    mode: str = "text"
    task_type: str = "synchronous"
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

    Raises `msgspec.ValidationError` with a path such as `$.models.glm-4.5.pricing.input`.
    """
    merged_providers = _deep_merge(builtin.get("providers", {}), providers)
    merged_models = _deep_merge({m["id"]: m for m in builtin.get("models", [])}, models)
    for model_id, data in merged_models.items():
        data.setdefault("id", model_id)
    catalog = msgspec.convert(
        {"providers": merged_providers, "models": merged_models}, Catalog, dec_hook=_decimal_hook
    )
    aliases: dict[str, str] = {}
    for entry in catalog.models.values():
        for deployment in entry.deployments:
            if deployment.provider not in catalog.providers:
                raise ValueError(f"model {entry.id!r}: unknown provider {deployment.provider!r}")
        for alias in entry.aliases:
            aliases[alias] = entry.id
    return msgspec.structs.replace(catalog, aliases=aliases)
