"""The `callback_url` guard against server-side request forgery.

A callback may only reach globally routable unicast addresses (`special_addresses.py`: IANA's
special-purpose registries, with IPv4 inside IPv6 unwrapped), unless the operator allow-lists the
host, the address or a network (`[tasks] webhook_allow`). Cloud metadata addresses are refused even
inside an allow-listed network unless listed one by one.

The URL is checked when the task is submitted, and again on every delivery: the sender's
connector resolves through `GuardedResolver`, so the address checked is the address connected
to (no DNS-rebinding window). The media store's downloads of provider URLs use the same guard
under their own names (`field`, `allow_setting`, `purpose`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from runapi.errors import InvalidRequest
from runapi.outbound.special_addresses import IPAddress, refusal, unwrap

METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack
    "169.254.170.2",  # AWS ECS task metadata
    "fd00:ec2::254",  # AWS over IPv6
    "100.100.100.200",  # Alibaba Cloud
))
MAX_URL_LENGTH = 2000


class CallbackRefused(InvalidRequest):
    code = "callback_url_refused"

    def __init__(self, message: str, field: str = "callback_url") -> None:
        super().__init__(message, param=field)


class CallbackGuard:
    """Decides whether the gateway may send a webhook to a URL."""

    def __init__(self, allow: Iterable[str] = (), *, field: str = "callback_url",
                 allow_setting: str = "[tasks] webhook_allow", purpose: str = "Webhooks are only sent") -> None:
        self.field, self._allow_setting, self._purpose = field, allow_setting, purpose
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
            raise self._refused(f"{self.field} is longer than {MAX_URL_LENGTH} characters.")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise self._refused(f"{self.field} is not a valid URL: {exc}.") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise self._refused(f"{self.field} must be an absolute http:// or https:// URL.")
        return parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self._hosts

    def check_address(self, address: str, host: str) -> None:
        """Refuse `address` (which `host` resolved to) unless it is public or allow-listed."""
        raw = ipaddress.ip_address(address.split("%", 1)[0])
        ip = unwrap(raw)
        if raw in self._addresses or ip in self._addresses or self.host_allowed(host):
            return
        kind = "a cloud metadata address" if ip in METADATA_ADDRESSES else refusal(raw)
        if kind is None:
            return
        if ip not in METADATA_ADDRESSES and any(a in network for network in self._networks for a in (raw, ip)):
            return
        shown = host if host.strip("[]") == str(raw) else f"{host} resolves to {raw}, which is"
        raise self._refused(f"{self.field} refused: {shown} {kind}. {self._purpose} to public "
                            f"addresses; an operator may allow-list hosts in `{self._allow_setting}`.")

    async def check(self, url: str) -> None:
        """Check the URL's syntax and every address its host resolves to now."""
        host, port = self.check_syntax(url)
        if self.host_allowed(host):
            return
        for address in await self.resolve(host, port):
            self.check_address(address, host)

    def _refused(self, message: str) -> CallbackRefused:
        return CallbackRefused(message, self.field)

    async def resolve(self, host: str, port: int) -> list[str]:
        try:
            ipaddress.ip_address(host.strip("[]"))
            return [host.strip("[]")]
        except ValueError:
            pass
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise self._refused(f"{self.field} host {host!r} does not resolve: {exc.strerror or exc}.") from exc
        return sorted({str(info[4][0]) for info in infos})

