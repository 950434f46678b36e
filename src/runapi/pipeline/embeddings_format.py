"""Embeddings values, pure: the input's token bound for the hold, and vectors in the encoding asked for.

The hold bound: an input string of B UTF-8 bytes is at most B tokens for the byte-level BPE tokenizers of
OpenAI and GLM (every token covers at least one byte), plus a few special tokens each input may get; a
token array is its length. `encoding_format` "base64" is little-endian float32 bytes, base64-encoded
(what the openai SDKs ask for by default and decode); "float" (OpenAI's default) is a list of numbers.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

import msgspec

SPECIAL_TOKENS_PER_INPUT = 4


def _items(value: Any) -> list[Any]:
    """The inputs of an `input` field that passed the model's schema (a string, or a list of them)."""
    if isinstance(value, list) and value and isinstance(value[0], (str, list)):
        return value
    return [value]


def input_token_bound(value: Any) -> int:
    """The most input tokens `input` can count as (schema-checked: strings or token-id arrays)."""
    total = 0
    for item in _items(value):
        size = len(item.encode()) if isinstance(item, str) else len(item)
        total += size + SPECIAL_TOKENS_PER_INPUT
    return total


def input_token_estimate(value: Any) -> int:
    """The documented estimate when the upstream reports no usage: UTF-8 bytes / 3 per string (rounded
    up), the length of a token array."""
    return sum((len(item.encode()) + 2) // 3 if isinstance(item, str) else len(item) for item in _items(value))


def encode_vector(vector: Any, encoding: str) -> Any:
    """`vector` (a list of numbers, or base64 of float32) in `encoding` ("float" or "base64"). Raises
    `TypeError`, `ValueError` or `struct.error` (`binascii.Error`) for anything else."""
    if not isinstance(vector, (list, str)):
        raise TypeError("an embedding is a list of numbers or a base64 string")
    if encoding == "base64":
        if isinstance(vector, str):
            return vector
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    if isinstance(vector, str):
        raw = base64.b64decode(vector)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return vector


def relay_vector(vector: msgspec.Raw, encoding: str) -> Any:
    """An upstream's undecoded vector in `encoding`: relayed as its bytes when already in it (JSON text
    for base64, an array for float), else decoded and converted by `encode_vector` (which raises for a
    vector that is neither; so does this, for JSON that is neither a string nor an array)."""
    first = bytes(memoryview(vector)[:1])
    if first == (b'"' if encoding == "base64" else b"["):
        return vector
    if first not in (b'"', b"["):
        raise TypeError("an embedding is a list of numbers or a base64 string")
    return encode_vector(msgspec.json.decode(vector), encoding)
