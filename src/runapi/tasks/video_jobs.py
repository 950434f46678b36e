"""One step of a video task, run by a task worker that claimed it (see `worker.TaskWorkers`).

A video task moves by short steps, each under the worker's lease, with its state in the database
between them (`video_store`): submit the job upstream; then poll it, handing the task back to the
queue between polls (`[tasks] video_poll_initial`, growing ×1.5 to `video_poll_max`), so no worker
waits on a job and a restart, or a SIGKILL, resumes where the database says. On SUCCESS the video
and its cover are copied into the media store, then one transaction releases the hold, writes the
generation row and its charge (units × the unit price fixed at submission), the output and the
webhook event. FAIL, a refusal, the overall timeout (`video_timeout` after creation) or a
cancellation end the task with its hold released and nothing charged.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from runapi.clock import utcnow
from runapi.errors import UpstreamError, UpstreamRejected, UpstreamTimeout
from runapi.media.results import KeptVideo, keep_video
from runapi.media.store import MediaTooLarge
from runapi.pipeline import video_settlement
from runapi.providers import Deployment, VideoJobs
from runapi.tasks.host import TaskHost
from runapi.tasks.records import Task, TaskOutput
from runapi.tasks.store import EventFactory, TaskStore
from runapi.tasks.video_render import VideoOutput
from runapi.tasks.video_store import VideoJobStore, video_generation_id

__all__ = ["VideoSteps", "video_error"]

log = logging.getLogger("runapi.tasks")

_encode = msgspec.json.Encoder().encode


def video_error(message: str, code: str, error_type: str = "server_error") -> dict[str, Any]:
    return {"message": message, "type": error_type, "param": None, "code": code}


def poll_delay(polls: int, initial: float, longest: float) -> float:
    """Seconds to wait before the next poll, after `polls` polls (×1.5 each, at most `longest`)."""
    return min(initial * 1.5 ** max(0, polls), longest)


class VideoSteps:
    def __init__(self, gw: TaskHost, store: TaskStore, event_for: EventFactory) -> None:
        self.gw = gw
        self.settings = gw.settings.tasks
        self.store = store
        self.jobs = VideoJobStore(store.engine)
        self.event_for = event_for

    async def step(self, task: Task, worker: str) -> Task | None:
        """Run the task's next step; the task if it finished, else None (rescheduled, or lost)."""
        if task.cancel_requested:  # asked while a step ran (the step then handed it back)
            finished = await self.store.finish(task, worker, "cancelled", cost_nanos=0, event_for=self.event_for)
            self.gw.credit.invalidate(task.account_id)
            return finished
        if task.deadline_at is not None and utcnow() >= task.deadline_at:
            return await self._fail(task, worker, video_error(
                f"The video was not ready within {self.settings.video_timeout:g} s; nothing was charged.",
                "video_timeout"))
        if task.upstream_state == "submitting":
            return await self._fail(task, worker, video_error(
                "The gateway stopped while submitting this video, so whether the provider received it is unknown; "
                "it was not submitted again and nothing was charged. Create it again.", "submission_unknown"))
        deployment = self._deployment(task)
        if deployment is None:
            return await self._fail(task, worker, video_error(
                f"The model `{task.model}` has no deployment that generates videos.", "no_video_deployment"))
        provider = self.gw.provider_for(deployment)
        assert isinstance(provider, VideoJobs)
        if task.upstream_state is None:
            return await self._submit(task, worker, provider, deployment)
        return await self._poll(task, worker, provider, deployment)

    def _deployment(self, task: Task) -> Deployment | None:
        """The deployment the job went to, or (before submission) the model's first that serves videos."""
        for deployment in self.gw.deployments.get(task.model, []):
            if not isinstance(self.gw.provider_for(deployment), VideoJobs):
                continue
            if task.provider_name is None or (deployment.provider_name == task.provider_name
                                              and deployment.upstream_model == task.upstream_model):
                return deployment
        return None

    async def _submit(self, task: Task, worker: str, provider: VideoJobs, deployment: Deployment) -> Task | None:
        if not await self.jobs.mark_submitting(task.id, worker, deployment.provider_name, deployment.upstream_model):
            return None  # taken over by another worker
        request = msgspec.json.decode(task.request)
        try:
            job_id = await provider.submit_video(request, deployment, request_id=task.id)
        except UpstreamRejected as exc:  # the provider refused this request: it has no job
            return await self._fail(task, worker, {**exc.error_body()["error"], "type": "invalid_request_error"})
        except UpstreamTimeout:  # it may have taken the job: never submit twice
            return await self._fail(task, worker, video_error(
                "The provider did not answer the video submission in time, so whether it received it is unknown; "
                "it was not submitted again and nothing was charged.", "submission_unknown"))
        except UpstreamError as exc:  # refused before taking it (unreachable, 429, 5xx): try again later
            log.warning("video task %s: submission refused (%s); retrying", task.id, exc.message)
            if await self.jobs.unmark_submitting(task.id, worker):
                await self._wait(task, worker)
            return None
        if await self.jobs.mark_submitted(task.id, worker, job_id):
            await self._wait(task, worker, first=True)
        return None

    async def _poll(self, task: Task, worker: str, provider: VideoJobs, deployment: Deployment) -> Task | None:
        assert task.upstream_id is not None
        try:
            state = await provider.video_status(task.upstream_id, deployment)
        except UpstreamError as exc:  # a failed poll is not a failed job: poll again
            log.warning("video task %s: poll failed (%s)", task.id, exc.message)
            await self._wait(task, worker)
            return None
        if state.state == "processing":
            await self._wait(task, worker)
            return None
        if state.state == "failed":
            return await self._fail(task, worker, video_error(
                f"The provider could not generate the video: {state.error}", "video_generation_failed"))
        media = self.gw.media
        base_url = self.gw.settings.server.public_base_url or task.origin
        try:
            kept = await keep_video(state.video_url, state.cover_url or None, media.downloader,
                                    lambda stored: media.url(base_url, stored))
        except MediaTooLarge as exc:
            return await self._fail(task, worker, video_error(f"The video could not be kept: {exc}", "media_too_large"))
        except UpstreamError as exc:  # the provider's file was unreachable: poll (and download) again
            log.warning("video task %s: download failed (%s)", task.id, exc.message)
            await self._wait(task, worker)
            return None
        return await self._succeed(task, worker, deployment, kept)

    async def _succeed(self, task: Task, worker: str, deployment: Deployment, kept: KeptVideo) -> Task | None:
        entry = self.gw.model(task.model)
        assert entry is not None and task.price_nanos is not None and task.units
        settlement = video_settlement(entry, account_id=task.account_id, key_id=task.key_id,
                                      generation_id=video_generation_id(task.id), deployment=deployment,
                                      units=task.units, price_nanos=task.price_nanos, hold_nanos=task.hold_nanos or 0,
                                      client_request_id=task.id)
        expires = min(kept.video.expires, int((utcnow() + timedelta(seconds=self.settings.output_ttl)).timestamp()))
        body = VideoOutput(video_url=kept.url, video_key=kept.video.key, expires_at=expires,
                           thumbnail_url=kept.cover_url, thumbnail_key=None if kept.cover is None else kept.cover.key,
                           size_bytes=kept.video.size)
        output = TaskOutput(task_id=task.id, body=_encode(body), content_type="application/json",
                            expires_at=datetime.fromtimestamp(expires, UTC))
        finished = await asyncio.shield(self.store.finish(  # a cancellation now can't split the charge
            task, worker, "succeeded", cost_nanos=settlement.charge_nanos, output=output, event_for=self.event_for,
            settlement=settlement))
        self.gw.credit.invalidate(task.account_id)
        return finished

    async def _fail(self, task: Task, worker: str, error: dict[str, Any]) -> Task | None:
        finished = await self.store.finish(task, worker, "failed", cost_nanos=0, error=error,
                                           event_for=self.event_for)
        self.gw.credit.invalidate(task.account_id)
        return finished

    async def _wait(self, task: Task, worker: str, *, first: bool = False) -> None:
        delay = poll_delay(0 if first else task.polls, self.settings.video_poll_initial, self.settings.video_poll_max)
        run_after = utcnow() + timedelta(seconds=delay)
        if task.deadline_at is not None:
            run_after = min(run_after, task.deadline_at)
        await self.jobs.schedule(task.id, worker, run_after)
