"""openai SDK clients a test module opens and closes at its end, not left to the garbage collector (an
unclosed keep-alive socket's ResourceWarning would fail whichever later test the collection lands in)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest


class SdkClients:
    def __init__(self) -> None:
        self._open: list[openai.OpenAI] = []

    def open(self, base_url: str, key: str) -> openai.OpenAI:
        """A client of the gateway at `base_url` (its `/v1`), no retries, closed by `close_all`."""
        client = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0)
        self._open.append(client)
        return client

    def close_all(self) -> None:
        while self._open:
            self._open.pop().close()

    def closed_after_module(self) -> Callable[..., Any]:
        """An autouse fixture closing every client at the end of the module that assigns it to a name:
        `_close_clients = _clients.closed_after_module()`."""
        @pytest.fixture(scope="module", autouse=True, name="_close_sdk_clients")
        def close() -> Iterator[None]:
            yield
            self.close_all()

        return close
