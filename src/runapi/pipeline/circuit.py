"""Circuit breakers per deployment, so a failing upstream stops costing every caller a timeout, and no
tenant can pause a model for the others.

    closed ──(failures from several accounts)──▶ open ──(cooldown)──▶ half-open
      ▲                                           ▲                      │ one trial call
      └────────────── trial succeeds ─────────────┴── trial fails ◀──────┘

A failure is an upstream error that failover retries (connect error, timeout, 429, 5xx, a stream
broken by the upstream); a rejection of the client's own request is not. Each request counts once
per deployment however often it was retried there (the caller reports it once).

Issue 20.7: the breaker used to open after 5 consecutive failures, and a failing request was tried
up to 3 times, so one account whose requests make the upstream answer 500 (a prompt it chokes on)
paused the model for every account. Now there are two kinds of circuit:

- the deployment's own, for everyone: it opens when, within `window` seconds, at least `threshold`
  requests failed, from at least `accounts` distinct accounts, and they are at least `failure_rate`
  of the requests it answered or failed in that window (a minimum volume of `threshold`);
- one per account and deployment: it opens after `threshold` consecutive failed requests of that
  account, and pauses the deployment for that account alone (its calls fail over or get 503 at
  once). So a gateway with a single tenant still stops calling a dead upstream.

An open circuit waits `cooldown` seconds, then lets one trial call through (half-open): success
closes it; failure opens it again, unless (for the shared circuit) the window no longer holds
failures from enough accounts, in which case it closes. In-process state, driven by an injectable
clock (seconds, monotonic).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Literal

CircuitState = Literal["closed", "open", "half_open"]

MAX_ACCOUNT_CIRCUITS = 10_000  # per deployment; the least recently failing are forgotten first


class _Circuit:
    __slots__ = ("failures", "opened_at", "trial_at")

    def __init__(self) -> None:
        self.failures = 0  # consecutive (an account's circuit)
        self.opened_at: float | None = None
        self.trial_at: float | None = None

    def state(self, now: float, cooldown: float) -> CircuitState:
        if self.opened_at is None:
            return "closed"
        return "open" if now - self.opened_at < cooldown else "half_open"

    def allow(self, now: float, cooldown: float) -> bool:
        """In half-open, only the first caller gets the trial (another trial is allowed if its outcome
        was not reported within a cooldown)."""
        if self.opened_at is None:
            return True
        if now - self.opened_at < cooldown:
            return False
        if self.trial_at is not None and now - self.trial_at < cooldown:
            return False
        self.trial_at = now
        return True

    def open(self, now: float) -> None:
        self.opened_at, self.trial_at = now, None


class _Deployment:
    """The shared circuit and its window, and the accounts' own circuits."""

    __slots__ = ("shared", "failures", "answered", "accounts")

    def __init__(self) -> None:
        self.shared = _Circuit()
        self.failures: collections.deque[tuple[float, str]] = collections.deque()  # (when, account)
        self.answered: collections.deque[list[int]] = collections.deque()  # [second, requests] buckets
        self.accounts: collections.OrderedDict[str, _Circuit] = collections.OrderedDict()

    def prune(self, now: float, window: float) -> None:
        while self.failures and now - self.failures[0][0] >= window:
            self.failures.popleft()
        while self.answered and now - self.answered[0][0] >= window:
            self.answered.popleft()


class CircuitBreakers:
    """Circuits keyed by deployment (see `routing.deployment_key`). `threshold` 0 disables them."""

    def __init__(self, threshold: int, cooldown: float, clock: Callable[[], float], *, accounts: int = 3,
                 window: float = 60.0, failure_rate: float = 0.5) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.accounts = max(1, accounts)
        self.window = window
        self.failure_rate = failure_rate
        self._clock = clock
        self._deployments: dict[str, _Deployment] = {}

    def state(self, key: str) -> CircuitState:
        """The shared circuit's state (what every account sees)."""
        deployment = self._deployments.get(key)
        return "closed" if deployment is None else deployment.shared.state(self._clock(), self.cooldown)

    def allow(self, key: str, account: str = "") -> bool:
        """May `account` call this deployment now? Neither the shared circuit nor its own may be open."""
        deployment = self._deployments.get(key)
        if deployment is None:
            return True
        now = self._clock()
        own = deployment.accounts.get(account)
        if own is not None and own.opened_at is not None and not own.allow(now, self.cooldown):
            return False
        return deployment.shared.allow(now, self.cooldown)

    def retry_in(self, key: str, account: str = "") -> float:
        """Seconds until the circuits that stop `account` let a trial call through (0 when they would now)."""
        deployment = self._deployments.get(key)
        if deployment is None:
            return 0.0
        now = self._clock()
        own = deployment.accounts.get(account)
        return max([0.0, *(circuit.opened_at + self.cooldown - now for circuit in (deployment.shared, own)
                           if circuit is not None and circuit.opened_at is not None)])

    def succeeded(self, key: str, account: str = "") -> None:
        """One request answered (or refused as the client's own fault): the upstream is up."""
        if self.threshold <= 0:
            return
        deployment = self._deployments.get(key) or self._deployments.setdefault(key, _Deployment())
        now = self._clock()
        if deployment.accounts:
            deployment.accounts.pop(account, None)
        deployment.shared.opened_at = deployment.shared.trial_at = None
        second = int(now)
        answered = deployment.answered
        if answered and answered[-1][0] == second:
            answered[-1][1] += 1
        else:
            answered.append([second, 1])
            deployment.prune(now, self.window)

    def failed(self, key: str, account: str = "") -> None:
        """One request failed on this deployment (report it once, however many times it was tried)."""
        if self.threshold <= 0:
            return
        now = self._clock()
        deployment = self._deployments.setdefault(key, _Deployment())
        own = deployment.accounts.pop(account, None) or _Circuit()
        deployment.accounts[account] = own  # most recently failing last
        if len(deployment.accounts) > MAX_ACCOUNT_CIRCUITS:
            deployment.accounts.popitem(last=False)
        own.failures += 1
        if own.opened_at is not None or own.failures >= self.threshold:
            own.open(now)  # open, or re-open after a failed trial
        deployment.failures.append((now, account))
        deployment.prune(now, self.window)
        shared = deployment.shared
        if self._shared_rule(deployment):
            shared.open(now)
        elif shared.opened_at is not None and shared.state(now, self.cooldown) == "half_open":
            shared.opened_at = shared.trial_at = None  # the failures that opened it have left the window

    def _shared_rule(self, deployment: _Deployment) -> bool:
        failed = len(deployment.failures)
        if failed < self.threshold or len({account for _, account in deployment.failures}) < self.accounts:
            return False
        answered = sum(count for _, count in deployment.answered)
        return failed >= self.failure_rate * (failed + answered)
