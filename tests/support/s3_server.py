"""An S3-compatible server process on loopback (moto's standalone server), for the media store."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support.processes import ChildProcess, clean_env
from tests.support.servers import free_port

ACCESS_KEY, SECRET_KEY = "test-access-key", "test-secret-key"


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """Run `moto.server` on a free loopback port until the block exits; yields its endpoint URL."""
    port = free_port()
    with tempfile.TemporaryDirectory() as cwd:
        child = ChildProcess([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], cwd=Path(cwd),
                             env=clean_env())
        try:
            child.wait_for("stderr", lambda lines: any("Running on" in line for line in lines), timeout=60)
            yield f"http://127.0.0.1:{port}"
        finally:
            child.stop(timeout=10)


def create_bucket(endpoint: str, bucket: str) -> None:
    """Create a bucket (moto does not check signatures)."""
    httpx.put(f"{endpoint}/{bucket}", timeout=10).raise_for_status()
