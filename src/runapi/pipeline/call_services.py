"""What one call needs from the running gateway: the narrow view the pipeline depends on.

`runtime.Gateway` provides it; the pipeline never sees the whole gateway (its stores, engines,
edges' services), only the catalog and routes, the holds, the settlement writer, the circuits,
model health and the providers.
"""

from __future__ import annotations

import random
from typing import Protocol

from runapi.accounting import CreditGuard, SettlementWriter
from runapi.catalog import Catalog, ModelEntry, require_mode
from runapi.config import ServerSettings
from runapi.errors import NotFound
from runapi.health import ModelHealth
from runapi.limits import LimitControl
from runapi.pipeline.circuit import CircuitBreakers
from runapi.providers import Deployment, Provider


class CallServices(Protocol):
    """The parts of the running gateway that a call goes through (see the module docstring)."""

    @property
    def catalog(self) -> Catalog: ...
    @property
    def deployments(self) -> dict[str, list[Deployment]]: ...
    @property
    def fallbacks(self) -> dict[str, list[ModelEntry]]: ...
    @property
    def rng(self) -> random.Random: ...
    @property
    def credit(self) -> CreditGuard: ...
    @property
    def limits(self) -> LimitControl: ...
    @property
    def settlements(self) -> SettlementWriter: ...
    @property
    def circuits(self) -> CircuitBreakers: ...
    @property
    def health(self) -> ModelHealth: ...
    @property
    def server(self) -> ServerSettings: ...

    def model(self, name: str) -> ModelEntry | None:
        """The catalog entry for a public model ID or alias."""

    def provider_for(self, deployment: Deployment) -> Provider:
        """The adapter that speaks `deployment`'s protocol."""


class ModelCatalog(Protocol):
    def model(self, name: str) -> ModelEntry | None: ...


def known_model(gw: ModelCatalog, name: str, mode: str | None = None) -> ModelEntry:
    """The catalog entry `name` resolves to, or `NotFound` (404 `model_not_found`); with `mode`, a model of
    another mode is refused too (`require_mode`), before anything is held."""
    entry = gw.model(name)
    if entry is None:
        raise NotFound(f"The model `{name}` does not exist. GET /v1/models lists the models.",
                       param="model", code="model_not_found")
    if mode is not None:
        require_mode(entry.id, entry.mode, mode, entry.endpoint)
    return entry
