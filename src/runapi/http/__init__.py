"""The HTTP edge: routes, SSE relay and the rendering of errors."""

from runapi.http.app import create_app
from runapi.http.server_protocol import guarded_protocol

__all__ = [
    "create_app",
    "guarded_protocol",
]
