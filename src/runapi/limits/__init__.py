"""Usage tiers, rate limits (in-process or Redis), concurrency and spend caps."""

from runapi.limits.control import (
    UNSET_MAX_TOKENS_ESTIMATE,
    Admission,
    Caller,
    LimitControl,
    create_limit_control,
)
from runapi.limits.memory import MemoryRateLimiter
from runapi.limits.promotion import pin_tier, promote_by_topups, topups_total
from runapi.limits.rates import (
    PERIOD_MS,
    Clock,
    Decision,
    Quota,
    RateLimiter,
    RateLimitStatus,
    Ticket,
)
from runapi.limits.redis_limiter import RedisRateLimiter
from runapi.limits.spend import Cap, SpendGuard
from runapi.limits.tiers import (
    DEFAULT_TIERS,
    TierOverride,
    TierSpec,
    TierTable,
    build_tiers,
)

__all__ = [
    "DEFAULT_TIERS",
    "PERIOD_MS",
    "UNSET_MAX_TOKENS_ESTIMATE",
    "Admission",
    "Caller",
    "Cap",
    "Clock",
    "Decision",
    "LimitControl",
    "MemoryRateLimiter",
    "Quota",
    "RateLimitStatus",
    "RateLimiter",
    "RedisRateLimiter",
    "SpendGuard",
    "Ticket",
    "TierOverride",
    "TierSpec",
    "TierTable",
    "build_tiers",
    "create_limit_control",
    "pin_tier",
    "promote_by_topups",
    "topups_total",
]
