"""Usage tiers: configuration, automatic promotion by cumulative top-ups (at once), and pinning."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import msgspec
import pytest
from typer.testing import CliRunner

from runapi.cli.main import app as cli
from runapi.config import ConfigError, ConfigFile, Settings, load_settings
from runapi.limits import DEFAULT_TIERS, TierOverride, build_tiers
from runapi.storage import upgrade
from tests.support.clock import ManualClock
from tests.support.gateway import RunningGateway, run_gateway, sqlite_url
from tests.support.limits import chat, tier

# A ladder with tiny request rates, so each promotion is visible in the next call.
LADDER = {
    "free": tier(rpm=1, qualifying="0"),
    "tier-1": tier(rpm=2, qualifying="5"),
    "tier-2": tier(rpm=4, qualifying="50"),
    "tier-3": tier(rpm=6, qualifying="100"),
    "tier-4": tier(rpm=8, qualifying="250"),
    "tier-5": tier(rpm=10, qualifying="1000"),
}


def settings_with(tiers: dict[str, object]) -> Settings:
    return load_settings({}, msgspec.convert({"tiers": tiers}, ConfigFile))


def test_default_tiers_are_shipped_in_order_of_qualifying_top_up() -> None:
    table = load_settings({}, ConfigFile()).tiers
    assert list(table.tiers) == ["free", "tier-1", "tier-2", "tier-3", "tier-4", "tier-5"]
    rates = [spec.requests_per_minute for spec in table.tiers.values()]
    assert rates == sorted(rates) and table.tiers == DEFAULT_TIERS
    assert table.earned(0) == "free"
    assert table.earned(4_999_999_999) == "free"
    assert table.earned(5_000_000_000) == "tier-1"
    assert table.earned(10**15) == "tier-5"


def test_config_overrides_a_field_and_adds_a_tier() -> None:
    table = settings_with({"tier-1": {"requests_per_minute": 7},
                           "enterprise": tier(rpm=100_000, qualifying="50000")}).tiers
    assert table.get("tier-1").requests_per_minute == 7
    assert table.get("tier-1").tokens_per_minute == DEFAULT_TIERS["tier-1"].tokens_per_minute
    assert list(table.tiers)[-1] == "enterprise" and table.earned(10**17) == "enterprise"
    assert table.get("no-such-tier") == table.get("free")


@pytest.mark.parametrize(("tiers", "message"), [
    ({"gold": {"requests_per_minute": 5}}, "a new tier must set"),
    ({"tier-1": {"requests_per_minute": 0}}, "must be a positive integer"),
    ({"free": {"qualifying_topup_usd": "1"}}, "free must exist and qualify at 0 USD"),
    ({"tier-1": {"monthly_spend_cap_usd": "0.0000000001"}}, "finer than a nano-dollar"),
])
def test_bad_tier_config_is_refused_with_its_path(tiers: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_with(tiers)


def test_unknown_tier_fields_are_refused() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"Object contains unknown field `rpm` - at `\$.tiers\[...\]`"):
        msgspec.convert({"tiers": {"tier-1": {"rpm": 5}}}, ConfigFile)
    with pytest.raises(ValueError, match="tiers.tier-2.concurrent_requests"):
        build_tiers({"tier-2": TierOverride(concurrent_requests=-1)})


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def ladder(sim_url: str, tmp_path_factory: pytest.TempPathFactory, clock: ManualClock) -> Iterator[RunningGateway]:
    with run_gateway(sqlite_url(tmp_path_factory.mktemp("tiers")), sim_url, tiers=LADDER, clock=clock) as running:
        yield running


def account(gw: RunningGateway, account_id: str) -> dict[str, object]:
    return dict(gw.admin.get(f"/admin/accounts/{account_id}").raise_for_status().json())


def top_up(gw: RunningGateway, account_id: str, usd: str) -> None:
    gw.admin.post(f"/admin/accounts/{account_id}/credits", json={"amount_usd": usd}).raise_for_status()


def test_a_top_up_crossing_a_threshold_raises_the_limits_at_once(ladder: RunningGateway) -> None:
    account_id, key = ladder.create_account("5")  # $5 of top-ups: tier-1, 2 requests a minute
    assert account(ladder, account_id)["tier"] == "tier-1"
    assert [chat(ladder, key).status_code for _ in range(3)] == [200, 200, 429]
    top_up(ladder, account_id, "44.99")  # $49.99 in all: still tier-1
    assert chat(ladder, key).status_code == 429
    top_up(ladder, account_id, "0.01")  # $50: tier-2, and the very next call sees it
    response = chat(ladder, key)
    assert response.status_code == 200 and response.headers["x-ratelimit-limit-requests"] == "4"
    assert account(ladder, account_id)["tier"] == "tier-2"


def test_refunds_and_adjustments_do_not_promote(ladder: RunningGateway) -> None:
    account_id, _ = ladder.create_account("1")
    ladder.admin.post(f"/admin/accounts/{account_id}/credits",
                      json={"amount_usd": "100", "kind": "adjustment", "note": "goodwill"}).raise_for_status()
    top_up(ladder, account_id, "1")
    assert account(ladder, account_id)["tier"] == "free"


def test_a_pinned_tier_stays_until_unpinned(ladder: RunningGateway) -> None:
    account_id, key = ladder.create_account("60")  # tier-2
    pinned = ladder.admin.put(f"/admin/accounts/{account_id}/tier", json={"tier": "free"})
    assert pinned.status_code == 200 and pinned.json()["tier"] == "free" and pinned.json()["tier_pinned"] is True
    assert [chat(ladder, key).status_code for _ in range(2)] == [200, 429]
    top_up(ladder, account_id, "1000")  # would earn tier-5, but the operator pinned free
    assert account(ladder, account_id)["tier"] == "free"
    assert chat(ladder, key).status_code == 429
    unpinned = ladder.admin.put(f"/admin/accounts/{account_id}/tier", json={"tier": None}).json()
    assert unpinned["tier"] == "tier-5" and unpinned["tier_pinned"] is False
    response = chat(ladder, key)
    assert response.status_code == 200 and response.headers["x-ratelimit-limit-requests"] == "10"
    bad = ladder.admin.put(f"/admin/accounts/{account_id}/tier", json={"tier": "platinum"})
    assert bad.status_code == 400


def test_tiers_are_listed_for_operators_and_shown_to_customers(ladder: RunningGateway) -> None:
    listed = ladder.admin.get("/admin/tiers").raise_for_status().json()["data"]
    assert [t["name"] for t in listed] == list(LADDER)
    assert listed[1]["qualifying_topup"] == Decimal(5) and listed[1]["requests_per_minute"] == 2
    assert httpx.get(f"{ladder.base_url}/admin/tiers").status_code == 401  # operators only
    _, key = ladder.create_account("5")
    own = httpx.get(f"{ladder.base_url}/v1/usage", headers={"authorization": f"Bearer {key}"}).json()
    assert own["tier"] == "tier-1" and own["limits"]["requests_per_minute"] == 2


def test_cli_top_up_promotes_and_cli_pins(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    upgrade(url)
    runner = CliRunner()
    env = {"RUNAPI_DATABASE_URL": url, "RUNAPI_CONFIG": ""}

    def run(*args: str) -> str:
        result = runner.invoke(cli, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.output

    run("accounts", "create", "acme")
    assert "promote acme to tier-1" in run("credits", "add", "acme", "5").replace("\n", " ")
    assert "tier-1" in run("accounts", "list")
    assert "pinned to tier-3" in run("tiers", "pin", "acme", "tier-3")
    assert "promote" not in run("credits", "add", "acme", "1000")
    assert "now tier-5" in run("tiers", "unpin", "acme")
    assert "tier-5" in run("tiers", "list")
