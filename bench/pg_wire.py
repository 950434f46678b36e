"""A counting TCP proxy for PostgreSQL's wire protocol: round trips and statements a gateway sends.

    python -m bench.pg_wire --listen PORT --upstream 127.0.0.1:5432 --control CONTROL_PORT

`pg_stat_statements` needs `shared_preload_libraries` (a server restart), so the bench counts on the wire
instead: every message the client sends after its startup packet starts with a type byte and a length.
A round trip is a `Sync` (`S`, the end of an extended-protocol exchange: asyncpg's prepared statements)
or a simple `Query` (`Q`); a statement is an `Execute` (`E`) or a `Query`. Connecting to the control
port answers the totals so far as one JSON line. An `SSLRequest` is answered `N` (plain text, as a
server without SSL would), so the rest stays readable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
from collections import Counter

_SSL_REQUEST = 80877103
_GSS_REQUEST = 80877104
counts: Counter[str] = Counter()


async def _pipe_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def _client_messages(reader: asyncio.StreamReader, upstream: asyncio.StreamWriter,
                           client: asyncio.StreamWriter) -> None:
    while True:  # untyped startup packets: SSL/GSS requests (answered here), then the startup message
        head = await reader.readexactly(8)
        length, code = struct.unpack("!ii", head)
        if code in (_SSL_REQUEST, _GSS_REQUEST):
            client.write(b"N")
            await client.drain()
            continue
        upstream.write(head + await reader.readexactly(length - 8))
        break
    counts["connections"] += 1
    while True:
        head = await reader.readexactly(5)
        kind, length = head[:1], struct.unpack("!i", head[1:])[0]
        body = await reader.readexactly(length - 4)
        if kind in (b"S", b"Q"):
            counts["round_trips"] += 1
        if kind in (b"E", b"Q"):
            counts["statements"] += 1
        upstream.write(head + body)
        if kind in (b"S", b"Q", b"H", b"X"):  # the ends of what a client sends before it waits
            await upstream.drain()


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int) -> None:
    up_reader, up_writer = await asyncio.open_connection(host, port)
    back = asyncio.create_task(_pipe_server(up_reader, writer))
    try:
        await _client_messages(reader, up_writer, writer)
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        up_writer.close()
        await back


async def _control(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(json.dumps(dict(counts)).encode() + b"\n")
    await writer.drain()
    writer.close()


async def main(listen: int, upstream: str, control: int) -> None:
    host, _, port = upstream.rpartition(":")
    server = await asyncio.start_server(lambda r, w: _serve(r, w, host, int(port)), "127.0.0.1", listen)
    stats = await asyncio.start_server(_control, "127.0.0.1", control)
    async with server, stats:
        await asyncio.gather(server.serve_forever(), stats.serve_forever())


def read_counts(control: int) -> dict[str, int]:
    """The proxy's totals so far (from the bench process)."""
    import socket

    with socket.create_connection(("127.0.0.1", control), timeout=5) as sock:
        data = sock.makefile().readline()
    return {k: int(v) for k, v in json.loads(data).items()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", type=int, required=True)
    parser.add_argument("--upstream", default="127.0.0.1:5432")
    parser.add_argument("--control", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(main(args.listen, args.upstream, args.control))
