"""The gateway's errors in Anthropic's words (pure), so Anthropic clients' own handling recognises them.

Claude Code, for one, tells errors apart by status and wording: a 404 `not_found_error` whose
message starts `model: ` is an unknown model (it offers its model picker), 529 or an
`overloaded_error` body is an overloaded server (it retries, then switches to its fallback model),
"prompt is too long" starts its compaction, "credit balance is too low" is a billing problem.
"""

from __future__ import annotations

from runapi.errors import (
    BudgetExceeded,
    GatewayError,
    InsufficientCredit,
    NotFound,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)

__all__ = ["ERROR_TYPES", "OVERLOADED", "anthropic_error", "error_type", "is_context_overflow"]

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 409: "invalid_request_error",
               413: "request_too_large", 415: "invalid_request_error", 429: "rate_limit_error",
               503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error"}
"""HTTP status → Anthropic error `type` (any other 4xx: `invalid_request_error`, anything else: `api_error`)."""


def _type_of(status: int) -> str:
    return ERROR_TYPES.get(status, "invalid_request_error" if 400 <= status < 500 else "api_error")

OVERLOADED = 529
"""Anthropic's status for an overloaded API: the gateway's when no deployment could answer."""

_CONTEXT_OVERFLOW = ("prompt is too long", "context length", "context_length", "context window", "maximum context",
                     "too many tokens", "exceeds max length", "prompt exceeds", "input is too long",
                     "exceed context limit", "exceeds the context")


def is_context_overflow(message: str) -> bool:
    """Whether an upstream's refusal says the prompt does not fit the model's context (any provider's words)."""
    text = message.lower()
    return any(words in text for words in _CONTEXT_OVERFLOW)


def anthropic_error(error: GatewayError, status: int, message: str, model: str | None = None) -> tuple[int, str, str]:
    """(status, Anthropic error type, message) for a gateway error already rendered as `status` and `message`."""
    if isinstance(error, NotFound) and error.code == "model_not_found" and model:
        message = f"model: {model}"  # Anthropic's wording for an unknown model
    elif isinstance(error, InsufficientCredit) and not isinstance(error, BudgetExceeded):
        message = f"Your credit balance is too low for this call. {message}"
    elif isinstance(error, UpstreamUnavailable):
        status = OVERLOADED
    elif isinstance(error, UpstreamRejected) and is_context_overflow(message) \
            and not message.lower().startswith("prompt is too long"):
        message = f"prompt is too long: {message}"
    elif isinstance(error, UpstreamTimeout):
        status = 504
    return status, _type_of(status), message


def error_type(error: BaseException) -> str:
    """The Anthropic error `type` of an error sent as an SSE `error` event (its status is never sent)."""
    if isinstance(error, UpstreamUnavailable):
        return ERROR_TYPES[OVERLOADED]
    return _type_of(error.status) if isinstance(error, GatewayError) else "api_error"
