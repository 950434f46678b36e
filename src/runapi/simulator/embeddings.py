"""Embeddings as the development simulator answers them, in OpenAI's and Z.ai's wire shapes (pure).

A vector is a function of the input alone (its text, or its token ids) and the requested
dimension: SHA-256 in counter mode gives the components, scaled to unit length. Usage follows
the simulator's token rules: a text counts its words, a token array its length.

OpenAI `POST /v1/embeddings` (openai-python `types/embedding_create_params.py`,
`create_embedding_response.py`): `encoding_format` "float" (a list of numbers) or "base64"
(little-endian float32 bytes, base64-encoded; the SDK asks for this by default), `dimensions`,
usage `{prompt_tokens, total_tokens}`. Z.ai `POST /paas/v4/embeddings`
(https://docs.bigmodel.cn/api-reference/模型-api/文本嵌入): floats, usage adds
`completion_tokens: 0`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
import struct
from typing import Any, Literal

import msgspec

from .tokens import count_words

__all__ = ["DEFAULT_DIMENSIONS", "MAX_DIMENSIONS", "EmbeddingsCall", "embedding_vector", "embeddings_body",
           "parse_embeddings"]

Shape = Literal["openai", "zai"]
DEFAULT_DIMENSIONS: dict[Shape, int] = {"openai": 1536, "zai": 2048}
"""Dimension when the request names none: text-embedding-3-small's 1536; Z.ai embedding-3's 2048."""
MAX_DIMENSIONS = 8192
_encode = msgspec.json.Encoder().encode
# Vectors kept, by input and dimension: SHA-256 in counter mode costs ~0.2 ms a 1,536-dimension vector, which
# made the simulator, not the gateway, the limit of the benchmark's embeddings cell (2 ms of CPU a request).
VECTORS_CACHED = 1024


class EmbeddingsCall(msgspec.Struct, frozen=True):
    """A validated embeddings request: one entry per input, texts or token-id tuples."""

    model: str
    inputs: tuple[str | tuple[int, ...], ...]
    dimensions: int
    encoding_format: Literal["float", "base64"]


def parse_embeddings(raw: dict[str, Any], shape: Shape) -> EmbeddingsCall:
    """Validate an embeddings request body; raises `ValueError` naming the bad field."""
    value = raw.get("input")
    if isinstance(value, str):
        inputs: list[str | tuple[int, ...]] = [value]
    elif isinstance(value, list) and value and all(isinstance(item, int) for item in value):
        inputs = [tuple(value)]
    elif isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        inputs = list(value)
    elif isinstance(value, list) and value and all(
            isinstance(item, list) and item and all(isinstance(i, int) for i in item) for item in value):
        inputs = [tuple(item) for item in value]
    else:
        raise ValueError("input: expected a string, an array of strings, of token ids, or of token-id arrays")
    if any(item == "" or item == () for item in inputs):
        raise ValueError("input: an empty string or token array cannot be embedded")
    dimensions = raw.get("dimensions", DEFAULT_DIMENSIONS[shape])
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= MAX_DIMENSIONS:
        raise ValueError(f"dimensions: expected an integer from 1 to {MAX_DIMENSIONS}")
    encoding = raw.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise ValueError("encoding_format: expected 'float' or 'base64'")
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("model: expected a model name")
    return EmbeddingsCall(model=model, inputs=tuple(inputs), dimensions=dimensions, encoding_format=encoding)


def embedding_vector(item: str | tuple[int, ...], dimensions: int) -> list[float]:
    """The unit-length vector of one input: the same input and dimension always give the same vector."""
    return list(_unit_vector(item, dimensions))


@functools.lru_cache(maxsize=VECTORS_CACHED)
def _unit_vector(item: str | tuple[int, ...], dimensions: int) -> tuple[float, ...]:
    seed = hashlib.sha256(item.encode() if isinstance(item, str) else b"tokens:" + ",".join(map(str, item)).encode())
    words: list[int] = []
    counter = 0
    while len(words) < dimensions:
        block = hashlib.sha256(seed.digest() + counter.to_bytes(4, "big")).digest()
        words.extend(struct.unpack(">8I", block))
        counter += 1
    components = [word / 2**31 - 1.0 for word in words[:dimensions]]
    norm = math.sqrt(sum(c * c for c in components)) or 1.0
    return tuple(c / norm for c in components)


@functools.lru_cache(maxsize=VECTORS_CACHED)
def _base64_vector(item: str | tuple[int, ...], dimensions: int) -> str:
    """`embedding_vector` as little-endian float32 bytes, base64-encoded."""
    vector = _unit_vector(item, dimensions)
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def input_tokens(item: str | tuple[int, ...]) -> int:
    """Tokens one input counts: a text's words, a token array's length."""
    return count_words(item) if isinstance(item, str) else len(item)


def embeddings_body(call: EmbeddingsCall, shape: Shape) -> bytes:
    """The JSON answer to `call` in `shape` ("openai" honours base64; Z.ai always sends floats)."""
    data: list[dict[str, Any]] = []
    for index, item in enumerate(call.inputs):
        embedding: list[float] | str
        if shape == "openai" and call.encoding_format == "base64":
            embedding = _base64_vector(item, call.dimensions)
        else:
            embedding = embedding_vector(item, call.dimensions)
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    tokens = sum(input_tokens(item) for item in call.inputs)
    usage: dict[str, int] = {"prompt_tokens": tokens, "total_tokens": tokens}
    if shape == "zai":
        usage = {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}
    return _encode({"object": "list", "data": data, "model": call.model, "usage": usage})
