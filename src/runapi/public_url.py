"""The gateway's public root URL, as model pages, skills and task output URLs show it.

Never the request's own `Host` header as sent: that made every page a mirror for whatever host a
client named, so a cached page or a copied snippet could point agents' keys at an attacker's server
(issue 20.9). In order: `[server] public_base_url` when set; the request's host when it is one of
`[server] allowed_hosts`; else the address the connection reached (the server's own socket, which
the client does not choose).
"""

from __future__ import annotations

from starlette.types import Scope

from runapi.config import ServerSettings

__all__ = ["public_root"]


def public_root(server: ServerSettings, scope: Scope) -> str:
    """The root URL (no trailing slash, no `/v1`) for a request with ASGI `scope`."""
    configured = server.public_base_url.rstrip("/")
    if configured:
        return configured[: -len("/v1")] if configured.endswith("/v1") else configured
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    host = _header(scope, b"host")
    if host and host.lower() in server.allowed_hosts:
        return f"{scheme}://{host.lower()}"
    address = scope.get("server")
    if not address or address[1] is None:
        return f"{scheme}://localhost"
    name, port = str(address[0]), int(address[1])
    name = f"[{name}]" if ":" in name else name
    default = (scheme, port) in (("http", 80), ("https", 443))
    return f"{scheme}://{name}" if default else f"{scheme}://{name}:{port}"


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return ""
