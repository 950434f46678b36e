"""Model skills: the `SKILL.md` that teaches a coding agent to call one model family through
this gateway. A pure function of the catalog, the gateway's public URL and its features;
`GET /v1/models/{id}/skill` and `runapi skill install` both use it.

The front matter follows the Agent Skills format: `name` (lowercase letters, digits and
hyphens, at most 64 characters) and `description` (one line, at most 1024 characters).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal

import msgspec

from runapi.catalog import Catalog, ModelEntry
from runapi.web.snippets import API_KEY_ENV, api_base, curl_snippet, python_snippet
from runapi.web.typed_skills import typed_skill_sections

SKILL_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
MAX_NAME = 64
MAX_DESCRIPTION = 1024


class Features(msgspec.Struct, frozen=True):
    """Optional gateway endpoints the skill may mention (only those this instance serves)."""

    tasks: bool = False
    messages: bool = False


class Skill(msgspec.Struct, frozen=True):
    name: str
    description: str
    text: str  # the whole SKILL.md


def skill_name(family: str) -> str:
    """`glm-4.5` → `runapi-glm-4-5`: a valid skill (and directory) name."""
    slug = re.sub(r"[^a-z0-9]+", "-", family.lower()).strip("-") or "model"
    return f"runapi-{slug}"[:MAX_NAME].rstrip("-")


def _price(value: Decimal) -> str:
    if value == 0:
        return "free"
    text = format(value, "f")
    whole, _, fraction = text.partition(".")
    return f"${whole}.{fraction.rstrip('0').ljust(2, '0')}"


def _first_sentence(text: str) -> str:
    match = re.match(r"(.+?[.!?])(\s|$)", text.strip())
    return match.group(1) if match else text.strip()


def family_display_name(members: list[ModelEntry], family: str) -> str:
    """`GLM-4.5` for the glm-4.5 family: the name of its namesake member, else of its only member."""
    for member in members:
        if member.id == family:
            return member.name
    return members[0].name if len(members) == 1 else family


def _provider_name(catalog: Catalog, entry: ModelEntry) -> str:
    spec = catalog.providers.get(entry.provider)
    return spec.name if spec is not None and spec.name else entry.provider


def render_skill(catalog: Catalog, entry: ModelEntry, root_url: str, features: Features = Features()) -> Skill:
    """The skill for `entry`'s family on the gateway at `root_url` (its root, without `/v1`)."""
    family = catalog.family_of(entry)
    ids = [m.id for m in family]
    provider = _provider_name(catalog, entry)
    base = api_base(root_url)
    family_title = family_display_name(family, entry.family)
    name = skill_name(entry.family)
    if entry.mode != "text":
        return _typed_skill(family, entry, root_url, provider, family_title, name)
    description = (
        f"Call {provider}'s {family_title} models ({', '.join(ids)}) through the RunAPI gateway at {base} "
        f"with any OpenAI SDK or curl. Use when writing or changing code that sends chat requests to "
        f"{' or '.join(ids)}, choosing between these variants, streaming their output or estimating cost."
    )[:MAX_DESCRIPTION]
    default = min(family, key=lambda m: (m.pricing.input, m.pricing.output))
    lines = [
        "---",
        f"name: {name}",
        f"description: {json.dumps(description, ensure_ascii=False)}",
        "---",
        "",
        f"# {family_title} through RunAPI",
        "",
        f"RunAPI is an OpenAI-compatible gateway: one endpoint and one API key for many models, billed per "
        f"token in USD. This skill covers the {family_title} family from {provider}.",
        "",
        "## Connection",
        "",
        f"- Base URL: `{base}` (OpenAI compatible: point any OpenAI SDK's `base_url` here).",
        f"- Endpoint: `POST {base}/chat/completions`.",
        f"- Auth: `Authorization: Bearer ${API_KEY_ENV}`. Read the key from the `{API_KEY_ENV}` environment "
        "variable; never hard-code or commit it.",
    ]
    if features.messages:
        lines.append(f"- Anthropic-style clients may use `POST {base}/messages` with the same key and model IDs.")
    lines += [
        f"- Model catalog: `GET {base}/models` (live status), one model: `GET {base}/models/{{id}}`.",
        "",
        "## Model IDs",
        "",
        "Use exactly these IDs in the `model` field. They are stable: the operator may change the upstream "
        "behind an ID, never its meaning. Switching variant means changing only the `model` field.",
        "",
        "| Model ID | Name | Variant | Context | Max output | Input | Output | Cache read | Cache write |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in family:
        p = m.pricing
        lines.append(f"| `{m.id}` | {m.name} | {m.variant or '-'} | {m.context_length:,} | {m.max_output:,} | "
                     f"{_price(p.input)} | {_price(p.output)} | {_price(p.cache_read)} | {_price(p.cache_write)} |")
    lines += [
        "",
        "Prices are USD per 1M tokens. Cost = Σ tokens × price / 1,000,000 per token class, exact to the "
        "nano-dollar. Failed generations are not charged. Every response carries `usage.cost` (USD) and its "
        f"`id`; `GET {base}/generations/{{id}}` shows the tokens, cost and latency of one call.",
        "",
        "## When to pick which",
        "",
    ]
    for m in family:
        text = m.text.get("en")
        lines.append(f"### `{m.id}`")
        lines.append("")
        if text is not None and text.overview:
            lines.append(_first_sentence(text.overview))
            lines.append("")
        if text is not None and text.use_cases:
            lines.append("Good for: " + "; ".join(text.use_cases) + ".")
            lines.append("")
        if text is not None:
            lines += [f"- {difference}" for difference in text.differences]
            if text.differences:
                lines.append("")
    if len(family) > 1:
        lines += [f"Default to `{default.id}` (the cheapest) and move up only when quality requires it.", ""]
    lines += [
        "## Example (Python, openai SDK)",
        "",
        "```python",
        python_snippet(root_url, default.id).rstrip("\n"),
        "```",
        "",
        "## Example (curl)",
        "",
        "```shell",
        curl_snippet(root_url, default.id).rstrip("\n"),
        "```",
        "",
        "## Streaming",
        "",
        "Set `stream=True` to receive server-sent events chunk by chunk. Add "
        '`stream_options={"include_usage": True}` to get a final chunk with the token counts and cost.',
        "",
        "```python",
        "stream = client.chat.completions.create(",
        f'    model="{default.id}",',
        '    messages=[{"role": "user", "content": "Write a haiku about gateways."}],',
        "    stream=True,",
        '    stream_options={"include_usage": True},',
        ")",
        "for chunk in stream:",
        "    if chunk.choices and chunk.choices[0].delta.content:",
        '        print(chunk.choices[0].delta.content, end="", flush=True)',
        "```",
        "",
    ]
    if features.tasks:
        lines += [
            "## Long jobs: asynchronous tasks",
            "",
            f"`POST {base}/tasks` with `{{\"model\": \"{default.id}\", \"input\": <a chat completions request>, "
            "\"callback_url\": \"https://…\"}` answers `202` with a task ID. Poll "
            f"`GET {base}/tasks/{{id}}` for the status and result, or receive a signed webhook "
            "(Standard Webhooks) at `callback_url`; the output is also kept at an expiring output URL.",
            "",
        ]
    lines += [
        "## Errors",
        "",
        "Errors are OpenAI-shaped (`{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`): `401` bad or "
        "revoked key, `402` not enough credit, `404` unknown model, `429` rate limited (honour `Retry-After`), "
        "`5xx` upstream trouble (safe to retry with backoff).",
        "",
    ]
    return Skill(name=name, description=description, text="\n".join(lines))


_MODE_NOUNS = {"embedding": "embedding", "image": "image generation", "video": "video generation"}


def _typed_skill(family: list[ModelEntry], entry: ModelEntry, root_url: str, provider: str, title: str,
                 name: str) -> Skill:
    """The skill of an embedding, image or video family: typed inputs and the mode's endpoint."""
    ids = [m.id for m in family]
    noun = _MODE_NOUNS[entry.mode]
    description = (
        f"Call {provider}'s {title} {noun} models ({', '.join(ids)}) through the RunAPI gateway at "
        f"{api_base(root_url)} with any OpenAI SDK or curl. Use when writing or changing code that calls "
        f"{entry.endpoint} with {' or '.join(ids)}: the typed inputs each model accepts, prices per "
        f"{entry.unit if entry.unit != 'tokens' else '1M tokens'}, and how to read the result."
    )[:MAX_DESCRIPTION]
    default = min(family, key=lambda m: m.unit_pricing.max_price() if m.unit_pricing else m.pricing.input)
    lines = ["---", f"name: {name}", f"description: {json.dumps(description, ensure_ascii=False)}", "---", "",
             f"# {title} through RunAPI", "",
             f"RunAPI is an OpenAI-compatible gateway: one endpoint and one API key for many models, billed in "
             f"USD in each model's unit. This skill covers the {title} {noun} family from {provider}.", ""]
    lines += typed_skill_sections(family, default, root_url)
    lines += ["## Errors", "",
              "Errors are OpenAI-shaped (`{\"error\": {\"message\", \"type\", \"param\", \"code\"}}`): `400` a field "
              "breaks the model's inputs (`param` names it), `401` bad key, `402` not enough credit, `404` unknown "
              "model, `429` rate limited (honour `Retry-After`), `5xx` upstream trouble.", ""]
    return Skill(name=name, description=description, text="\n".join(lines))


def skill_name_from_text(text: str) -> str:
    """The `name` of a SKILL.md's front matter, checked to be a safe directory name.

    Raises `ValueError` when the text has no front matter or an invalid name.
    """
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        raise ValueError("SKILL.md has no front matter")
    for line in lines[1:]:
        if line.strip() == "---":
            break
        key, _, value = line.partition(":")
        if key.strip() == "name":
            name = value.strip().strip("\"'")
            if len(name) <= MAX_NAME and SKILL_NAME.match(name):
                return name
            raise ValueError(f"invalid skill name {name!r}")
    raise ValueError("SKILL.md front matter has no name")
