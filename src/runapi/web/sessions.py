"""Dashboard sessions: HMAC-signed HttpOnly cookies with a CSRF token, and form bodies.

A cookie is `base64url(JSON payload) "." base64url(HMAC-SHA256(secret, payload))`; it is
signed, not encrypted, so it holds only IDs, an issue time and the CSRF token, never a key.
Every session (even an anonymous one, before sign-in) carries a random CSRF token that each
form echoes in a hidden field; a POST whose token does not match the cookie's is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from runapi.errors import InvalidRequest, PayloadTooLarge, PermissionDenied

SESSION_MAX_AGE_S = 12 * 3600
MAX_FORM_BYTES = 16 * 1024
CSRF_FIELD = "csrf_token"


def session_secret(env: Mapping[str, str], admin_token: str) -> bytes:
    """`RUNAPI_SESSION_SECRET` if set; else derived from the admin token (so the same on every
    worker and instance of one deployment); else random for this process."""
    configured = env.get("RUNAPI_SESSION_SECRET", "")
    if configured:
        return hashlib.sha256(configured.encode()).digest()
    if admin_token:
        return hmac.new(admin_token.encode(), b"runapi-session-secret", hashlib.sha256).digest()
    return os.urandom(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    """Signs and verifies one kind of session cookie (the purpose is part of the signature)."""

    def __init__(self, secret: bytes, purpose: str, max_age_s: int = SESSION_MAX_AGE_S) -> None:
        self._key = hmac.new(secret, purpose.encode(), hashlib.sha256).digest()
        self.max_age_s = max_age_s

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def dumps(self, data: dict[str, Any], now: float | None = None) -> str:
        payload = _b64(json.dumps({**data, "iat": int(now if now is not None else time.time())},
                                  separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}"

    def loads(self, cookie: str | None, now: float | None = None) -> dict[str, Any] | None:
        """The payload of a valid, unexpired cookie, else None."""
        if not cookie or "." not in cookie:
            return None
        payload, _, signature = cookie.partition(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        try:
            data = json.loads(_unb64(payload))
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("iat"), int):
            return None
        age = (now if now is not None else time.time()) - data["iat"]
        return data if 0 <= age <= self.max_age_s else None


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def set_session_cookie(response: Response, request: Request, name: str, value: str, path: str,
                       max_age: int = SESSION_MAX_AGE_S) -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def clear_session_cookie(response: Response, request: Request, name: str, path: str) -> None:
    response.delete_cookie(name, path=path, httponly=True, samesite="strict", secure=request.url.scheme == "https")


async def read_form(request: Request) -> dict[str, str]:
    """A small `application/x-www-form-urlencoded` body as a dict (last value wins).

    Any other body reads as an empty form, which the CSRF check then refuses.
    """
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise PayloadTooLarge("The form is too large.")
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidRequest("The form could not be read.") from exc


def check_csrf(form: Mapping[str, str], session: Mapping[str, Any] | None) -> None:
    """Refuse the POST unless its CSRF field matches the session's token."""
    expected = (session or {}).get("csrf")
    given = form.get(CSRF_FIELD, "")
    if not isinstance(expected, str) or not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise PermissionDenied("The form has expired or did not come from this site. Reload the page and try again.",
                               code="csrf_failed")
