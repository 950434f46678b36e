"""Recognising a store outage: a lost database or Redis connection becomes a 503, not a 500.

The edge (`runapi.http.errors`) asks `store_outage()` about any exception that is not
already a `GatewayError`, so every endpoint answers the same way when a store is away.
"""

from __future__ import annotations

from redis import exceptions as redis_errors
from sqlalchemy import exc as sa_errors

from runapi.errors import ServiceUnavailable

REDIS_DOWN = ("The gateway's shared state (Redis) is unreachable, so no new call can be admitted; "
              "nothing was charged. Retry shortly.")
DATABASE_DOWN = "The gateway's database is unreachable; nothing was charged. Retry shortly."


def store_outage(exc: BaseException) -> ServiceUnavailable | None:
    """The 503 to answer for `exc` if it is a database or Redis connection failure, else None."""
    if isinstance(exc, (redis_errors.ConnectionError, redis_errors.TimeoutError)):
        return ServiceUnavailable(REDIS_DOWN)
    if isinstance(exc, (sa_errors.OperationalError, sa_errors.InterfaceError, ConnectionError, TimeoutError)) or (
            isinstance(exc, sa_errors.DBAPIError) and exc.connection_invalidated):
        return ServiceUnavailable(DATABASE_DOWN)
    return None
