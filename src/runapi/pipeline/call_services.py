"""What one call needs from the running gateway: the narrow view the pipeline depends on.

`runtime.Gateway` provides it; the pipeline never sees the whole gateway (its stores, engines,
edges' services), only the catalog and routes, the holds, the settlement writer, the circuits,
model health and the providers.
"""

from __future__ import annotations

import random
from typing import Protocol

from runapi.accounting import CreditGuard, SettlementWriter
from runapi.catalog import Catalog, ModelEntry
from runapi.config import ServerSettings
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
