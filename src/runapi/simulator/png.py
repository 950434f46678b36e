"""Small real PNG images, made in pure Python (zlib + struct) and deterministic per seed."""

from __future__ import annotations

import hashlib
import struct
import zlib

__all__ = ["MAX_SIDE", "png_size", "render_png"]

MAX_SIDE = 4096
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_BANDS = 8


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def render_png(seed: str, width: int, height: int) -> bytes:
    """An RGB PNG of `width` x `height` pixels: horizontal colour bands chosen by `seed`'s SHA-256.

    The same seed and size always give the same bytes. Raises `ValueError` for a side outside
    1..`MAX_SIDE`.
    """
    if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
        raise ValueError(f"size: each side must be from 1 to {MAX_SIDE} pixels")
    digest = hashlib.sha256(seed.encode()).digest()
    rows = [b"\x00" + digest[3 * band: 3 * band + 3] * width for band in range(_BANDS)]
    raw = b"".join(rows[min(_BANDS - 1, y * _BANDS // height)] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) read from a PNG's IHDR chunk; raises `ValueError` if `data` is not a PNG."""
    if data[:8] != _SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)
