"""Deployments of a model, in the order to try them: weighted random, without repeats."""

from __future__ import annotations

import random

from runapi.catalog import Catalog, ModelEntry
from runapi.providers import Deployment


def deployments_for(entry: ModelEntry, catalog: Catalog, provider_keys: dict[str, str]) -> list[Deployment]:
    return [
        Deployment(
            model_id=entry.id,
            provider_name=spec.provider,
            provider=catalog.providers[spec.provider],
            upstream_model=spec.upstream_model,
            weight=spec.weight,
            api_key=provider_keys.get(spec.provider, ""),
        )
        for spec in entry.deployments
        if spec.weight > 0
    ]


def attempt_order(deployments: list[Deployment], rng: random.Random) -> list[Deployment]:
    """A weighted shuffle (Efraimidis–Spirakis): heavier deployments tend to come first."""
    return sorted(deployments, key=lambda d: rng.random() ** (1.0 / d.weight), reverse=True)
