"""Tasks for one gateway process: submission, views, cancellation, and the background loops
(task workers, the webhook sender, the purge of expired outputs and idempotency keys).

Built next to the `Gateway` and started after it; stopped before it, so interrupted runs still
settle through the gateway's settlement writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy.exc import IntegrityError

from runapi.clock import utcnow
from runapi.errors import Conflict, InvalidRequest
from runapi.outbound.callback_guard import CallbackGuard
from runapi.outbound.output_urls import OutputSigner, output_secret
from runapi.pipeline import Principal
from runapi.tasks.host import TaskHost
from runapi.tasks.idempotency import IdempotencyStore, fingerprint
from runapi.tasks.records import Task, TaskOutput
from runapi.tasks.render import event_payload, task_object
from runapi.tasks.store import TaskStore
from runapi.tasks.submission import MAX_METADATA_KEYS, NewTask, prepare
from runapi.tasks.video_render import VideoOutput
from runapi.tasks.video_submission import NewVideo, create_video_task
from runapi.tasks.webhook_store import WebhookStore, event_row
from runapi.tasks.webhooks import WebhookSender
from runapi.tasks.worker import TaskWorkers

log = logging.getLogger("runapi.tasks")


def new_task_id() -> str:
    return "task_" + secrets.token_hex(12)


class TaskRuntime:
    def __init__(self, gw: TaskHost) -> None:
        self.gw = gw
        self.settings = gw.settings.tasks
        self.store = TaskStore(gw.engine)
        self.webhooks = WebhookStore(gw.engine)
        self.idempotency = IdempotencyStore(gw.engine, self.settings.idempotency_ttl)
        self.guard = CallbackGuard(self.settings.webhook_allow)
        self.sender = WebhookSender(self.webhooks, self.settings, self.guard, gw.change_probe, gw.server.idle_poll_max)
        self.workers = TaskWorkers(gw, self.store, self.event_for, on_event=self.sender.wake)
        self._signer: OutputSigner | None = None
        self._purger: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._signer = OutputSigner(await output_secret(self.gw.engine, self.gw.settings.output_secret))
        self.workers.start()
        self.sender.start()
        self._purger = asyncio.get_running_loop().create_task(self._purge(), name="output-purger")

    async def stop(self) -> None:
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        await self.workers.stop()
        await self.sender.stop()

    @property
    def signer(self) -> OutputSigner:
        assert self._signer is not None, "TaskRuntime.start() was not called"
        return self._signer

    async def submit(self, principal: Principal, new: NewTask, raw: dict[str, Any], origin: str,
                     idempotency_key: str | None = None) -> tuple[Task, bool]:
        """Queue a task: (task, replayed). A retry with the same `Idempotency-Key` and body gets the
        same task back (replayed); the same key with another body is `Conflict`."""
        if new.endpoint == "/v1/videos":
            fields = {**new.input, "model": new.model or new.input.get("model")}
            return await self.submit_video(principal, NewVideo(fields=fields, origin=origin, callback_url=new.callback_url,
                                                               metadata=new.metadata), idempotency_key)
        prepared = prepare(self.gw, new)
        if new.callback_url is not None:
            await self.guard.check(new.callback_url)
            await self.webhooks.secret(principal.account_id)  # the account can fetch it before the first event
        now = utcnow()
        task_id = new_task_id()
        values = {"id": task_id, "account_id": principal.account_id, "key_id": principal.key_id,
                  "model": prepared.model, "endpoint": prepared.endpoint, "request": prepared.request.decode(),
                  "callback_url": new.callback_url, "origin": origin[:500], "status": "queued", "runs": 0,
                  "metadata_json": None if new.metadata is None else msgspec.json.encode(new.metadata).decode(),
                  "run_after": now, "created_at": now}
        fp = fingerprint("/v1/tasks", raw)
        idem = None if idempotency_key is None else self.idempotency.row(
            principal.account_id, idempotency_key, fp, status="done", resource_id=task_id)
        try:
            task = await self.store.create(values, idem)
        except IntegrityError:
            if idempotency_key is None:
                raise
            existing = await self.idempotency.existing_resource(principal.account_id, idempotency_key, fp)
            return await self.store.get(existing, principal.account_id), True
        self.workers.wake()
        return task, False

    async def submit_video(self, principal: Principal, new: NewVideo,
                           idempotency_key: str | None = None) -> tuple[Task, bool]:
        """Queue a video task with its price held (see `video_submission`): (task, replayed)."""
        if new.metadata is not None and len(new.metadata) > MAX_METADATA_KEYS:
            raise InvalidRequest(f"metadata may have at most {MAX_METADATA_KEYS} keys.", param="metadata")
        if new.callback_url is not None:
            await self.guard.check(new.callback_url)
            await self.webhooks.secret(principal.account_id)
        task, replayed = await create_video_task(self.gw, self.store, self.idempotency, principal, new,
                                                 idempotency_key)
        self.workers.wake()
        return task, replayed

    async def video_output(self, task: Task) -> VideoOutput | None:
        """A delivered video task's kept output, while it is kept."""
        output = await self.store.output(task.id) if task.status == "succeeded" else None
        if output is None or output.expires_at <= utcnow():
            return None
        return msgspec.json.decode(output.body, type=VideoOutput)

    async def cancel(self, principal: Principal, task_id: str) -> Task:
        """Cancel a queued task at once, or stop a running one (here, or on its instance within a
        lease/3). A task that already finished is `Conflict`."""
        task = await self.store.get(task_id, principal.account_id)
        if task.terminal:
            raise Conflict(f"Task {task_id} already {task.status}; only queued or running tasks can be cancelled.",
                           code="task_finished")
        task = await self.store.cancel(task_id, principal.account_id, self.event_for)
        if task.is_video:  # its hold may have been released in the ledger
            self.gw.credit.invalidate(task.account_id)
        if task.status == "cancelled":
            if task.callback_url:
                self.sender.wake()
            return task
        self.workers.cancel_local(task_id)
        for _ in range(20):  # give a local run a moment to stop, so the answer shows the outcome
            await asyncio.sleep(0.05)
            task = await self.store.get(task_id, principal.account_id)
            if task.terminal:
                break
        return task

    def base_url(self, task: Task) -> str:
        return self.gw.settings.server.public_base_url or task.origin

    def output_url(self, task: Task, expires_at: datetime) -> str:
        return self.signer.url(self.base_url(task), task.id, expires_at)

    async def view(self, task: Task, *, with_result: bool = True) -> dict[str, Any]:
        """The task's API object, with its result and a signed output URL while the output is kept."""
        if task.status != "succeeded":
            return task_object(task)
        output = await self.store.output(task.id) if with_result or task.is_video else None
        if output is None or output.expires_at <= utcnow():
            return task_object(task)
        return task_object(task, result=output.body if with_result else None,
                           output_url=self._output_url(task, output), output_expires_at=output.expires_at)

    def _output_url(self, task: Task, output: TaskOutput) -> str:
        """A video task's cached video URL (the MP4 itself); any other task's signed result URL."""
        if task.is_video:
            return msgspec.json.decode(output.body, type=VideoOutput).video_url
        return self.output_url(task, output.expires_at)

    async def views(self, tasks: list[Task]) -> list[dict[str, Any]]:
        """Task objects for a list: output URLs, but no results."""
        if any(t.is_video for t in tasks):
            return [await self.view(t, with_result=False) for t in tasks]
        expiries = await self.store.output_expiries([t.id for t in tasks if t.status == "succeeded"])
        now = utcnow()
        return [task_object(t, output_url=self.output_url(t, expiries[t.id]), output_expires_at=expiries[t.id])
                if t.id in expiries and expiries[t.id] > now else task_object(t) for t in tasks]

    def event_for(self, task: Task, output: TaskOutput | None) -> dict[str, Any] | None:
        """The outbox row announcing that `task` reached a final state (None without a callback)."""
        if not task.callback_url:
            return None
        data = task_object(task)
        if output is not None:
            data = task_object(task, result=output.body, output_url=self._output_url(task, output),
                               output_expires_at=output.expires_at)
        return event_row(task.id, task.account_id, task.callback_url, f"task.{task.status}",
                         event_payload(f"task.{task.status}", data))

    async def _purge(self) -> None:
        while True:
            await asyncio.sleep(self.settings.purge_interval)
            try:
                outputs, keys = await self.store.purge()
                if outputs or keys:
                    log.info("purged %d expired outputs and %d idempotency keys", outputs, keys)
            except Exception:
                log.warning("could not purge expired outputs", exc_info=True)
