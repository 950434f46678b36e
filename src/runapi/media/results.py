"""Provider media results turned into the gateway's own: each file copied into the store and
answered at a cached output URL, or as base64 when the client asked for it.

For the `/v1/images/generations` and video endpoints (built on top of this): an image the provider
failed to deliver (an expired or unreachable URL, bad base64) is dropped and counted in `failed`,
so it is not charged; when none is left, `MediaDownloadFailed` is raised and the generation fails.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import msgspec

from runapi.errors import UpstreamError

from .download import MediaDownloader, MediaDownloadFailed
from .store import MediaStore, MediaTooLarge, StoredMedia

__all__ = ["KeptImages", "KeptVideo", "keep_images", "keep_video", "sniff_image_type"]

log = logging.getLogger("runapi.media")
Signer = Callable[[StoredMedia], str]
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
          (b"GIF89a", "image/gif"))


class KeptImages(msgspec.Struct, frozen=True):
    """OpenAI `data` entries for the images kept, what was stored, and how many images failed."""

    data: list[dict[str, str]]
    stored: list[StoredMedia]
    failed: int


class KeptVideo(msgspec.Struct, frozen=True):
    """A video kept in the store and its cover (None when the provider's cover could not be copied)."""

    video: StoredMedia
    cover: StoredMedia | None
    url: str
    cover_url: str | None


def sniff_image_type(data: bytes) -> str:
    """The image content type its first bytes show (PNG, JPEG, GIF, WebP), else application/octet-stream."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _MAGIC if data.startswith(magic)), "application/octet-stream")


async def keep_images(items: Sequence[Mapping[str, Any]], response_format: Literal["url", "b64_json"],
                      store: MediaStore, downloader: MediaDownloader, sign: Signer) -> KeptImages:
    """Store each provider image (`{"url"}` or `{"b64_json"}`, `revised_prompt` kept) and answer it
    as the client asked. Raises `MediaDownloadFailed` when no image could be kept."""
    data: list[dict[str, str]] = []
    stored: list[StoredMedia] = []
    failed = 0
    for item in items:
        try:
            kept, raw = await _keep_one(item, store, downloader)
        except (UpstreamError, MediaTooLarge, binascii.Error, ValueError) as exc:
            log.warning("a provider image could not be kept: %s", exc)
            failed += 1
            continue
        stored.append(kept)
        entry = {"url": sign(kept)} if response_format == "url" else {
            "b64_json": base64.b64encode(raw if raw is not None else await store.get(kept.key) or b"").decode()}
        if isinstance(item.get("revised_prompt"), str):
            entry["revised_prompt"] = item["revised_prompt"]
        data.append(entry)
    if not data:
        raise MediaDownloadFailed(f"None of the provider's {len(items)} image(s) could be kept.")
    return KeptImages(data=data, stored=stored, failed=failed)


async def _keep_one(item: Mapping[str, Any], store: MediaStore,
                    downloader: MediaDownloader) -> tuple[StoredMedia, bytes | None]:
    encoded, url = item.get("b64_json"), item.get("url")
    if isinstance(encoded, str) and encoded:
        raw = base64.b64decode(encoded, validate=True)
        return await store.put(raw, sniff_image_type(raw)), raw
    if isinstance(url, str) and url:
        return await downloader.copy(url, "image/png"), None
    raise ValueError("the provider's image has neither url nor b64_json")


async def keep_video(video_url: str, cover_url: str | None, downloader: MediaDownloader, sign: Signer) -> KeptVideo:
    """Copy a provider's video (required: its failure raises) and cover image (optional) into the store."""
    video = await downloader.copy(video_url, "video/mp4")
    cover: StoredMedia | None = None
    if cover_url:
        try:
            cover = await downloader.copy(cover_url, "image/png")
        except UpstreamError as exc:
            log.warning("a provider video cover could not be kept: %s", exc)
    return KeptVideo(video=video, cover=cover, url=sign(video), cover_url=None if cover is None else sign(cover))
