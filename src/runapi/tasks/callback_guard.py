"""The `callback_url` guard against server-side request forgery.

A callback may only reach public addresses: loopback, private, link-local (cloud metadata
169.254.169.254 among them), shared (CGNAT), multicast, reserved and unspecified addresses are
refused, IPv4-mapped IPv6 included, unless the operator allow-lists the host, the address or a
network (`[tasks] webhook_allow`). Cloud metadata addresses are refused even inside an
allow-listed network unless listed one by one.

The URL is checked when the task is submitted, and again on every delivery: the sender's
connector resolves through `GuardedResolver`, so the address checked is the address connected
to (no DNS-rebinding window).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from runapi.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack
    "169.254.170.2",  # AWS ECS task metadata
    "fd00:ec2::254",  # AWS over IPv6
    "100.100.100.200",  # Alibaba Cloud
))
MAX_URL_LENGTH = 2000


class CallbackRefused(InvalidRequest):
    code = "callback_url_refused"

    def __init__(self, message: str) -> None:
        super().__init__(message, param="callback_url")


def _unwrap(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _kind(ip: IPAddress) -> str | None:
    """Why `ip` is not a public address, or None if it is."""
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for kind, flag in (("a loopback", ip.is_loopback), ("a link-local", ip.is_link_local),
                       ("a multicast", ip.is_multicast), ("an unspecified", ip.is_unspecified),
                       ("a reserved", ip.is_reserved), ("a private", ip.is_private)):
        if flag:
            return f"{kind} address"
    return None if ip.is_global else "a non-public address"


class CallbackGuard:
    """Decides whether the gateway may send a webhook to a URL."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self._hosts: set[str] = set()
        self._addresses: set[IPAddress] = set()
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allow:
            entry = entry.strip().lower()
            try:
                if "/" in entry:
                    self._networks.append(ipaddress.ip_network(entry, strict=False))
                else:
                    self._addresses.add(ipaddress.ip_address(entry.strip("[]")))
            except ValueError:
                self._hosts.add(entry)

    def check_syntax(self, url: str) -> tuple[str, int]:
        """(host, port) of an acceptable http(s) URL, or `CallbackRefused`."""
        if len(url) > MAX_URL_LENGTH:
            raise CallbackRefused(f"callback_url is longer than {MAX_URL_LENGTH} characters.")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise CallbackRefused(f"callback_url is not a valid URL: {exc}.") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CallbackRefused("callback_url must be an absolute http:// or https:// URL.")
        return parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self._hosts

    def check_address(self, address: str, host: str) -> None:
        """Refuse `address` (which `host` resolved to) unless it is public or allow-listed."""
        ip = _unwrap(ipaddress.ip_address(address.split("%", 1)[0]))
        if ip in self._addresses or self.host_allowed(host):
            return
        kind = _kind(ip)
        if kind is None:
            return
        if ip not in METADATA_ADDRESSES and any(ip in network for network in self._networks):
            return
        shown = host if host == str(ip) else f"{host} resolves to {ip}, which is"
        raise CallbackRefused(f"callback_url refused: {shown} {kind}. Webhooks are only sent to public "
                              "addresses; an operator may allow-list hosts in `[tasks] webhook_allow`.")

    async def check(self, url: str) -> None:
        """Check the URL's syntax and every address its host resolves to now."""
        host, port = self.check_syntax(url)
        if self.host_allowed(host):
            return
        for address in await self.resolve(host, port):
            self.check_address(address, host)

    @staticmethod
    async def resolve(host: str, port: int) -> list[str]:
        try:
            ipaddress.ip_address(host.strip("[]"))
            return [host.strip("[]")]
        except ValueError:
            pass
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise CallbackRefused(f"callback_url host {host!r} does not resolve: {exc.strerror or exc}.") from exc
        return sorted({str(info[4][0]) for info in infos})


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses (raises `CallbackRefused`) when any address is not allowed."""

    def __init__(self, guard: CallbackGuard) -> None:
        self._guard = guard
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            self._guard.check_address(result["host"], host)
        return results

    async def close(self) -> None:
        await self._inner.close()
