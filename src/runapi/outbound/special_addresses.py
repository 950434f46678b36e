"""Which IP addresses a webhook may be sent to: globally routable unicast only, judged against IANA's
IPv4 and IPv6 Special-Purpose Address Registries, with IPv4 carried inside IPv6 unwrapped first.

Python's `is_global` misses blocks (192.0.0.0/24, e.g. 192.0.0.8, was accepted and delivered to) and
judges 2002:7f00:1:: (6to4 around 127.0.0.1) as a public IPv6 address (issue 20.6). Here:

- IPv4: every block of the special-purpose registry is refused, the few marked "globally reachable"
  included (anycast service addresses such as AS112, AMT, PCP and TURN, which no webhook receiver
  uses), and multicast and the reserved 240.0.0.0/4 (with the limited broadcast) too;
- IPv6: only global unicast (2000::/3) outside every special-purpose block is accepted;
- IPv4 inside IPv6 is judged as the IPv4 address it reaches: IPv4-mapped (::ffff:0:0/96, which a
  dual-stack socket connects to over IPv4), NAT64 (64:ff9b::/96), 6to4 (2002::/16) and the Teredo
  client (2001::/32). IPv4-compatible addresses (::/96, deprecated) and local-use NAT64
  (64:ff9b:1::/48) are not routable and are refused whatever they carry.

Pure functions over `ipaddress` values; the guard (`callback_guard.py`) adds the operator's allow-list.
Registries checked 2026-12: https://www.iana.org/assignments/iana-ipv4-special-registry/ and
https://www.iana.org/assignments/iana-ipv6-special-registry/.
"""

from __future__ import annotations

import ipaddress

__all__ = ["IPAddress", "refusal", "unwrap"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_IPV4_BLOCKS = tuple((ipaddress.IPv4Network(block), kind) for block, kind in (
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "an IETF protocol assignment address"),  # DS-Lite, dummy 192.0.0.8, NAT64 discovery, ...
    ("192.0.2.0/24", "a documentation address"),
    ("192.31.196.0/24", "an AS112 DNS address"),
    ("192.52.193.0/24", "an AMT relay address"),
    ("192.88.99.0/24", "a 6to4 relay anycast address"),
    ("192.168.0.0/16", "a private address"),
    ("192.175.48.0/24", "an AS112 DNS address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),  # 255.255.255.255, the limited broadcast, included
))

_IPV6_BLOCKS = tuple((ipaddress.IPv6Network(block), kind) for block, kind in (
    ("::/128", "an unspecified address"),
    ("::1/128", "a loopback address"),
    ("::/96", "an IPv4-compatible address (deprecated, not routable)"),
    ("64:ff9b:1::/48", "a local-use IPv4/IPv6 translation address"),
    ("100::/64", "a discard-only address"),
    ("100:0:0:1::/64", "a dummy address"),
    ("2001::/23", "an IETF protocol assignment address"),  # benchmarking, ORCHID, AMT, AS112, anycast, ...
    ("2001:db8::/32", "a documentation address"),
    ("2620:4f:8000::/48", "an AS112 DNS address"),
    ("3fff::/20", "a documentation address"),
    ("5f00::/16", "a segment routing address"),
    ("fc00::/7", "a unique-local (private) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
))
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def unwrap(ip: IPAddress) -> IPAddress:
    """The IPv4 address `ip` carries (mapped, NAT64, 6to4, Teredo client), or `ip` itself."""
    if isinstance(ip, ipaddress.IPv4Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # (server, client): packets go to the client
    return ip


def refusal(ip: IPAddress) -> str | None:
    """Why a webhook may not go to `ip` ("a private address", ...), or None if it is global unicast."""
    carried = unwrap(ip)
    if carried is not ip:
        reason = refusal(carried)
        return None if reason is None else f"{reason} ({carried}, carried in {ip})"
    if isinstance(ip, ipaddress.IPv4Address):
        for block, kind in _IPV4_BLOCKS:
            if ip in block:
                return kind
        return None if ip.is_global else "a non-public address"
    for network, kind in _IPV6_BLOCKS:  # `::` and `::1` are named before the `::/96` that holds them
        if ip in network:
            return kind
    if ip not in _GLOBAL_UNICAST:
        return "not a global unicast address"
    return None if ip.is_global else "a non-public address"
