"""One headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) per test session.

Playwright's sync API keeps an asyncio loop running in the thread that started it, which would
break every later `asyncio.run()` and async test in the main thread. So the browser lives in a
thread of its own, and a test hands it a scenario: `browser.run(lambda b: ...)` runs the
function there with the Playwright `Browser` and returns its result (or raises its exception).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
T = TypeVar("T")


class BrowserThread:
    """A Chromium driven from one dedicated thread."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
        self._playwright: Any = None
        self._browser: Any = None
        self._thread.submit(self._start).result(timeout=60)

    def _start(self) -> None:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)

    def run(self, scenario: Callable[[Any], T], timeout: float = 120) -> T:
        """Run `scenario(browser)` in the browser's thread and return what it returns."""
        return self._thread.submit(scenario, self._browser).result(timeout=timeout)

    def close(self) -> None:
        def stop() -> None:
            self._browser.close()
            self._playwright.stop()

        try:
            self._thread.submit(stop).result(timeout=60)
        finally:
            self._thread.shutdown()


@pytest.fixture(scope="session")
def browser() -> Iterator[BrowserThread]:
    """The session's Chromium. Skipped (with the reason) when Chromium is not installed."""
    if not CHROMIUM.exists():
        pytest.skip(f"browser tests need Chromium at {CHROMIUM} (Debian: apt-get install -y chromium)")
    instance = BrowserThread()
    try:
        yield instance
    finally:
        instance.close()


def artifact(name: str) -> Path:
    """A path under `test-artifacts/` (created on demand, gitignored) for screenshots."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
