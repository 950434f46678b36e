"""Task workers inside the gateway process: claim, run through the synchronous pipeline, settle, record.

Guarantees, with the store's lease:
- a task accepted is run until it reaches a final state: a run interrupted by a crash (its
  lease lapses) or by a shutdown (it is handed back at once) is run again, up to `max_runs`;
- it is never charged twice: every run uses generation ID `gen-<task>-<k>`, the first not
  recorded as failed (see `TaskStore.generation_for_run`), so a run after a charged run, or
  overlapping a stalled one, reuses its ID, which the ledger's unique `generation_id` lets
  through only once;
- a task that ends without succeeding keeps no charge: if an earlier run was charged but its
  output was lost, that charge is refunded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from runapi.clock import utcnow
from runapi.errors import AuthError, GatewayError, RateLimited
from runapi.pipeline import Principal
from runapi.storage import IdleGate, poll
from runapi.tasks.host import TaskHost
from runapi.tasks.records import Task, TaskOutput
from runapi.tasks.runners import RUNNERS
from runapi.tasks.store import EventFactory, TaskStore
from runapi.tasks.video_jobs import VideoSteps

log = logging.getLogger("runapi.tasks")

INTERNAL_ERROR = {"message": "The task failed unexpectedly; the failure was logged.", "type": "server_error",
                  "param": None, "code": None}


def interrupted_error(task: Task) -> dict[str, Any]:
    return {"message": f"The task was interrupted {task.runs - 1} times (its worker stopped) and was given up.",
            "type": "server_error", "param": None, "code": "task_interrupted"}


def worker_name() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(3)}"


class TaskWorkers:
    """Up to `[tasks] workers` tasks at once, polling the queue (and woken at once by local submissions)."""

    def __init__(self, gw: TaskHost, store: TaskStore, event_for: EventFactory,
                 on_event: Callable[[], None] = lambda: None) -> None:
        self.gw = gw
        self.settings = gw.settings.tasks
        self.store = store
        self.event_for = event_for
        self.on_event = on_event
        self.name = worker_name()
        self.videos = VideoSteps(gw, store, event_for)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()  # cancelled on the customer's request, not by a shutdown
        self._finishing: set[str] = set()
        self._wake = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._poller = asyncio.get_running_loop().create_task(self._poll(), name="task-workers")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; interrupt running tasks and hand them back to the queue for another run."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        running = list(self._running.values())
        for runner in running:
            runner.cancel()
        await asyncio.gather(*running, return_exceptions=True)

    def cancel_local(self, task_id: str) -> None:
        """Stop a task running in this process, on the customer's request."""
        runner = self._running.get(task_id)
        if runner is not None and task_id not in self._finishing:
            self._cancelled.add(task_id)
            runner.cancel()

    async def _poll(self) -> None:
        gate = IdleGate(self.gw.change_probe, max_idle=self.gw.server.idle_poll_max)  # idle on SQLite: query only after a commit or a due time
        await poll(gate, self._wake, self.settings.poll_interval, lambda: self._claim(gate),
                   lambda: log.warning("could not claim tasks", exc_info=True))

    async def _claim(self, gate: IdleGate) -> None:
        """Start claimed tasks while workers are free; tell `gate` when nothing was left to claim."""
        while len(self._running) < self.settings.workers:
            task = await self.store.claim(self.name, self.settings.lease)
            if task is None:
                gate.idle(await self.store.next_due() if gate.watching else None)
                return
            self._running[task.id] = asyncio.get_running_loop().create_task(self._run(task), name=f"task {task.id}")
        gate.busy()  # every worker is busy: a finishing run wakes the poller

    async def _run(self, task: Task) -> None:
        runner = asyncio.current_task()
        assert runner is not None
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(task.id, runner))
        generation_id: str | None = None
        try:
            if task.is_video:  # one generation per video task, charged in its final transaction
                await self._step_video(task)
                return
            generation_id, charged = await self.store.generation_for_run(task)
            await self._execute(task, generation_id, charged)
        except asyncio.CancelledError:
            if task.id in self._cancelled:
                await asyncio.shield(self._finish(task, "cancelled", generation_id=generation_id))
            else:  # shutting down: hand it back now rather than when the lease lapses
                await asyncio.shield(self.store.requeue(task.id, self.name, utcnow(), count_run=True))
            raise
        except Exception:
            log.exception("task %s failed unexpectedly", task.id)
            await asyncio.shield(self._finish(task, "failed", error=INTERNAL_ERROR, generation_id=generation_id))
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self._running.pop(task.id, None)
            self._cancelled.discard(task.id)
            self._finishing.discard(task.id)
            self._wake.set()

    async def _heartbeat(self, task_id: str, runner: asyncio.Task[None]) -> None:
        """Renew the lease while the task runs; stop it if the customer cancelled it on another instance."""
        while True:
            await asyncio.sleep(self.settings.lease / 3)
            try:
                ours, cancel = await self.store.renew(task_id, self.name, self.settings.lease)
            except Exception:
                log.warning("could not renew the lease of task %s", task_id, exc_info=True)
                continue
            if not ours:
                log.warning("task %s: lease lost to another worker", task_id)
                return
            if cancel:
                self.cancel_local(task_id)
                return

    async def _step_video(self, task: Task) -> None:
        if task.runs > self.settings.max_runs:
            await self._finish(task, "failed", error=interrupted_error(task))
            return
        finished = await self.videos.step(task, self.name)
        if finished is not None and finished.callback_url:
            self.on_event()

    async def _execute(self, task: Task, generation_id: str, charged: bool) -> None:
        if not charged and task.runs > self.settings.max_runs:
            await self._finish(task, "failed", error=interrupted_error(task))
            return
        await self.store.set_generation(task.id, self.name, generation_id)
        try:
            principal = await self._principal(task)
            done = await RUNNERS[task.endpoint](self.gw, principal, task.request.encode(), task.id, generation_id)
        except RateLimited as exc:
            if exc.code == "request_too_large":  # would never pass: a failure, not a wait
                await self._finish(task, "failed", error=exc.error_body(), generation_id=generation_id)
                return
            # Not a run (nothing was called or written): back to the queue until the limit allows it.
            delay = max(exc.retry_after, self.settings.poll_interval)
            await self.store.requeue(task.id, self.name, utcnow() + timedelta(seconds=delay), count_run=False)
            return
        except GatewayError as exc:
            await self._finish(task, "failed", error=exc.error_body(), generation_id=generation_id)
            return
        self._finishing.add(task.id)
        output = TaskOutput(task_id=task.id, body=done.body, content_type="application/json",
                            expires_at=utcnow() + timedelta(seconds=self.settings.output_ttl))
        await self.gw.settlements.flush()  # the charge may still be only journaled
        cost = await self.store.charge_of(generation_id)
        await asyncio.shield(self._finish(task, "succeeded", cost_nanos=cost, output=output))

    async def _principal(self, task: Task) -> Principal:
        """The task's key as it is now: a key revoked since submission no longer runs anything."""
        key = await self.gw.accounts.get_key(task.key_id)
        if not key.usable(utcnow()):
            raise AuthError("The API key that created this task was revoked or has expired.")
        account = await self.gw.accounts.get_account(task.account_id)
        return Principal(key_id=key.id, account_id=account.id, tier=account.tier, limits=key.limits)

    async def _finish(self, task: Task, status: str, *, cost_nanos: int | None = None,
                      error: dict[str, Any] | None = None, output: TaskOutput | None = None,
                      generation_id: str | None = None) -> None:
        if status != "succeeded":
            await self._refund_lost_charge(task, generation_id)
            cost_nanos = 0
        finished = await self.store.finish(task, self.name, status, cost_nanos=cost_nanos, error=error,
                                           output=output, event_for=self.event_for)
        if task.is_video:  # its hold was released in the ledger
            self.gw.credit.invalidate(task.account_id)
        if finished is None:
            log.warning("task %s was taken over by another worker; this run's outcome (%s) is dropped",
                        task.id, status)
        elif finished.callback_url:
            self.on_event()

    async def _refund_lost_charge(self, task: Task, generation_id: str | None) -> None:
        """Refund a charge of a run whose output was lost (the task did not succeed). Once per generation."""
        if generation_id is None:
            return
        charge = await self.store.charge_of(generation_id)
        if charge <= 0:
            return
        note = f"refund of {generation_id} (task {task.id} did not succeed)"
        if await self.store.has_ledger_note(task.account_id, note):
            return
        await self.gw.accounts.add_credit(task.account_id, "refund", charge, note)
