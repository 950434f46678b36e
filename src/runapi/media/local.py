"""The media store's embedded default: a local directory, written atomically.

An object is written to `{root}/.incoming/` and renamed into `{root}/{group}/` once complete and
flushed to disk, so a reader or a crash never sees half a file. File I/O runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import BinaryIO

from .backend import CHUNK_BYTES

__all__ = ["LocalBackend"]

_INCOMING = ".incoming"


class LocalBackend:
    """Media in a directory tree, one sub-directory per purge group."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = f"local directory {root}"
        (root / _INCOMING).mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / key

    async def write(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> None:
        partial = self.root / _INCOMING / secrets.token_hex(12)
        handle: BinaryIO = await asyncio.to_thread(partial.open, "wb")
        try:
            async for chunk in chunks:
                await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(_flush, handle)
            handle.close()
            target = self._path(key)
            await asyncio.to_thread(target.parent.mkdir, exist_ok=True)
            await asyncio.to_thread(os.replace, partial, target)
        except BaseException:
            handle.close()
            with contextlib.suppress(OSError):
                partial.unlink()
            raise

    async def size(self, key: str) -> int | None:
        try:
            return (await asyncio.to_thread(self._path(key).stat)).st_size
        except FileNotFoundError:
            return None

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        try:
            handle: BinaryIO = await asyncio.to_thread(self._path(key).open, "rb")
        except FileNotFoundError:
            return  # deleted since `size`: the response ends short, and the client sees it
        try:
            await asyncio.to_thread(handle.seek, start)
            left = end - start
            while left > 0:
                chunk = await asyncio.to_thread(handle.read, min(CHUNK_BYTES, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(self._path(key).unlink)

    async def groups(self) -> list[str]:
        names = await asyncio.to_thread(os.listdir, self.root)
        return sorted(name for name in names if name != _INCOMING and (self.root / name).is_dir())

    async def delete_group(self, group: str) -> int:
        directory = self.root / group
        try:
            count = len(await asyncio.to_thread(os.listdir, directory))
        except FileNotFoundError:
            return 0
        await asyncio.to_thread(shutil.rmtree, directory, True)
        return count

    async def sweep(self, older_than: float) -> int:
        return await asyncio.to_thread(_sweep, self.root / _INCOMING, older_than)

    async def close(self) -> None:
        pass


def _sweep(directory: Path, older_than: float) -> int:
    removed = 0
    for entry in os.scandir(directory):
        with contextlib.suppress(FileNotFoundError):
            if entry.stat().st_mtime < older_than:
                os.unlink(entry.path)
                removed += 1
    return removed


def _flush(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())
