"""Reading a gateway's SSE answer the way a client would, keeping exact decimals."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


def decode(data: str | bytes) -> Any:
    return json.loads(data, parse_float=Decimal)


def sse_data(text: str) -> list[str]:
    """The `data:` payloads of an SSE body, in order."""
    return [line[len("data: "):] for line in text.split("\n") if line.startswith("data: ")]
