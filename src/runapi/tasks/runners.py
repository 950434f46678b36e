"""What a task runs: its input through the synchronous pipeline of its endpoint, with a fixed generation ID."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from runapi.pipeline import (
    Completed,
    Principal,
    complete_chat,
    complete_messages,
    prepare_messages_call,
)
from runapi.protocols.openai import decode_chat_request
from runapi.tasks.host import TaskHost

Runner = Callable[[TaskHost, Principal, bytes, str, str], Awaitable[Completed]]


async def run_chat(gw: TaskHost, principal: Principal, request: bytes, task_id: str, generation_id: str) -> Completed:
    chat, raw = decode_chat_request(request)
    return await complete_chat(gw, principal, chat, raw, started=time.perf_counter(), client_request_id=task_id,
                               generation_id=generation_id)


async def run_messages(gw: TaskHost, principal: Principal, request: bytes, task_id: str,
                       generation_id: str) -> Completed:
    return await complete_messages(gw, principal, prepare_messages_call(request, {}), started=time.perf_counter(),
                                   client_request_id=task_id, generation_id=generation_id)


def check_input(endpoint: str, request: bytes) -> None:
    """Validate a task's input as its endpoint would; `InvalidRequest` naming the field."""
    if endpoint == "messages":
        prepare_messages_call(request, {})
    else:
        decode_chat_request(request)


RUNNERS: dict[str, Runner] = {"chat.completions": run_chat, "messages": run_messages}
