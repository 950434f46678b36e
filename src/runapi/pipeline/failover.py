"""Trying deployments until one answers: failover, retries with backoff, circuit breakers.

Rules, in order, for a plan of deployments (the model's, then its fallback models'):
- at most `server.max_attempts` upstream calls per request; when the plan is shorter, it is
  walked again from the start, so a lone deployment is retried;
- a deployment whose circuit is open, for everyone or for this account, is skipped (no call, no
  attempt counted); a request that fails on a deployment counts once for its circuits however
  often it was tried there (`circuit.py`);
- failing over to a deployment not yet tried is immediate; re-trying one already tried
  waits a jittered exponential backoff (`retry_backoff` × 2^(n−1), at most `retry_backoff_max`,
  times a random factor in [0.5, 1]), or the `retry-after` its 429 asked for if longer —
  a deployment asking for more than `retry_after_cap` is not re-tried in this request;
- connect errors, timeouts, 429 and 5xx (`UpstreamError` but not `UpstreamRejected`) move on;
  a rejection of the request itself, or any other exception, ends the loop at once.

The caller's `attempt` must not have sent a byte to the client: streams call this only
while opening. It is the caller's duty to settle the call when this raises.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from runapi.errors import UpstreamError, UpstreamRejected, UpstreamUnavailable
from runapi.pipeline.metering import CallRecord
from runapi.pipeline.routing import deployment_key
from runapi.providers import Deployment

if TYPE_CHECKING:
    from runapi.pipeline.call_services import CallServices

T = TypeVar("T")


def backoff_delay(retry: int, base: float, cap: float, jitter: float) -> float:
    """The wait before the `retry`-th re-try (1-based) of a deployment; `jitter` in [0, 1]."""
    return min(cap, base * 2.0 ** (retry - 1)) * (0.5 + jitter / 2)


async def first_answer(gw: CallServices, record: CallRecord, plan: list[Deployment],
                       attempt: Callable[[Deployment], Awaitable[T]]) -> T:
    """The result of the first deployment in `plan` whose `attempt` succeeds (see the module rules).

    Sets `record.deployment` and `record.entry` to the deployment tried (so the model that
    answers is the one priced) and adds upstream wait time to `record.upstream_s`. Raises the
    last `UpstreamError`, or `UpstreamUnavailable` when every circuit is open.
    """
    server = gw.server
    tries: dict[str, int] = {}
    not_before: dict[str, float] = {}
    given_up: set[str] = set()
    failures: list[tuple[Deployment, float]] = []  # failed attempts, for the per-deployment health
    counted: set[str] = set()  # deployments this request's failure was reported to the breakers for
    account = record.account_id
    last_error: UpstreamError | None = None
    attempts = 0
    while attempts < server.max_attempts:
        progressed = False
        for deployment in plan:
            if attempts >= server.max_attempts:
                break
            key = deployment_key(deployment)
            if key in given_up or not gw.circuits.allow(key, account):
                continue
            progressed = True
            if tries.get(key):
                delay = backoff_delay(tries[key], server.retry_backoff, server.retry_backoff_max, gw.rng.random())
                await asyncio.sleep(max(delay, not_before.get(key, 0.0) - time.monotonic()))
            tries[key] = tries.get(key, 0) + 1
            attempts += 1
            record.deployment = deployment
            record.entry = gw.catalog.models[deployment.model_id]
            t0 = time.perf_counter()
            try:
                result = await attempt(deployment)
            except UpstreamRejected:
                record.upstream_s += time.perf_counter() - t0
                gw.circuits.succeeded(key, account)  # the upstream is up; it refused this request
                _observe(gw, failures)
                raise
            except UpstreamError as exc:
                elapsed = time.perf_counter() - t0
                record.upstream_s += elapsed
                if key not in counted:
                    counted.add(key)
                    gw.circuits.failed(key, account)
                failures.append((deployment, elapsed * 1000))
                last_error = exc
                retry_after = getattr(exc, "retry_after", None)
                if retry_after:
                    if retry_after > server.retry_after_cap:
                        given_up.add(key)
                    else:
                        not_before[key] = time.monotonic() + retry_after
                continue
            except BaseException:
                record.upstream_s += time.perf_counter() - t0
                _observe(gw, failures)
                raise
            record.upstream_s += time.perf_counter() - t0
            gw.circuits.succeeded(key, account)
            _observe(gw, failures)
            return result
        if not progressed:
            break
    if last_error is not None:
        _observe(gw, failures[:-1])  # the last failure is recorded by the call's own settlement
        raise last_error
    waits = [gw.circuits.retry_in(deployment_key(d), account) for d in plan]
    raise UpstreamUnavailable(f"Every deployment of `{record.entry.id}` is failing and paused; try again shortly.",
                              retry_after=min(waits) if waits else None)


def _observe(gw: CallServices, failures: list[tuple[Deployment, float]]) -> None:
    """Feed failed attempts the call moved on from into the per-deployment health windows."""
    for deployment, elapsed_ms in failures:
        gw.health.observe(deployment_key(deployment), False, elapsed_ms, None)
