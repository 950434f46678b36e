"""Deployments of a model, in the order to try them: weighted random without repeats, then fallbacks."""

from __future__ import annotations

import random

from runapi.catalog import Catalog, ModelEntry
from runapi.providers import Deployment


def deployment_key(deployment: Deployment) -> str:
    """The stable name of one deployment, for circuits and health: `model@provider:upstream_model`."""
    return f"{deployment.model_id}@{deployment.provider_name}:{deployment.upstream_model}"


def deployments_for(entry: ModelEntry, catalog: Catalog, provider_keys: dict[str, str]) -> list[Deployment]:
    return [
        Deployment(
            model_id=entry.id,
            provider_name=spec.provider,
            provider=catalog.providers[spec.provider],
            upstream_model=spec.upstream_model,
            weight=spec.weight,
            api_key=provider_keys.get(spec.provider, ""),
            max_output=entry.max_output,
        )
        for spec in entry.deployments
        if spec.weight > 0
    ]


def attempt_order(deployments: list[Deployment], rng: random.Random) -> list[Deployment]:
    """A weighted shuffle (Efraimidis–Spirakis): heavier deployments tend to come first."""
    if len(deployments) < 2:
        return list(deployments)
    return sorted(deployments, key=lambda d: rng.random() ** (1.0 / d.weight), reverse=True)


def fallback_models(entry: ModelEntry, catalog: Catalog) -> list[ModelEntry]:
    """The entry's configured `fallbacks`, resolved (IDs or aliases), without itself or repeats.

    Raises `ValueError` naming an unknown fallback, so a bad config fails at start-up.
    """
    chain: list[ModelEntry] = []
    for name in entry.fallbacks:
        fallback = catalog.resolve(name)
        if fallback is None:
            raise ValueError(f"model {entry.id!r}: unknown fallback model {name!r}")
        if fallback.id != entry.id and fallback not in chain:
            chain.append(fallback)
    return chain


def attempt_plan(entry: ModelEntry, chains: dict[str, list[ModelEntry]], deployments: dict[str, list[Deployment]],
                 rng: random.Random) -> list[Deployment]:
    """The model's deployments in weighted order, then each fallback model's (`chains`: each model's
    `fallback_models`, resolved once), in configured order."""
    plan = attempt_order(deployments[entry.id], rng)
    for fallback in chains[entry.id]:
        plan.extend(attempt_order(deployments[fallback.id], rng))
    return plan
