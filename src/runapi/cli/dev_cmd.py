"""`runapi dev`: the gateway, the upstream simulator and one demo key, for a first look without provider keys.

Order matters for a second `runapi dev` on a taken port: the port is bound first, before the
database is touched or a key minted, so that run exits at once (status 1) and changes nothing.
The bound socket is then handed to uvicorn, so no other process can take the port in between.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import threading
import time
from pathlib import Path

import typer
import uvicorn

from runapi.cli.common import Stores, console, errors
from runapi.cli.dev_banner import DevBanner, print_banner
from runapi.cli.dev_key import (
    DevKey,
    ensure_dev_key,
    key_file_for,
    read_secret,
    write_secret,
)
from runapi.logs import SIMULATOR_THREAD, configure_logging
from runapi.storage import is_sqlite, upgrade

HOST = "127.0.0.1"


class PortTaken(Exception):
    """The port is in use; the message says what to do."""


def bind_port(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (as uvicorn would open it), or `PortTaken`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortTaken(f"Port {port} on {host} is already in use (another `runapi dev` or gateway?). "
                            f"Stop it, or choose another port: runapi dev --port {port + 1}") from exc
        raise PortTaken(f"Cannot listen on {host}:{port}: {exc.strerror}.") from exc
    return sock


async def _dev_key(database_url: str, key_file: Path, rotate: bool) -> tuple[DevKey, int]:
    """The demo account's one dev key, and the account's balance in nano-dollars."""
    from runapi.config import load_settings

    stores = Stores(load_settings({"RUNAPI_DATABASE_URL": database_url}))
    try:
        key = await ensure_dev_key(stores, read_secret(key_file), rotate=rotate)
        account = await stores.accounts.find_account("demo")
        balance, _ = await stores.ledger.balance(account.id)
        return key, balance
    finally:
        await stores.engine.dispose()


def _start_simulator() -> str:
    """The upstream simulator in a thread of this process (its log lines are told apart by the thread)."""
    from runapi.simulator import create_simulator_app

    sock = bind_port(HOST, 0)
    server = uvicorn.Server(uvicorn.Config(create_simulator_app(), log_config=None, log_level=None,
                                           access_log=False, loop="uvloop", http="httptools"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=SIMULATOR_THREAD).start()
    while not server.started:
        time.sleep(0.02)
    return f"http://{HOST}:{sock.getsockname()[1]}"


def dev(port: int = typer.Option(8787, help="Gateway port"),
        database: Path = typer.Option(Path("runapi-dev.db"), help="SQLite file for the dev database; the dev "
                                      "key's secret is kept beside it (.key, mode 600)"),
        new_key: bool = typer.Option(False, "--new-key", help="Revoke the dev key and mint a new one")) -> None:
    """A first look without provider keys: the gateway, the upstream simulator and a demo key."""
    import msgspec

    from runapi.catalog import builtin_catalog_data
    from runapi.config import ConfigFile, load_settings
    from runapi.http import create_app
    from runapi.http.server_protocol import guarded_protocol
    from runapi.money import nanos_to_usd
    from runapi.web.rendering import format_usd

    try:
        listener = bind_port(HOST, port)  # before anything is written
    except PortTaken as exc:
        errors.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc

    database = database.absolute()
    database_url = os.environ.get("RUNAPI_DATABASE_URL") or f"sqlite+aiosqlite:///{database}"
    if not is_sqlite(database_url):
        console.print(f"Using {database_url.split('@')[-1]}")
    key_file = key_file_for(database)
    upgrade(database_url)
    key, balance = asyncio.run(_dev_key(database_url, key_file, new_key))
    if key.minted:
        write_secret(key_file, key.secret)

    configure_logging("text", server_level="WARNING", dev=True)
    sim_url = _start_simulator()
    providers = {name: {"base_url": f"{sim_url}/v1" if spec["protocol"] == "openai" else sim_url, "api_key_env": ""}
                 for name, spec in builtin_catalog_data()["providers"].items()}
    config = msgspec.convert({"providers": providers}, ConfigFile)
    settings = load_settings({**os.environ, "RUNAPI_DATABASE_URL": database_url}, config)
    root = f"http://{HOST}:{port}"
    print_banner(console, DevBanner(root=root, simulator=sim_url, secret=key.secret, key_file=str(key_file),
                                    key_minted=key.minted, credit=format_usd(nanos_to_usd(balance))))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host=HOST, port=port, loop="uvloop",
                                           http=guarded_protocol(settings.server), log_config=None, log_level=None,
                                           access_log=False))
    server.run(sockets=[listener])
