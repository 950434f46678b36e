"""PostgreSQL going away mid-traffic (a TCP proxy in front of the real server, cut and restored).

Policy: a call that needs the database (an API key not in the cache) fails with 503; a call whose
key and balance are cached is served, and its answer waits until its charge is durable; the
settlement writer keeps retrying, so no charge is lost when the database comes back.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import httpx

from runapi.http import create_app
from runapi.simulator import prompt_tokens
from runapi.storage import upgrade
from tests.support.gateway import RunningGateway, gateway_settings, simulator_config
from tests.support.postgres import PG_PORT, temporary_database
from tests.support.servers import serve_asgi
from tests.support.sse import decode
from tests.support.tcp_proxy import tcp_proxy

MESSAGES = [{"role": "user", "content": "hello there"}]
COST = (prompt_tokens(MESSAGES) * Decimal("0.10") + 12 * Decimal("0.55")) / Decimal(1_000_000)


def test_database_away_mid_traffic_loses_no_charge(sim_url: str) -> None:
    with temporary_database() as database_url, tcp_proxy(PG_PORT) as proxy:
        upgrade(database_url)
        proxied = database_url.replace(f":{PG_PORT}/", f":{proxy.port}/")
        settings = gateway_settings(proxied, simulator_config(sim_url))
        app = create_app(settings)
        with serve_asgi(app) as base_url:
            gw = RunningGateway(base_url, settings, app)
            try:
                account, key = gw.create_account("1", name="warm")
                _, cold_key = gw.create_account("1", name="cold")
                # Creating accounts moved the cache epoch; once the poller has seen the move it forgets
                # cached keys. Let it settle first, so the warm call's cached key outlives the cut.
                gw.wait_for_epoch()
                slow = {"model": "glm-4.5-air", "messages": MESSAGES, "max_tokens": 20, "x_sim": {"latency_ms": 600}}

                async def call(client: httpx.AsyncClient, secret: str, body: dict[str, object]) -> httpx.Response:
                    return await client.post("/v1/chat/completions", json=body,
                                             headers={"authorization": f"Bearer {secret}"})

                async def main() -> tuple[list[httpx.Response], httpx.Response, float]:
                    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
                        warm = await call(client, key, {**slow, "x_sim": {}})  # caches the key and the balance
                        assert warm.status_code == 200
                        in_flight = [asyncio.create_task(call(client, key, slow)) for _ in range(4)]
                        await asyncio.sleep(0.2)
                        await asyncio.to_thread(proxy.cut)
                        cut_at = time.monotonic()
                        in_flight.append(asyncio.create_task(call(client, key, slow)))  # admitted while away
                        cold = await call(client, cold_key, slow)
                        await asyncio.sleep(1.5 - (time.monotonic() - cut_at))
                        await asyncio.to_thread(proxy.restore)
                        return [warm, *await asyncio.gather(*in_flight)], cold, cut_at

                answered, cold, _ = asyncio.run(main())
                assert cold.status_code == 503 and cold.headers["retry-after"] == "1"
                error = decode(cold.content)["error"]
                assert error["code"] == "service_unavailable" and "database" in error["message"]
                assert [r.status_code for r in answered] == [200] * 6
                charges = [e for e in gw.ledger(account) if e["kind"] == "charge"]
                assert sorted(e["generation_id"] for e in charges) == sorted(r.json()["id"] for r in answered)
                assert gw.balance(account) == gw.ledger_sum(account) == Decimal(1) - 6 * COST
            finally:
                gw.admin.close()


def test_a_cold_key_after_the_database_dropped_every_connection_is_served(sim_url: str) -> None:
    """Every pooled connection dropped by the server (a restart): the next cold key's reads get new
    connections, so the caller never sees the drop."""
    with temporary_database() as database_url, tcp_proxy(PG_PORT) as proxy:
        upgrade(database_url)
        proxied = database_url.replace(f":{PG_PORT}/", f":{proxy.port}/")
        # The epoch poller reads rarely here, so the first read after the drop is the cold key's.
        settings = gateway_settings(proxied, simulator_config(sim_url, epoch_poll_interval=60.0, idle_poll_max=60.0))
        app = create_app(settings)
        with serve_asgi(app) as base_url:
            gw = RunningGateway(base_url, settings, app)
            try:
                _, key = gw.create_account("1", name="first")
                _, cold_key = gw.create_account("1", name="cold")
                body = {"model": "glm-4.5-air", "messages": MESSAGES, "max_tokens": 20}
                with httpx.Client(base_url=base_url, timeout=30) as client:
                    first = client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"})
                    assert first.status_code == 200  # the pool holds open connections now
                    proxy.cut()  # the server side of every pooled connection goes away, as in a restart
                    proxy.restore()
                    cold = client.post("/v1/chat/completions", json=body,
                                       headers={"authorization": f"Bearer {cold_key}"})
                assert cold.status_code == 200, cold.text
            finally:
                gw.admin.close()
