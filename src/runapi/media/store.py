"""The media store: generated images and videos kept for a retention, behind one small interface.

`put` takes bytes or an async stream, bounded by `max_bytes`, and answers the object's key and
the time its retention ends. Objects are read by range and deleted by key; `purge` removes every
object whose retention ended (by listing the backend's purge groups, see `keys`). Signed URLs
are the runtime's concern (`runtime.MediaRuntime`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Callable

import msgspec

from .backend import CHUNK_BYTES, MediaBackend
from .keys import content_type_of, is_media_key, new_media_key, purge_after

__all__ = ["MediaStore", "MediaTooLarge", "StoredMedia"]

_PARTIAL_WRITE_AGE = 86400.0  # a write still unfinished after a day was cut short by a crash


class StoredMedia(msgspec.Struct, frozen=True):
    """An object just stored: `expires` is when its retention ends (Unix seconds)."""

    key: str
    size: int
    content_type: str
    expires: int


class MediaTooLarge(Exception):
    """The bytes offered to `put` passed the store's `max_bytes`; nothing was stored."""


class MediaStore:
    """Keeps media in a backend for `retention` seconds; each object at most `max_bytes`."""

    def __init__(self, backend: MediaBackend, retention: float, max_bytes: int,
                 clock: Callable[[], float] = time.time) -> None:
        self.backend = backend
        self.retention = retention
        self.max_bytes = max_bytes
        self._clock = clock

    async def put(self, data: bytes | AsyncIterable[bytes], content_type: str) -> StoredMedia:
        """Store `data` whole (atomically) under a new key.

        Raises `MediaTooLarge` (nothing stored) when it passes `max_bytes`; a stream's own errors
        propagate, with nothing stored either.
        """
        now = self._clock()
        expires = int(now + self.retention)
        key = new_media_key(content_type, expires)
        counted = _Counted(_chunks(data), self.max_bytes)
        await self.backend.write(key, counted, content_type_of(key))
        return StoredMedia(key=key, size=counted.total, content_type=content_type_of(key), expires=expires)

    async def size(self, key: str) -> int | None:
        """The size of a kept object, or None when the key is unknown, malformed or past its retention."""
        if not is_media_key(key) or self.expired(key):
            return None
        return await self.backend.size(key)

    def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `start` to `end` (exclusive) of an object `size` found."""
        return self.backend.read(key, start, end)

    async def get(self, key: str) -> bytes | None:
        """A whole object, or None (see `size`)."""
        size = await self.size(key)
        if size is None:
            return None
        return b"".join([chunk async for chunk in self.read(key, 0, size)])

    async def delete(self, key: str) -> None:
        if is_media_key(key):
            await self.backend.delete(key)

    def expired(self, key: str) -> bool:
        """Whether the retention of the object `key` names has ended."""
        return purge_after(key.split("/", 1)[0]) <= self._clock()

    async def purge(self) -> int:
        """Delete every object whose retention ended, and partial writes a day old; the number deleted."""
        now = self._clock()
        removed = await self.backend.sweep(now - _PARTIAL_WRITE_AGE)
        for group in await self.backend.groups():
            try:
                due = purge_after(group) <= now
            except ValueError:
                continue  # not ours: left alone
            if due:
                removed += await self.backend.delete_group(group)
        return removed


async def _chunks(data: bytes | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(data, bytes):
        for start in range(0, len(data), CHUNK_BYTES):
            yield data[start:start + CHUNK_BYTES]
        return
    async for chunk in data:
        if chunk:
            yield chunk


class _Counted:
    """An async iterator over chunks that raises `MediaTooLarge` once they pass `limit` bytes."""

    def __init__(self, chunks: AsyncIterator[bytes], limit: int) -> None:
        self._chunks = chunks
        self._limit = limit
        self.total = 0

    def __aiter__(self) -> _Counted:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._chunks.__anext__()
        self.total += len(chunk)
        if self.total > self._limit:
            raise MediaTooLarge(f"the media is larger than the store's {self._limit}-byte limit")
        return chunk
