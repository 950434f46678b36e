"""A circuit breaker per deployment, so a failing upstream stops costing every caller a timeout.

    closed ──(threshold consecutive failures)──▶ open ──(cooldown)──▶ half-open
      ▲                                           ▲                      │ one trial call
      └────────────── trial succeeds ─────────────┴── trial fails ◀──────┘

A failure is an upstream error that failover retries (connect error, timeout, 429, 5xx,
a stream broken by the upstream); a rejection of the client's own request is not. In-process
state, driven by an injectable clock (seconds, monotonic).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

CircuitState = Literal["closed", "open", "half_open"]


class _Circuit:
    __slots__ = ("failures", "opened_at", "trial_at")

    def __init__(self) -> None:
        self.failures = 0
        self.opened_at: float | None = None
        self.trial_at: float | None = None


class CircuitBreakers:
    """Circuits keyed by deployment (see `routing.deployment_key`). `threshold` 0 disables them."""

    def __init__(self, threshold: int, cooldown: float, clock: Callable[[], float]) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def state(self, key: str) -> CircuitState:
        circuit = self._circuits.get(key)
        if circuit is None or circuit.opened_at is None:
            return "closed"
        return "open" if self._clock() - circuit.opened_at < self.cooldown else "half_open"

    def allow(self, key: str) -> bool:
        """May a call go to this deployment now? In half-open, only the first caller gets the trial
        (another trial is allowed if its outcome was not reported within a cooldown)."""
        circuit = self._circuits.get(key)
        if circuit is None or circuit.opened_at is None:
            return True
        now = self._clock()
        if now - circuit.opened_at < self.cooldown:
            return False
        if circuit.trial_at is not None and now - circuit.trial_at < self.cooldown:
            return False
        circuit.trial_at = now
        return True

    def retry_in(self, key: str) -> float:
        """Seconds until an open circuit lets a trial call through (0 when it would now)."""
        circuit = self._circuits.get(key)
        if circuit is None or circuit.opened_at is None:
            return 0.0
        return max(0.0, circuit.opened_at + self.cooldown - self._clock())

    def succeeded(self, key: str) -> None:
        self._circuits.pop(key, None)

    def failed(self, key: str) -> None:
        if self.threshold <= 0:
            return
        circuit = self._circuits.setdefault(key, _Circuit())
        circuit.failures += 1
        if circuit.opened_at is not None or circuit.failures >= self.threshold:
            circuit.opened_at = self._clock()  # open, or re-open after a failed trial
            circuit.trial_at = None
