"""One function per endpoint: authorise → limit → route → call the adapter → meter."""

from runapi.pipeline.gateway import Gateway

__all__ = ["Gateway"]
