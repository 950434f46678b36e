"""The body of SKILL.md for an embedding, image or video model family: its endpoint, prices in its
unit, typed inputs (from each model's JSON Schema) and a quick start fitting the mode. Pure."""

from __future__ import annotations

from runapi.catalog import ModelEntry, price_line
from runapi.web.input_fields import input_fields
from runapi.web.snippets import API_KEY_ENV, api_base, quick_start

_WHAT = {
    "embedding": "turn text into vectors (semantic search, RAG, clustering)",
    "image": "generate images from a text prompt",
    "video": "generate short videos from a prompt or an image, as an asynchronous job",
}
_BILLING = {
    "embedding": "Billed per input token, exactly as the provider counts them (`usage.prompt_tokens`); there "
                 "are no output tokens. A failed call is free.",
    "image": "Billed per image generated, at the model's price for the requested size and quality. A failed or "
             "filtered image is free.",
    "video": "Billed once per video delivered. The most the job can cost is held when it is created; a video "
             "that fails, times out or is cancelled costs nothing and the hold is released.",
}
_RESULT = {
    "embedding": "`data[i].embedding` holds the vector of input `i`: floats with `encoding_format: \"float\"`, or "
                 "base64 of little-endian float32 with `\"base64\"` (the openai SDKs ask for base64 and decode "
                 "it). `usage.cost` is the exact cost in USD.",
    "image": "`data[i].url` is a signed, expiring URL of this gateway (the provider's own URLs expire sooner): "
             "download the image before it expires, or ask for `response_format: \"b64_json\"` to get it inline.",
    "video": "`POST /videos` answers at once with `{id, status: \"queued\"}`. Poll `GET /videos/{id}` until "
             "`status` is `completed` or `failed`, then download `GET /videos/{id}/content`. Or submit it as a "
             "task (`POST /tasks` with a `callback_url`) and receive a signed webhook carrying the cached "
             "output URL.",
}


def typed_skill_sections(family: list[ModelEntry], default: ModelEntry, root_url: str) -> list[str]:
    """Connection, model table, typed inputs, result and example sections (Markdown lines)."""
    base, mode = api_base(root_url), default.mode
    lines = [
        "## Connection",
        "",
        f"- Base URL: `{base}` (OpenAI compatible: point any OpenAI SDK's `base_url` here).",
        f"- Endpoint: `POST {base}{default.endpoint.removeprefix('/v1')}` — these models {_WHAT[mode]}.",
        f"- Auth: `Authorization: Bearer ${API_KEY_ENV}`. Read the key from the `{API_KEY_ENV}` environment "
        "variable; never hard-code or commit it.",
        f"- One model, with its input JSON Schema: `GET {base}/models/{{id}}`.",
        "",
        "## Model IDs and prices",
        "",
        "| Model ID | Name | Mode | Task type | Price (USD) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| `{m.id}` | {m.name} | {m.mode} | {m.task_type} | {price_line(m)} |" for m in family]
    lines += ["", _BILLING[mode], ""]
    for m in family:
        lines += [f"## Inputs of `{m.id}`", "",
                  "A request that breaks these is refused with HTTP 400 naming the field (`error.param`), "
                  "before anything is held or charged.", "",
                  "| Field | Type | Required | Accepted values |", "|---|---|---|---|"]
        lines += [f"| {f.name} | {f.kind} | {'yes' if f.required else 'no'} | {f.accepts or 'any'} |"
                  for f in input_fields(m.input_schema())]
        lines.append("")
    lines += ["## Result", "", _RESULT[mode], ""]
    snippets = {s.id: s.code for s in quick_start(root_url, default.id, mode)}
    lines += ["## Example (Python, openai SDK)", "", "```python", snippets["python"].rstrip("\n"), "```", "",
              "## Example (curl)", "", "```shell", snippets["curl"].rstrip("\n"), "```", ""]
    return lines
