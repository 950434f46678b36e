"""The `runapi` command line."""

from runapi.cli.main import app

__all__ = ["app"]
