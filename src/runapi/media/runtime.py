"""The media store of one gateway process: its backend, signed URLs, downloads and retention purge.

Built from `Settings` in `create_app`, started after the gateway (the URL signing secret is the
output secret of `runapi.outbound.output_urls`, kept in the database and shared by every instance)
and stopped before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.config import Settings
from runapi.storage import sqlite_file
from runapi.outbound.output_urls import OutputSigner, output_secret

from .backend import MediaBackend
from .download import MediaDownloader, download_guard
from .local import LocalBackend
from runapi.media_location import LocalLocation, parse_media_url
from .store import MediaStore, StoredMedia

__all__ = ["MediaRuntime", "open_backend"]

log = logging.getLogger("runapi.media")


def open_backend(settings: Settings) -> MediaBackend:
    """The backend `[media] url` names (see `location`)."""
    location = parse_media_url(settings.media.url, sqlite_file(settings.database_url))
    if isinstance(location, LocalLocation):
        return LocalBackend(location.path)
    from .s3 import S3Backend  # obstore only where the media go to S3

    access, secret = settings.media_credentials
    return S3Backend(location, access, secret, settings.media.storage_timeout)


class MediaRuntime:
    """The process's media store; `store`, `downloader` and `url` work once `start` returned."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._store: MediaStore | None = None
        self._downloader: MediaDownloader | None = None
        self._signer: OutputSigner | None = None
        self._purger: asyncio.Task[None] | None = None

    async def start(self, engine: AsyncEngine) -> None:
        media = self.settings.media
        self._signer = OutputSigner(await output_secret(engine, self.settings.output_secret))
        self._store = MediaStore(open_backend(self.settings), media.retention, media.max_bytes)
        self._downloader = MediaDownloader(self._store, download_guard(media.download_allow), media.download_timeout)
        await self._downloader.start()
        self._purger = asyncio.get_running_loop().create_task(self._purge(), name="media-purger")
        try:  # a wrong bucket or credentials shows at start, not at the first generation
            await self._store.backend.groups()
            log.info("media store: %s, kept %g s", self._store.backend.description, media.retention)
        except Exception:
            log.exception("media store %s is not reachable (media generations will fail until it is)",
                          self._store.backend.description)

    async def stop(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        if self._downloader is not None:
            await self._downloader.close()
        if self._store is not None:
            await self._store.backend.close()

    @property
    def store(self) -> MediaStore:
        assert self._store is not None, "MediaRuntime.start() was not called"
        return self._store

    @property
    def downloader(self) -> MediaDownloader:
        assert self._downloader is not None, "MediaRuntime.start() was not called"
        return self._downloader

    @property
    def signer(self) -> OutputSigner:
        assert self._signer is not None, "MediaRuntime.start() was not called"
        return self._signer

    def url(self, base_url: str, stored: StoredMedia) -> str:
        """The signed cached output URL of a stored object, valid until its retention ends."""
        return self.signer.media_url(base_url, stored.key, stored.expires)

    async def _purge(self) -> None:
        while True:
            await asyncio.sleep(self.settings.media.purge_interval)
            try:
                started = time.monotonic()
                removed = await self.store.purge()
                if removed:
                    log.info("purged %d media objects past retention in %.2f s", removed, time.monotonic() - started)
            except Exception:
                log.warning("could not purge expired media", exc_info=True)
