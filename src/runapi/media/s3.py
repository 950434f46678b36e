"""The media store on an S3-compatible object store, through obstore (Rust's `object_store`, async).

Objects are written with one `PUT` or a multipart upload, which S3 makes visible only once
complete: readers see the whole object or nothing. Ranges are read as streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING

import obstore
from obstore.store import S3Store

from .backend import CHUNK_BYTES
from runapi.media_location import S3Location

if TYPE_CHECKING:
    from obstore.store import S3Config

__all__ = ["S3Backend"]


class S3Backend:
    """Media in a bucket (under a prefix), one key prefix per purge group."""

    def __init__(self, location: S3Location, access_key: str, secret_key: str, timeout: float) -> None:
        config: S3Config = {"region": location.region, "virtual_hosted_style_request": location.virtual_hosted}
        if location.endpoint:
            config["endpoint"] = location.endpoint
        if access_key:  # else obstore's default chain (instance or container credentials)
            config["access_key_id"], config["secret_access_key"] = access_key, secret_key
        self._store = S3Store(
            location.bucket, prefix=location.prefix or None, config=config,
            client_options={"allow_http": location.endpoint.startswith("http://"), "timeout": f"{timeout:g}s",
                            "connect_timeout": "10s"},
        )
        self.description = location.display()

    async def write(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> None:
        await obstore.put_async(self._store, key, chunks, attributes={"Content-Type": content_type})

    async def size(self, key: str) -> int | None:
        try:
            return int((await obstore.head_async(self._store, key))["size"])
        except FileNotFoundError:
            return None

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        if end <= start:
            return
        try:
            result = await obstore.get_async(self._store, key, options={"range": (start, end)})
        except FileNotFoundError:
            return  # deleted since `size`: the response ends short, and the client sees it
        async for chunk in result.stream(min_chunk_size=CHUNK_BYTES):
            yield bytes(chunk)

    async def delete(self, key: str) -> None:
        await obstore.delete_async(self._store, key)

    async def groups(self) -> list[str]:
        listing = await obstore.list_with_delimiter_async(self._store)
        return sorted(prefix.rstrip("/") for prefix in listing["common_prefixes"])

    async def delete_group(self, group: str) -> int:
        paths = [meta["path"] async for batch in obstore.list(self._store, group) for meta in batch]
        for start in range(0, len(paths), 1000):  # S3's DeleteObjects takes 1000 keys at most
            await obstore.delete_async(self._store, paths[start:start + 1000])
        return len(paths)

    async def sweep(self, older_than: float) -> int:
        # Parts of an interrupted multipart upload are invisible and not listed by obstore: a bucket
        # lifecycle rule (AbortIncompleteMultipartUpload) removes them (see docs/media.md).
        return 0

    async def close(self) -> None:
        pass
