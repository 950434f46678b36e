"""The HTTP edge: routes, SSE relay and the rendering of errors."""

from runapi.http.app import create_app

__all__ = ["create_app"]
