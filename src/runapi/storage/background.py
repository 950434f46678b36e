"""Stopping a background task for sure.

On Python 3.11 a cancellation that lands while the task is inside `asyncio.timeout()` or
`asyncio.wait_for()` (redis-py reads use them) can be swallowed as a timeout, leaving the
task running. Background loops therefore check a stop flag too, and `stop_task` cancels
until the task is really done.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (again, if a cancellation was swallowed) and wait until it has finished."""
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    if task is not None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()
