"""HTTP `Range` requests on stored media (RFC 9110 section 14), as pure functions."""

from __future__ import annotations

import re

import msgspec

__all__ = ["ByteRange", "RangeNotSatisfiable", "parse_range"]

_SINGLE = re.compile(r"^bytes=([0-9]{0,18})-([0-9]{0,18})$")


class ByteRange(msgspec.Struct, frozen=True):
    """Bytes `start` (inclusive) to `end` (exclusive) of an object of `size` bytes."""

    start: int
    end: int
    size: int

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end - 1}/{self.size}"


class RangeNotSatisfiable(Exception):
    """No byte of the range lies inside the object (answered 416 with `Content-Range: bytes */size`)."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range a `Range` header asks of an object of `size` bytes, or None for the whole.

    A missing, malformed or multi-range header is ignored (the whole object is sent, as RFC 9110
    allows); a range that starts past the end raises `RangeNotSatisfiable`.
    """
    match = _SINGLE.match((header or "").replace(" ", ""))
    if match is None or match[1] == match[2] == "":
        return None
    if size == 0:
        raise RangeNotSatisfiable
    first, last = match[1], match[2]
    if first == "":  # a suffix: the last N bytes
        length = int(last)
        if length == 0:
            raise RangeNotSatisfiable
        return ByteRange(max(0, size - length), size, size)
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if last != "" and int(last) < start:
        return None  # an invalid range: ignored
    if start >= size:
        raise RangeNotSatisfiable
    return ByteRange(start, end, size)
