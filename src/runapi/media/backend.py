"""The protocol every media backend implements (a local directory, an S3-compatible store)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

__all__ = ["CHUNK_BYTES", "MediaBackend"]

CHUNK_BYTES = 256 * 1024
"""Bytes per chunk read from a backend."""


class MediaBackend(Protocol):
    """Keyed bytes: written whole and atomically, read by range, deleted by key or by purge group.

    Keys come from `runapi.media.keys` (validated before they reach a backend).
    """

    description: str
    """Where the objects live, for logs and `runapi` output (never a secret)."""

    async def write(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> None:
        """Store the chunks under `key`. Readers see the whole object or nothing; if `chunks` raises,
        nothing is stored and the exception propagates."""
        ...

    async def size(self, key: str) -> int | None:
        """The object's size in bytes, or None when there is no such object."""
        ...

    def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `start` (inclusive) to `end` (exclusive) of an object `size` said exists."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; a missing one is no error."""
        ...

    async def groups(self) -> list[str]:
        """The purge groups (first key segments) that hold objects."""
        ...

    async def delete_group(self, group: str) -> int:
        """Remove every object of a purge group; the number removed."""
        ...

    async def sweep(self, older_than: float) -> int:
        """Remove what writes interrupted by a crash left behind, if older than `older_than` (Unix
        seconds); the number removed."""
        ...

    async def close(self) -> None: ...
