"""Simulator knobs: one frozen struct, set per instance and overridable per request."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from .script import ScriptTurn

__all__ = ["FAULTS", "SimulatorConfig", "with_overrides"]

FAULTS = frozenset({"429", "500", "cut", "stall", "bad_json", "error_event", "fail", "filtered", "partial"})
"""Fault names understood by `SimulatorConfig.fault` and `POST /_sim/faults`."""

_NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
_NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]


class SimulatorConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the development upstream simulator answers.

    `latency_ms` is waited before the first byte; `chunk_delay_ms` before each
    token-carrying SSE event. `completion_tokens` is the reply length before
    `max_tokens` caps it; `chunks` spreads the reply words over that many content
    chunks (0 = one chunk per word). `cached_tokens` / `cache_creation_tokens` are
    reported as prompt cache reads / writes, `reasoning_tokens` adds a reasoning
    text before the answer. `honour_include_usage=False` mimics a provider that
    ignores `stream_options.include_usage`. `fault` is one of `FAULTS` or "".
    `pad_bytes` appends that many "x" to the last answer word (usage unchanged; streamed,
    it makes the last content event that much bigger), to test response size limits.
    `reject_system_messages` answers Anthropic Messages requests holding `role: "system"` messages
    with a 400, as Claude models before Opus 4.8 do. `script` plays a scripted agent exchange, one turn
    per assistant turn of the conversation (see `runapi.simulator.script`); empty, the simulator answers
    lorem ipsum. `image_tokens` is what each image part of the prompt counts (a provider's formula, from
    85 for a small OpenAI image to tens of thousands for some models).

    Media: a video job finishes `video_delay_ms` after submission; the fault "fail" ends it FAIL,
    "stall" never finishes it. "filtered" refuses an image request as the content filter does;
    "partial" makes its last image undeliverable.
    Generated media URLs expire `media_url_ttl_s` seconds after they were issued (0: at once).
    """

    latency_ms: _NonNegFloat = 0.0
    chunk_delay_ms: _NonNegFloat = 0.0
    completion_tokens: _NonNegInt = 12
    chunks: _NonNegInt = 0
    cached_tokens: _NonNegInt = 0
    cache_creation_tokens: _NonNegInt = 0
    reasoning_tokens: _NonNegInt = 0
    honour_include_usage: bool = True
    fault: str = ""
    pad_bytes: _NonNegInt = 0
    reject_system_messages: bool = False
    script: tuple[ScriptTurn, ...] = ()
    image_tokens: _NonNegInt = 85
    video_delay_ms: _NonNegFloat = 500.0
    media_url_ttl_s: _NonNegFloat = 3600.0

    def __post_init__(self) -> None:
        if self.fault and self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault!r}, expected one of {sorted(FAULTS)}")


def with_overrides(config: SimulatorConfig, overrides: Any) -> SimulatorConfig:
    """Return `config` with the fields of a request's `x_sim` object replaced.

    Raises `msgspec.ValidationError` when `overrides` is not an object, names an
    unknown field or holds a bad value.
    """
    if not isinstance(overrides, dict):
        raise msgspec.ValidationError("x_sim: expected an object")
    try:
        return msgspec.convert({**msgspec.structs.asdict(config), **overrides}, SimulatorConfig)
    except msgspec.ValidationError as exc:
        raise msgspec.ValidationError(f"x_sim: {exc}") from None
