"""`POST /v1/tasks` bodies: decoded, validated, and turned into the request a worker will run.

Bad input fails here, at submission, with the same errors a synchronous call would get
(paths inside the input are prefixed `input.`), so a queued task is always runnable.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from runapi.errors import InvalidRequest
from runapi.pipeline import known_model
from runapi.tasks.host import TaskHost
from runapi.tasks.runners import check_input

MAX_METADATA_KEYS = 16


class NewTask(msgspec.Struct, forbid_unknown_fields=True):
    input: dict[str, Any]
    model: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    endpoint: Literal["/v1/chat/completions", "/v1/messages", "/v1/videos"] = "/v1/chat/completions"
    callback_url: str | None = None
    metadata: dict[Annotated[str, Meta(max_length=64)], Annotated[str, Meta(max_length=512)]] | None = None


class PreparedTask(msgspec.Struct, frozen=True):
    model: str
    endpoint: str  # a key of records.ENDPOINTS
    request: bytes  # the input to run, JSON


def decode_new_task(body: bytes) -> tuple[NewTask, dict[str, Any]]:
    """The typed body and the raw one (for the idempotency fingerprint); `InvalidRequest` naming the field."""
    try:
        raw = msgspec.json.decode(body or b"{}", type=dict[str, Any])
        return msgspec.convert(raw, NewTask), raw
    except msgspec.ValidationError as exc:
        message = str(exc)
        path = message.rpartition(" - at `")[2].rstrip("`") if " - at `" in message else None
        raise InvalidRequest(f"Invalid task: {message}", param=path) from exc
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:  # bad UTF-8, nesting too deep
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc


def prepare(gw: TaskHost, new: NewTask) -> PreparedTask:
    """Check the task's input as its endpoint would, and fix its model."""
    data = dict(new.input)
    model = new.model or data.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("Name the model: `model` (or `input.model`).", param="model")
    if new.model and data.get("model") not in (None, new.model):
        raise InvalidRequest(f"`model` is {new.model!r} but `input.model` is {data['model']!r}; give one.",
                             param="input.model")
    if data.get("stream"):
        raise InvalidRequest("Tasks do not stream: remove `input.stream` (the result is kept for you).",
                             param="input.stream")
    data["model"] = model
    data.pop("stream", None)
    data.pop("stream_options", None)
    if new.metadata is not None and len(new.metadata) > MAX_METADATA_KEYS:
        raise InvalidRequest(f"metadata may have at most {MAX_METADATA_KEYS} keys.", param="metadata")
    request = msgspec.json.encode(data)
    endpoint = "messages" if new.endpoint == "/v1/messages" else "chat.completions"
    try:
        check_input(endpoint, request)
    except InvalidRequest as exc:
        if exc.param and exc.param.startswith("$"):
            exc.param = "input" + exc.param[1:]
        exc.message = exc.message.replace("Invalid request body", "Invalid task input")
        exc.args = (exc.message,)
        raise
    entry = known_model(gw, model, "text")
    return PreparedTask(model=entry.id, endpoint=endpoint, request=request)
