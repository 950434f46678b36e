"""The many-tenants cells' load clients (bench/tenants.py) send each request with the next key of the set:
wrk through its Lua script reading a keys file, the aiohttp client through `KeyRing`. Checked against a
loopback HTTP server that records the keys it was sent."""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.loads import run_async_client, run_wrk_keys

KEYS = [f"rk-bench-key-{n}" for n in range(5)]


@pytest.fixture()
def recorder() -> Iterator[tuple[str, Counter[str]]]:
    seen: Counter[str] = Counter()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (the http.server name)
            self.rfile.read(int(self.headers.get("content-length", "0")))
            seen[self.headers.get("authorization", "")] += 1
            body = b'{"choices":[]}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_sends_every_key_of_the_file_in_turn(recorder: tuple[str, Counter[str]], tmp_path: Path) -> None:
    url, seen = recorder
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("".join(k + "\n" for k in KEYS))
    result = run_wrk_keys(url, b"{}", keys_file, 2, 1.0, tmp_path)
    assert result.requests > 20 and result.errors == 0
    assert set(seen) == {f"Bearer {k}" for k in KEYS}
    assert max(seen.values()) - min(seen.values()) <= 2 * 2  # in turn: at most one lap apart per connection


def test_async_client_sends_the_next_key_each_request(recorder: tuple[str, Counter[str]]) -> None:
    url, seen = recorder
    result = run_async_client(url, b"{}", "", 2, stream=False, requests=50, keys=KEYS)
    assert result.requests == 50 and result.errors == 0
    assert seen == Counter({f"Bearer {k}": 10 for k in KEYS})
