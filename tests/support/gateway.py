"""A real gateway on loopback, in front of a real simulator, with helpers to set up accounts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from runapi.config import ConfigFile, Settings, load_settings
from runapi.http import create_app
from runapi.http.server_protocol import guarded_protocol
from runapi.storage import create_engine, read_epoch, upgrade
from tests.support.servers import serve_asgi

ADMIN_TOKEN = "test-admin-token"


# Tests of other features must not trip rate limits or spend caps: every tier is made generous
# unless a test passes its own `tiers` (see tests/test_limits_gateway.py).
GENEROUS_TIERS: dict[str, dict[str, Any]] = {
    name: {"requests_per_minute": 1_000_000, "tokens_per_minute": 1_000_000_000, "concurrent_requests": 100_000,
           "monthly_spend_cap_usd": "1000000"}
    for name in ("free", "tier-1", "tier-2", "tier-3", "tier-4", "tier-5")
}


def simulator_config(sim_url: str, tiers: dict[str, dict[str, Any]] | None = None,
                     models: dict[str, dict[str, Any]] | None = None, site: dict[str, str] | None = None,
                     providers: dict[str, dict[str, Any]] | None = None, media: dict[str, Any] | None = None,
                     **server: Any) -> ConfigFile:
    """Every built-in provider pointed at the simulator (which speaks both protocols); `providers`
    overrides some (e.g. a base URL on the simulator's Z.ai-shaped routes); `media` is the [media] table."""
    import msgspec

    from runapi.catalog import builtin_catalog_data

    tables = {name: {"base_url": f"{sim_url}/v1" if spec["protocol"] == "openai" else sim_url, "api_key_env": ""}
              for name, spec in builtin_catalog_data()["providers"].items()}
    tables.update(providers or {})
    return msgspec.convert({"providers": tables, "server": server, "models": models or {},
                            "tiers": GENEROUS_TIERS if tiers is None else tiers, "site": site or {},
                            "media": media or {}}, ConfigFile)


def gateway_settings(database_url: str, config: ConfigFile, **env: str) -> Settings:
    return load_settings({"RUNAPI_DATABASE_URL": database_url, "RUNAPI_ADMIN_TOKEN": ADMIN_TOKEN, **env}, config)


class RunningGateway:
    def __init__(self, base_url: str, settings: Settings, app: Any) -> None:
        self.base_url = base_url
        self.settings = settings
        self.app = app
        # Idle connections are dropped before uvicorn's 5 s keep-alive timeout closes them, so a request
        # never races the server's close (a reset, seen once in a long fuzz module).
        self.admin = httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30,
                                  limits=httpx.Limits(keepalive_expiry=2.0))

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway

    def database_epoch(self) -> int:
        """The cache epoch in the database now (read with a connection of its own)."""
        async def read() -> int:
            engine = create_engine(self.settings.database_url)
            try:
                return await read_epoch(engine)
            finally:
                await engine.dispose()

        return asyncio.run(read())

    def wait_for_epoch(self, timeout: float = 5.0) -> None:
        """Wait until this gateway's epoch poller has read the database's current cache epoch: it has
        then dropped everything it cached before the last change anywhere."""
        target = self.database_epoch()
        deadline = time.monotonic() + timeout
        while (self.gateway.epoch_seen or 0) < target:
            assert time.monotonic() < deadline, f"the epoch poller did not read epoch {target} in {timeout}s"
            time.sleep(0.01)

    def create_account(self, credit_usd: str | Decimal = "10", name: str | None = None) -> tuple[str, str]:
        """A new account with `credit_usd` of credit and one key: (account ID, secret key)."""
        name = name or f"acct-{os.urandom(6).hex()}"
        account = self.admin.post("/admin/accounts", json={"name": name}).raise_for_status().json()
        if Decimal(str(credit_usd)) > 0:
            self.admin.post(f"/admin/accounts/{account['id']}/credits",
                            json={"amount_usd": str(credit_usd)}).raise_for_status()
        key = self.admin.post(f"/admin/accounts/{account['id']}/keys", json={"name": "test"}).raise_for_status().json()
        return account["id"], key["key"]

    def balance(self, account_id: str) -> Decimal:
        data = self.admin.get(f"/admin/accounts/{account_id}").raise_for_status().json()
        return Decimal(str(data["balance"]))

    def ledger(self, account_id: str) -> list[dict[str, Any]]:
        return list(self.admin.get(f"/admin/accounts/{account_id}/ledger").raise_for_status().json()["data"])

    def ledger_sum(self, account_id: str) -> Decimal:
        return sum((Decimal(str(e["amount"])) for e in self.ledger(account_id)), Decimal(0))


@contextlib.contextmanager
def run_gateway(database_url: str, sim_url: str, *, tiers: dict[str, dict[str, Any]] | None = None,
                models: dict[str, dict[str, Any]] | None = None, clock: Callable[[], float] = time.time,
                env: dict[str, str] | None = None, site: dict[str, str] | None = None,
                providers: dict[str, dict[str, Any]] | None = None, media: dict[str, Any] | None = None,
                **server: Any) -> Iterator[RunningGateway]:
    """A gateway on loopback. `tiers`, `models` and `site` are config tables (default tiers: generous
    limits), `clock` drives its rate limiter, `env` adds `RUNAPI_*` variables (e.g. `RUNAPI_REDIS_URL`)."""
    upgrade(database_url)
    settings = gateway_settings(database_url, simulator_config(sim_url, tiers, models, site, providers, media,
                                                               **server),
                                **(env or {}))
    app = create_app(settings, clock=clock)
    with serve_asgi(app, http=guarded_protocol(settings.server)) as base_url:
        running = RunningGateway(base_url, settings, app)
        try:
            yield running
        finally:
            running.admin.close()


def sqlite_url(directory: Path, name: str = "runapi.db") -> str:
    return f"sqlite+aiosqlite:///{directory / name}"
