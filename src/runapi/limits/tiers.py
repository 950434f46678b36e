"""Usage tiers: the limits an account gets, and the cumulative top-ups that earn each tier.

Like OpenAI's usage tiers, an account starts in `free` and is promoted (never demoted
automatically) once its cumulative paid top-ups reach a tier's `qualifying_topup_usd`.
An operator may pin a tier, which turns automatic promotion off for that account.
The config file's `[tiers.NAME]` tables override the shipped defaults field by field,
or add tiers (a new tier must give every field).
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from runapi.money import usd_to_nanos

DEFAULT_TIER = "free"


class TierSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One tier's limits. Rates are per minute; spend caps and thresholds are USD."""

    requests_per_minute: int
    tokens_per_minute: int
    concurrent_requests: int
    monthly_spend_cap_usd: Decimal
    qualifying_topup_usd: Decimal

    @property
    def monthly_spend_cap_nanos(self) -> int:
        return usd_to_nanos(self.monthly_spend_cap_usd)

    @property
    def qualifying_topup_nanos(self) -> int:
        return usd_to_nanos(self.qualifying_topup_usd)


class TierOverride(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A `[tiers.NAME]` table in the config file: any subset of `TierSpec`'s fields."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None
    monthly_spend_cap_usd: Decimal | None = None
    qualifying_topup_usd: Decimal | None = None


def _tier(rpm: int, tpm: int, concurrent: int, cap: str, topup: str) -> TierSpec:
    return TierSpec(requests_per_minute=rpm, tokens_per_minute=tpm, concurrent_requests=concurrent,
                    monthly_spend_cap_usd=Decimal(cap), qualifying_topup_usd=Decimal(topup))


DEFAULT_TIERS: dict[str, TierSpec] = {
    "free": _tier(20, 40_000, 2, "10", "0"),
    "tier-1": _tier(500, 200_000, 20, "100", "5"),
    "tier-2": _tier(5_000, 2_000_000, 100, "500", "50"),
    "tier-3": _tier(5_000, 4_000_000, 200, "1000", "100"),
    "tier-4": _tier(10_000, 10_000_000, 500, "5000", "250"),
    "tier-5": _tier(30_000, 30_000_000, 1_000, "200000", "1000"),
}


class TierTable(msgspec.Struct, frozen=True):
    """All tiers, ordered by qualifying top-up (lowest first)."""

    tiers: dict[str, TierSpec]

    def get(self, name: str) -> TierSpec:
        """The tier called `name`; an unknown name (a tier removed from config) gets `free`'s limits."""
        return self.tiers.get(name) or self.tiers[DEFAULT_TIER]

    def __contains__(self, name: object) -> bool:
        return name in self.tiers

    def earned(self, topups_nanos: int) -> str:
        """The highest tier whose qualifying top-up is at most `topups_nanos`."""
        best = DEFAULT_TIER
        for name, spec in self.tiers.items():
            if spec.qualifying_topup_nanos <= topups_nanos:
                best = name
        return best

    def rank(self, name: str) -> int:
        """Position in the ladder (higher is better); unknown tiers rank lowest."""
        names = list(self.tiers)
        return names.index(name) if name in names else -1


def build_tiers(overrides: dict[str, TierOverride]) -> TierTable:
    """Merge the config's `[tiers]` tables over the defaults and validate. Raises `ValueError`."""
    merged: dict[str, TierSpec] = {}
    for name in {**DEFAULT_TIERS, **overrides}:
        base = msgspec.structs.asdict(DEFAULT_TIERS[name]) if name in DEFAULT_TIERS else {}
        given = {k: v for k, v in msgspec.structs.asdict(overrides.get(name, TierOverride())).items() if v is not None}
        data = {**base, **given}
        missing = [f for f in TierSpec.__struct_fields__ if f not in data]
        if missing:
            raise ValueError(f"tiers.{name}: a new tier must set {', '.join(missing)}")
        spec = TierSpec(**data)
        for field in ("requests_per_minute", "tokens_per_minute", "concurrent_requests"):
            if getattr(spec, field) <= 0:
                raise ValueError(f"tiers.{name}.{field} must be a positive integer")
        if spec.monthly_spend_cap_usd < 0 or spec.qualifying_topup_usd < 0:
            raise ValueError(f"tiers.{name}: USD amounts must not be negative")
        try:
            spec.monthly_spend_cap_nanos, spec.qualifying_topup_nanos  # noqa: B018 - validates precision
        except ValueError as exc:
            raise ValueError(f"tiers.{name}: {exc}") from exc
        merged[name] = spec
    if DEFAULT_TIER not in merged or merged[DEFAULT_TIER].qualifying_topup_nanos != 0:
        raise ValueError(f"tiers.{DEFAULT_TIER} must exist and qualify at 0 USD")
    ordered = dict(sorted(merged.items(), key=lambda item: (item[1].qualifying_topup_nanos, item[0])))
    return TierTable(tiers=ordered)
