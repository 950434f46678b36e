"""The request bodies of the benchmark. Simulator knobs travel in the body's `x_sim` object,
which every target passes through untouched (the gateway forwards unknown fields)."""

from __future__ import annotations

import json
from dataclasses import dataclass

MODEL = "glm-4.5-air"


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    stream: bool
    body: bytes
    paced: bool = False


def _body(content: str, *, stream: bool = False, x_sim: dict[str, float] | None = None) -> bytes:
    data: dict[str, object] = {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 64}
    if stream:
        data["stream"] = True
        data["stream_options"] = {"include_usage": True}
    if x_sim:
        data["x_sim"] = x_sim
    return json.dumps(data, separators=(",", ":")).encode()


def _prompt_32k() -> str:
    words = "the quick brown fox jumps over a lazy dog while counting tokens ".split()
    text, i = [], 0
    size = 0
    while size < 32 * 1024:
        word = words[i % len(words)]
        text.append(word)
        size += len(word) + 1
        i += 1
    return " ".join(text)[: 32 * 1024]


STREAM_20 = {"completion_tokens": 20, "chunks": 20}
PACED = {"completion_tokens": 20, "chunks": 20, "latency_ms": 5, "chunk_delay_ms": 2}

SCENARIOS = {
    "json": Scenario("json", "non-streaming, small body", False, _body("Say hello in one short sentence.")),
    "stream20": Scenario("stream20", "streaming, 20 chunks + usage", True,
                         _body("Count to twenty.", stream=True, x_sim=STREAM_20)),
    "prompt32k": Scenario("prompt32k", "non-streaming, 32 KB prompt", False, _body(_prompt_32k())),
    "paced": Scenario("paced", "streaming paced by upstream (5 ms + 20×2 ms)", True,
                      _body("Count to twenty, slowly.", stream=True, x_sim=PACED), paced=True),
}

FULL_PLAN = [(name, c) for name in SCENARIOS for c in (1, 16, 64)]
QUICK_PLAN = [("json", 1), ("json", 16), ("stream20", 16), ("prompt32k", 16), ("paced", 1)]
