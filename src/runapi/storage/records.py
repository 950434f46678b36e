"""Plain records that the stores return and accept."""

from __future__ import annotations

from datetime import datetime

import msgspec


class Account(msgspec.Struct, frozen=True):
    id: str
    name: str
    tier: str
    created_at: datetime
    tier_pinned: bool = False  # set by an operator: automatic promotion leaves the tier alone


class KeyLimits(msgspec.Struct, frozen=True, omit_defaults=True):
    """A key's own limits, each narrower than its account's tier; None means "the tier decides"."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None
    spend_cap_nanos: int | None = None  # lifetime
    monthly_spend_cap_nanos: int | None = None  # calendar month, UTC
    allowed_models: tuple[str, ...] | None = None  # public model IDs


class ApiKey(msgspec.Struct, frozen=True):
    """A key as stored: never the secret, only its hash and a display prefix."""

    id: str
    account_id: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    limits: KeyLimits = KeyLimits()

    def usable(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class LedgerEntry(msgspec.Struct, frozen=True):
    id: int
    account_id: str
    kind: str
    amount_nanos: int
    generation_id: str | None
    note: str
    created_at: datetime


class Generation(msgspec.Struct, frozen=True):
    """One call through the gateway. `cost_nanos` is its exact cost, reproducible from the rest; its ledger
    charge equals it, except when a call that cost more than its hold found too little free balance."""

    id: str
    account_id: str
    key_id: str
    model: str
    provider: str
    upstream_model: str
    status: str
    stream: bool
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    price_input: str
    price_output: str
    price_cache_read: str
    price_cache_write: str
    cost_nanos: int
    estimated: bool
    latency_ms: float
    created_at: datetime
    ttft_ms: float | None = None
    overhead_ms: float | None = None
    error: str | None = None
    client_request_id: str | None = None
    unit: str = "tokens"  # the billing unit: tokens, or image / video / second for media calls
    units: int = 0  # media calls: images, videos or seconds billed (cost = units × price_unit)
    price_unit: str = "0"  # media calls: USD per unit, exact decimal string
