"""What leaves the gateway for addresses a client or provider named, and the links it hands out: the
SSRF guard for callbacks and media downloads (IANA special-purpose registries), and signed, expiring
output URLs (task outputs, media)."""

from runapi.outbound.callback_guard import CallbackGuard, CallbackRefused
from runapi.outbound.output_urls import OutputExpired, OutputSigner, output_secret
from runapi.outbound.special_addresses import refusal

__all__ = ["CallbackGuard", "CallbackRefused", "OutputExpired", "OutputSigner", "output_secret",
           "refusal"]
