"""Embeddings values, pure: an upstream's undecoded vector relayed in the encoding the client asked for."""

from __future__ import annotations

import base64
import struct

import msgspec
import pytest

from runapi.pipeline.embeddings_format import relay_vector

VALUES = [0.5, -0.25, 1.0]
AS_FLOATS = msgspec.Raw(msgspec.json.encode(VALUES))
AS_BASE64 = msgspec.Raw(msgspec.json.encode(base64.b64encode(struct.pack("<3f", *VALUES)).decode()))


def test_a_vector_already_in_the_encoding_is_relayed_as_its_bytes() -> None:
    assert relay_vector(AS_BASE64, "base64") is AS_BASE64
    assert relay_vector(AS_FLOATS, "float") is AS_FLOATS


def test_a_vector_in_the_other_encoding_is_converted() -> None:
    assert relay_vector(AS_FLOATS, "base64") == msgspec.json.decode(AS_BASE64)
    assert relay_vector(AS_BASE64, "float") == VALUES


@pytest.mark.parametrize("sent", [b"null", b"3", b'{"a": 1}', b"true"])
@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_a_vector_that_is_neither_a_list_nor_base64_text_is_refused(sent: bytes, encoding: str) -> None:
    with pytest.raises(TypeError):
        relay_vector(msgspec.Raw(sent), encoding)
