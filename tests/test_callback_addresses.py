"""Issue 20.6: webhooks go only to globally routable unicast addresses, judged against IANA's IPv4 and
IPv6 special-purpose registries, with IPv4 carried inside IPv6 (mapped, NAT64, 6to4, Teredo) unwrapped
first. `http://192.0.0.8/` and `http://[2002:7f00:1::]/` (6to4 around 127.0.0.1) were accepted, and
the first was delivered to. A table of addresses through the pure rule and the guard, then the two
URLs of the report against a live gateway."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from runapi.outbound.callback_guard import CallbackGuard, CallbackRefused
from runapi.outbound.special_addresses import refusal
from tests.support.gateway import RunningGateway

REFUSED = [
    ("0.0.0.0", "unspecified"), ("0.1.2.3", "unspecified"),
    ("10.0.0.1", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"), ("192.168.1.1", "private"),
    ("100.64.0.1", "shared"), ("100.127.255.255", "shared"),
    ("127.0.0.1", "loopback"), ("127.255.255.254", "loopback"),
    ("169.254.169.254", "link-local"), ("169.254.0.1", "link-local"),
    ("192.0.0.1", "IETF protocol"), ("192.0.0.8", "IETF protocol"), ("192.0.0.9", "IETF protocol"),
    ("192.0.0.170", "IETF protocol"),
    ("192.0.2.1", "documentation"), ("198.51.100.7", "documentation"), ("203.0.113.9", "documentation"),
    ("192.31.196.1", "AS112"), ("192.175.48.1", "AS112"), ("192.52.193.1", "AMT"),
    ("192.88.99.1", "6to4 relay"), ("198.18.0.1", "benchmarking"), ("198.19.255.255", "benchmarking"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"),
    ("::", "unspecified"), ("::1", "loopback"), ("::7f00:1", "IPv4-compatible"), ("::808:808", "IPv4-compatible"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:192.0.0.8", "IETF protocol"), ("::ffff:10.0.0.1", "private"),
    ("64:ff9b::a00:1", "private"), ("64:ff9b::7f00:1", "loopback"), ("64:ff9b::c000:8", "IETF protocol"),
    ("64:ff9b:1::808:808", "local-use"),
    ("2002:7f00:1::", "loopback"), ("2002:a00:1::1", "private"), ("2002:c000:208::", "documentation"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "documentation"),  # Teredo, client 192.0.2.45
    ("2001::1", "reserved"),  # Teredo, client 255.255.255.254
    ("2001:2::1", "IETF protocol"), ("2001:10::1", "IETF protocol"), ("2001:1::1", "IETF protocol"),
    ("2001:db8::1", "documentation"), ("3fff::1", "documentation"), ("2620:4f:8000::1", "AS112"),
    ("100::1", "discard-only"), ("100:0:0:1::1", "dummy"), ("5f00::1", "segment routing"),
    ("fc00::1", "unique-local"), ("fd00:ec2::254", "unique-local"), ("fe80::1", "link-local"),
    ("fec0::1", "site-local"), ("ff02::1", "multicast"), ("4000::1", "not a global unicast"),
    ("e000::1", "not a global unicast"),
]
ALLOWED = [
    "8.8.8.8", "1.1.1.1", "11.0.0.1", "172.32.0.1", "100.128.0.1", "192.0.1.1", "198.20.0.1", "223.255.255.254",
    "2606:4700:4700::1111", "2001:4860:4860::8888", "2a00:1450:4001:81c::200e",
    "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
]


@pytest.mark.parametrize(("address", "kind"), REFUSED, ids=[a for a, _ in REFUSED])
def test_special_purpose_addresses_are_refused(address: str, kind: str) -> None:
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None and kind in reason, reason
    with pytest.raises(CallbackRefused, match=f"{kind}|cloud metadata"):
        CallbackGuard().check_address(address, address)


@pytest.mark.parametrize("address", ALLOWED)
def test_global_unicast_addresses_are_accepted(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None
    CallbackGuard().check_address(address, address)


def test_the_allow_list_applies_to_the_address_carried_but_never_to_metadata() -> None:
    guard = CallbackGuard(["10.0.0.0/8", "169.254.0.0/16"])
    guard.check_address("64:ff9b::a00:1", "hooks.internal")  # NAT64 around an allow-listed 10.0.0.1
    guard.check_address("::ffff:10.1.2.3", "hooks.internal")
    for metadata in ("169.254.169.254", "::ffff:169.254.169.254"):
        with pytest.raises(CallbackRefused, match="cloud metadata"):
            guard.check_address(metadata, metadata)


@pytest.mark.parametrize("url", ["http://192.0.0.8/", "http://[2002:7f00:1::]/", "http://[64:ff9b::7f00:1]:8080/",
                                 "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/"])
def test_the_reported_callback_urls_are_refused_at_submission(gateway: RunningGateway, url: str) -> None:
    _, key = gateway.create_account("1")
    task = {"model": "glm-4.5-air", "input": {"messages": [{"role": "user", "content": "hi"}]}, "callback_url": url}
    response = httpx.post(f"{gateway.base_url}/v1/tasks", json=task, headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "callback_url_refused"
