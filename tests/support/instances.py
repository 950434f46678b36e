"""Gateway instances as an operator runs them: `runapi serve` processes sharing PostgreSQL and Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from runapi.catalog import builtin_catalog_data
from tests.support.gateway import ADMIN_TOKEN
from tests.support.servers import free_port


def write_config(path: Path, sim_url: str, extra: str = "") -> Path:
    """A RUNAPI_CONFIG file with every built-in provider pointed at the simulator, plus `extra` TOML."""
    lines = []
    for name, spec in builtin_catalog_data()["providers"].items():
        base_url = f"{sim_url}/v1" if spec["protocol"] == "openai" else sim_url
        lines += [f'[providers."{name}"]', f'base_url = "{base_url}"', 'api_key_env = ""', ""]
    path.write_text("\n".join(lines) + extra, "utf-8")
    return path


def admin_client(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)


def funded_account(admin: httpx.Client, name: str, credit_usd: str) -> tuple[str, dict[str, str]]:
    """A new account with `credit_usd` and one key, through the admin API: (account ID, auth headers)."""
    account = admin.post("/admin/accounts", json={"name": name}).raise_for_status().json()["id"]
    admin.post(f"/admin/accounts/{account}/credits", json={"amount_usd": credit_usd}).raise_for_status()
    key = admin.post(f"/admin/accounts/{account}/keys", json={}).raise_for_status().json()["key"]
    return account, {"authorization": f"Bearer {key}"}


def serve_env(database_url: str, redis_url: str, config: Path) -> dict[str, str]:
    return {**os.environ, "RUNAPI_DATABASE_URL": database_url, "RUNAPI_REDIS_URL": redis_url,
            "RUNAPI_ADMIN_TOKEN": ADMIN_TOKEN, "RUNAPI_CONFIG": str(config)}


class ServeProcess:
    """One `runapi serve` process (with `workers` worker processes) on a free port."""

    def __init__(self, env: dict[str, str], log_path: Path, workers: int = 1) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("runapi")), "serve", "--port", str(self.port),
             "--workers", str(workers)],
            env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.log_path = log_path

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"runapi serve exited: {self.log_path.read_text(errors='replace')}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"runapi serve did not answer in {timeout}s: {self.log_path.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
