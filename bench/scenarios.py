"""The request bodies of the benchmark. Simulator knobs travel in the body's `x_sim` object,
which every target passes through untouched (the gateway forwards unknown fields).

The `messages` scenarios post Anthropic Messages bodies to `/v1/messages`: on glm-4.5-air the
gateway translates them to chat completions for its OpenAI-protocol upstream and back (the
translated path), on claude-sonnet-5-5 it relays them to an Anthropic-protocol upstream (the
native path); each is compared with the chat scenario of the same shape (`CHAT_TWIN`). The
`responses` scenarios post OpenAI Responses bodies to `/v1/responses` on glm-4.5-air (translated to
chat completions and back), compared the same way."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

MODEL = "glm-4.5-air"
CLAUDE = "claude-sonnet-5-5"
CHAT_PATH = "/v1/chat/completions"
MESSAGES_PATH = "/v1/messages"
RESPONSES_PATH = "/v1/responses"
EMBEDDINGS_PATH = "/v1/embeddings"
EMBEDDING_MODEL = "text-embedding-3-small"


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    stream: bool
    body: bytes
    paced: bool = False
    path: str = CHAT_PATH

    @property
    def protocol(self) -> str:
        """"chat", "messages", "responses" or "embeddings": which answers the load clients check."""
        return {MESSAGES_PATH: "messages", RESPONSES_PATH: "responses", EMBEDDINGS_PATH: "embeddings"}.get(self.path, "chat")


def _body(content: str, *, stream: bool = False, x_sim: Mapping[str, float] | None = None,
          model: str = MODEL) -> bytes:
    data: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 64}
    if stream:
        data["stream"] = True
        data["stream_options"] = {"include_usage": True}
    if x_sim:
        data["x_sim"] = x_sim
    return json.dumps(data, separators=(",", ":")).encode()


def _messages_body(content: str, model: str, *, stream: bool = False, x_sim: Mapping[str, float] | None = None) -> bytes:
    data: dict[str, object] = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": content}]}
    if stream:
        data["stream"] = True
    if x_sim:
        data["x_sim"] = x_sim
    return json.dumps(data, separators=(",", ":")).encode()


def _responses_body(content: str, *, stream: bool = False, x_sim: Mapping[str, float] | None = None) -> bytes:
    data: dict[str, object] = {"model": MODEL, "max_output_tokens": 64, "input": content, "store": False}
    if stream:
        data["stream"] = True
    if x_sim:
        data["x_sim"] = x_sim
    return json.dumps(data, separators=(",", ":")).encode()


def _embeddings_body(inputs: int, words: int) -> bytes:
    """`inputs` texts of `words` words each, as the openai SDK sends them (base64 vectors, 1,536 dimensions)."""
    vocabulary = "the quick brown fox jumps over a lazy dog while counting tokens".split()
    texts = [" ".join(vocabulary[(i + j) % len(vocabulary)] for j in range(words)) for i in range(inputs)]
    data = {"model": EMBEDDING_MODEL, "input": texts, "encoding_format": "base64"}
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
CHAT_SCENARIOS = list(SCENARIOS)
MESSAGES_SCENARIOS = {
    "messages": Scenario("messages", "/v1/messages on glm-4.5-air (translated), non-streaming", False,
                         _messages_body("Say hello in one short sentence.", MODEL), path=MESSAGES_PATH),
    "messages20": Scenario("messages20", "/v1/messages on glm-4.5-air (translated), streaming, 20 chunks", True,
                           _messages_body("Count to twenty.", MODEL, stream=True, x_sim=STREAM_20),
                           path=MESSAGES_PATH),
    "claude": Scenario("claude", f"/v1/messages on {CLAUDE} (native), non-streaming", False,
                       _messages_body("Say hello in one short sentence.", CLAUDE), path=MESSAGES_PATH),
    "claude20": Scenario("claude20", f"/v1/messages on {CLAUDE} (native), streaming, 20 chunks", True,
                         _messages_body("Count to twenty.", CLAUDE, stream=True, x_sim=STREAM_20),
                         path=MESSAGES_PATH),
}
SCENARIOS.update(MESSAGES_SCENARIOS)
RESPONSES_SCENARIOS = {  # store: false, so that both sides do the same work (a stored response is one more row)
    "responses": Scenario("responses", "/v1/responses on glm-4.5-air (translated), non-streaming", False,
                          _responses_body("Say hello in one short sentence."), path=RESPONSES_PATH),
    "responses20": Scenario("responses20", "/v1/responses on glm-4.5-air (translated), streaming, 20 chunks", True,
                            _responses_body("Count to twenty.", stream=True, x_sim=STREAM_20), path=RESPONSES_PATH),
}
SCENARIOS.update(RESPONSES_SCENARIOS)
ANTHROPIC_CHAT_SCENARIOS = {  # chat completions translated onto an Anthropic-protocol upstream
    "chatclaude": Scenario("chatclaude", f"/v1/chat/completions on {CLAUDE} (translated to Messages), non-streaming",
                           False, _body("Say hello in one short sentence.", model=CLAUDE)),
    "chatclaude20": Scenario("chatclaude20", f"/v1/chat/completions on {CLAUDE} (translated to Messages), "
                             "streaming, 20 chunks", True,
                             _body("Count to twenty.", stream=True, x_sim=STREAM_20, model=CLAUDE)),
}
SCENARIOS.update(ANTHROPIC_CHAT_SCENARIOS)
SCENARIOS["embeddings"] = Scenario("embeddings", f"/v1/embeddings on {EMBEDDING_MODEL}: 8 inputs of 64 words, "
                                   "base64, 1,536 dimensions", False, _embeddings_body(8, 64), path=EMBEDDINGS_PATH)
CHAT_TWIN = {"messages": "json", "messages20": "stream20", "claude": "json", "claude20": "stream20",
             "responses": "json", "responses20": "stream20", "chatclaude": "json", "chatclaude20": "stream20",
             "embeddings": "json"}
"""Each other endpoint's scenario → the chat scenario it is held to (issue 24 item 3: within 15 %)."""

# At c=16 each chat scenario is followed by the scenarios held to it (`CHAT_TWIN`): a twin is measured
# seconds, not minutes, before them, so a machine whose load drifts skews the comparison less.
_HELD_TO = {twin: [name for name, held in CHAT_TWIN.items() if held == twin] for twin in set(CHAT_TWIN.values())}
FULL_PLAN = ([(name, c) for name in CHAT_SCENARIOS for c in (1, 64)]
             + [(name, 16) for chat in CHAT_SCENARIOS for name in (chat, *_HELD_TO.get(chat, []))])
QUICK_PLAN = [("json", 1), ("json", 16), ("stream20", 16), ("prompt32k", 16), ("paced", 1), ("messages20", 16),
              ("responses", 16), ("responses20", 16)]
