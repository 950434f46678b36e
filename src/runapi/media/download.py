"""Copy a provider's media URL into the store: bounded in size and time, guarded against SSRF.

Provider result URLs expire (hours for Z.ai's), so the gateway keeps its own copy. The URL comes
from the provider's answer, not from a customer, but is still only fetched from globally routable
addresses (the webhook guard of `runapi.outbound.callback_guard`, with `[media] download_allow` as its
allow-list): the address checked is the one connected to, and each redirect (3 at most) is checked
again.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING
from urllib.parse import urljoin

from runapi.errors import UpstreamError, UpstreamTimeout
from runapi.outbound.callback_guard import CallbackGuard, CallbackRefused

from .backend import CHUNK_BYTES
from .store import MediaStore, MediaTooLarge, StoredMedia

if TYPE_CHECKING:
    import aiohttp

__all__ = ["MediaDownloadFailed", "MediaDownloader", "download_guard"]

MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class MediaDownloadFailed(UpstreamError):
    """The provider's media could not be copied into the store (the generation failed)."""

    code = "media_download_failed"


def download_guard(allow: tuple[str, ...]) -> CallbackGuard:
    """The SSRF guard for provider media URLs."""
    return CallbackGuard(allow, field="media url", allow_setting="[media] download_allow",
                         purpose="Provider media is only downloaded from")


class MediaDownloader:
    """Copies URLs into a store over one pooled, guarded HTTP session (open it with `start`)."""

    def __init__(self, store: MediaStore, guard: CallbackGuard, timeout: float) -> None:
        self._store = store
        self._guard = guard
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Nothing to open yet: the first `copy` opens the session (aiohttp stays out of a process that
        copies no media)."""

    def _open_session(self) -> aiohttp.ClientSession:
        import aiohttp

        from runapi.outbound.guarded_resolver import GuardedResolver

        connector = aiohttp.TCPConnector(resolver=GuardedResolver(self._guard), use_dns_cache=False, limit=32)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def copy(self, url: str, content_type: str = "") -> StoredMedia:
        """Download `url` whole into the store and answer what was stored.

        `content_type` is used when the response names none (or only `application/octet-stream`).
        Raises `MediaDownloadFailed` (refused address, HTTP error, too large) or `UpstreamTimeout`.
        """
        import aiohttp

        session = self._session or self._open_session()
        try:
            async with asyncio.timeout(self._timeout):
                return await self._copy(session, url, content_type)
        except TimeoutError:
            raise UpstreamTimeout(f"Copying the provider's media took longer than {self._timeout:g} s.") from None
        except CallbackRefused as exc:
            raise MediaDownloadFailed(exc.message) from None
        except MediaTooLarge as exc:
            raise MediaDownloadFailed(f"The provider's media is too large: {exc}.") from None
        except aiohttp.ClientError as exc:
            raise MediaDownloadFailed(f"The provider's media could not be downloaded: {exc}.") from None

    async def _copy(self, session: aiohttp.ClientSession, url: str, content_type: str) -> StoredMedia:
        for _ in range(MAX_REDIRECTS + 1):
            await self._guard.check(url)  # literal addresses never reach the resolver
            async with session.get(url, allow_redirects=False) as response:
                if response.status in _REDIRECTS and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status != 200:
                    raise MediaDownloadFailed(f"The provider's media URL answered HTTP {response.status}"
                                              f"{' (it may have expired)' if response.status in (403, 404, 410) else ''}.")
                if (response.content_length or 0) > self._store.max_bytes:
                    raise MediaTooLarge(f"{response.content_length} bytes, more than the store's "
                                        f"{self._store.max_bytes}-byte limit")
                kind = response.content_type
                if not kind or kind == "application/octet-stream":
                    kind = content_type or "application/octet-stream"
                return await self._store.put(response.content.iter_chunked(CHUNK_BYTES), kind)
        raise MediaDownloadFailed(f"The provider's media URL redirected more than {MAX_REDIRECTS} times.")
