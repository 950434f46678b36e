"""Signed, expiring output URLs: `/v1/outputs/{task_id}?expires=<unix>&signature=<HMAC>`, and the
media store's `/v1/media/{key}?expires=<unix>&signature=<HMAC>`.

The signature is HMAC-SHA256 over `"{task_id}.{expires}"` (`"media/{key}.{expires}"` for media,
so neither kind of signature is valid for the other) with the server's output secret
(`RUNAPI_OUTPUT_SECRET`, or one generated once and shared by every instance through the
database), base64url without padding. Anyone holding the URL may fetch the output until it
expires, without an API key; changing the ID or the expiry breaks the signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from runapi.clock import utcnow
from runapi.errors import GatewayError, PermissionDenied
from runapi.storage import server_secrets

SECRET_NAME = "output_url"


class OutputExpired(GatewayError):
    status = 410
    type = "invalid_request_error"
    code = "output_expired"


class OutputSigner:
    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def signature(self, task_id: str, expires: int) -> str:
        digest = hmac.new(self._key, f"{task_id}.{expires}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def url(self, base_url: str, task_id: str, expires_at: datetime) -> str:
        expires = int(expires_at.timestamp())
        query = urlencode({"expires": expires, "signature": self.signature(task_id, expires)})
        return f"{base_url.rstrip('/')}/v1/outputs/{task_id}?{query}"

    def media_url(self, base_url: str, key: str, expires: int) -> str:
        """The signed URL of a media store object, valid until `expires` (Unix seconds)."""
        query = urlencode({"expires": expires, "signature": self.signature(f"media/{key}", expires)})
        return f"{base_url.rstrip('/')}/v1/media/{key}?{query}"

    def verify(self, task_id: str, expires: int | None, signature: str | None, now: float) -> None:
        """Raise `PermissionDenied` (403) for a missing or wrong signature, `OutputExpired` (410) after expiry.
        The edge parses `expires` (a malformed one is its 400)."""
        self._verify(task_id, expires, signature, now, "output URL",
                     "This output URL has expired, and the output is no longer kept.")

    def verify_media(self, key: str, expires: int | None, signature: str | None, now: float,
                     expired_message: str) -> None:
        """`verify` for a media URL; `expired_message` is the 410's message."""
        self._verify(f"media/{key}", expires, signature, now, "media URL", expired_message)

    def _verify(self, subject: str, expires: int | None, signature: str | None, now: float, kind: str,
                expired_message: str) -> None:
        if expires is None or not signature:
            raise PermissionDenied(f"This {kind} is not signed: use the URL as given.", code="invalid_signature")
        if not hmac.compare_digest(self.signature(subject, expires).encode(), signature.encode()):
            raise PermissionDenied(f"The {kind}'s signature does not match.", code="invalid_signature")
        if expires <= now:
            raise OutputExpired(expired_message)


async def output_secret(engine: AsyncEngine, configured: str) -> str:
    """The configured secret, else the one stored in the database (generated on first start)."""
    if configured:
        return configured
    query = sa.select(server_secrets.c.value).where(server_secrets.c.name == SECRET_NAME)
    async with engine.connect() as conn:
        value = (await conn.execute(query)).scalar()
    if value is not None:
        return str(value)
    try:
        async with engine.begin() as conn:
            value = secrets.token_urlsafe(32)
            await conn.execute(server_secrets.insert().values(name=SECRET_NAME, value=value, created_at=utcnow()))
            return value
    except IntegrityError:  # another instance generated it first
        return await output_secret(engine, configured)
