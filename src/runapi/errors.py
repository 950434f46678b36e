"""One error tree for the whole gateway, rendered to HTTP in one place (`runapi.http.errors`).

    GatewayError
    ├── InvalidRequest          400 invalid_request_error
    │   └── PayloadTooLarge     413
    ├── AuthError               401 authentication_error
    ├── PermissionDenied        403 permission_error
    ├── NotFound                404 not_found_error
    ├── Conflict                409
    ├── InsufficientCredit      402 insufficient_quota
    │   └── BudgetExceeded      402 (a spend cap; the code names which one)
    ├── RateLimited             429 rate_limit_error (carries retry_after)
    ├── ServiceUnavailable      503 server_error (the database or Redis is unreachable; retry shortly)
    └── UpstreamError           502 upstream_error
        ├── UpstreamTimeout     504
        ├── UpstreamRejected    4xx (the provider refused the request itself; its status passes through)
        └── UpstreamUnavailable 503 (connect errors, 429, 5xx, open circuit)

Messages never contain secrets: adapters pass only the provider's own error text.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, object]:
        return {"error": self.error_body()}

    def error_body(self) -> dict[str, Any]:
        """The `error` object of the OpenAI-shaped body: message, type, param, code."""
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}


class InvalidRequest(GatewayError):
    status = 400
    type = "invalid_request_error"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "payload_too_large"


class AuthError(GatewayError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(GatewayError):
    status = 403
    type = "permission_error"


class NotFound(GatewayError):
    status = 404
    type = "not_found_error"


class Conflict(GatewayError):
    status = 409
    type = "invalid_request_error"
    code = "conflict"


class InsufficientCredit(GatewayError):
    status = 402
    type = "insufficient_quota"
    code = "insufficient_quota"


class BudgetExceeded(InsufficientCredit):
    """A spend cap (a key's lifetime or monthly cap, or the tier's monthly cap) would be passed."""

    code = "spend_cap_exceeded"


class RateLimited(GatewayError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
        self.headers = headers or {}  # x-ratelimit-* state at refusal


class ServiceUnavailable(GatewayError):
    """A store the call needs (the database, Redis) is unreachable: nothing was charged; retry shortly."""

    status = 503
    code = "service_unavailable"
    retry_after = 1.0


class UpstreamError(GatewayError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"
    retryable = True


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class UpstreamRejected(UpstreamError):
    """The provider refused the request itself (its 4xx): the client's status and message pass through."""

    status = 400
    type = "invalid_request_error"
    code = "upstream_rejected"
    retryable = False

    def __init__(self, message: str, *, upstream_status: int = 400, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
        self.upstream_status = upstream_status
        self.status = upstream_status if 400 <= upstream_status < 500 else 502


class UpstreamUnavailable(UpstreamError):
    status = 503
    code = "upstream_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
