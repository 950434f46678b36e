"""Media keys: where an object lives, what it holds and when it may be deleted, in one string.

A key is `"{YYYYmmddTHHMM}Z/{token}.{ext}"`: the UTC minute from which the object may be
purged (its retention, rounded up to the minute), a random token, and an extension that names its
content type. Keeping both in the key lets every backend purge by listing alone and serve the
right `Content-Type` without a metadata read.
"""

from __future__ import annotations

import math
import re
import secrets
from datetime import UTC, datetime

__all__ = ["CONTENT_TYPES", "content_type_of", "extension_for", "is_media_key", "key_group", "new_media_key",
           "purge_after"]

CONTENT_TYPES: dict[str, str] = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "mp4": "video/mp4",
    "webm": "video/webm",
    "mov": "video/quicktime",
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "json": "application/json",
    "bin": "application/octet-stream",
}
"""Extension → content type of what the store keeps; anything else is kept as `bin`."""
_EXTENSIONS = {value: key for key, value in CONTENT_TYPES.items()} | {"image/jpg": "jpg", "audio/mp3": "mp3"}
_GROUP_FORMAT = "%Y%m%dT%H%MZ"
_KEY = re.compile(r"^(?P<group>[0-9]{8}T[0-9]{4}Z)/[A-Za-z0-9_-]{16,64}\.(?P<ext>[a-z0-9]{1,5})$")


def extension_for(content_type: str) -> str:
    """The extension a content type is stored under (parameters such as `; charset` ignored)."""
    return _EXTENSIONS.get(content_type.split(";", 1)[0].strip().lower(), "bin")


def new_media_key(content_type: str, purge_at: float) -> str:
    """A fresh key for an object of `content_type` that may be purged from `purge_at` (Unix seconds) on."""
    minute = datetime.fromtimestamp(math.ceil(purge_at / 60) * 60, UTC)
    return f"{minute.strftime(_GROUP_FORMAT)}/{secrets.token_urlsafe(18)}.{extension_for(content_type)}"


def is_media_key(key: str) -> bool:
    """Whether `key` has the shape `new_media_key` makes (no path tricks, a known extension)."""
    match = _KEY.match(key)
    return match is not None and match["ext"] in CONTENT_TYPES


def content_type_of(key: str) -> str:
    """The content type a key's extension names."""
    return CONTENT_TYPES.get(key.rsplit(".", 1)[-1], "application/octet-stream")


def key_group(key: str) -> str:
    """The purge group (the minute directory) of a key."""
    return key.split("/", 1)[0]


def purge_after(group: str) -> float:
    """Unix seconds from which the objects of a group may be purged; raises `ValueError` for a foreign name."""
    return datetime.strptime(group, _GROUP_FORMAT).replace(tzinfo=UTC).timestamp()
