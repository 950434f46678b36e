"""`POST /v1/videos` bodies (OpenAI's video API shape, JSON or the multipart form the openai SDK posts)
turned into the provider's video request (Z.ai's `videos/generations` fields), checked against the
model's typed inputs.

OpenAI's fields map onto the provider's: `seconds` → `duration`, `size` → `size`, `input_reference`
(an uploaded image, or `{"image_url": ...}`) → `image_url` (an uploaded file becomes a base64 data URL,
which Z.ai accepts). The provider's own fields (`quality`, `fps`, `with_audio`, `image_url`) are
accepted as they are. Pure functions: no I/O.
"""

from __future__ import annotations

import base64
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import msgspec

from runapi.catalog import ModelEntry, check_request, require_mode
from runapi.errors import InvalidRequest
from runapi.money import usd_to_nanos

__all__ = ["VideoCall", "decode_video_body", "prepare_video_call"]

_OPENAI_FIELDS = ("model", "prompt", "seconds", "size", "input_reference")
_PROVIDER_FIELDS = ("quality", "fps", "with_audio", "image_url", "duration")
_INT_FIELDS = ("fps", "duration")
MAX_REFERENCE_BYTES = 10 * 1024 * 1024  # an uploaded reference image


class VideoCall(msgspec.Struct, frozen=True):
    """A checked video request: what to send the provider, what it costs, what the video object shows."""

    model: str  # the public model ID
    provider_request: dict[str, Any]  # the provider's body, without `model`
    units: int  # billed units: 1 video, or its seconds for a model priced per second
    price_nanos: int  # the charge on success: units × unit price
    seconds: str
    size: str
    prompt: str


def _form_fields(content_type: str, body: bytes) -> dict[str, Any]:
    """A multipart form's fields; a file part becomes a base64 data URL (`input_reference`)."""
    message = BytesParser(policy=HTTP).parsebytes(b"content-type: " + content_type.encode("latin-1")
                                                 + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise InvalidRequest("The body is neither JSON nor a multipart form.")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if part.get_filename() is not None:
            if len(data) > MAX_REFERENCE_BYTES:
                raise InvalidRequest(f"The reference file is larger than {MAX_REFERENCE_BYTES} bytes.", param=name)
            media_type = part.get_content_type() or "application/octet-stream"
            fields[name] = {"image_url": f"data:{media_type};base64,{base64.b64encode(data).decode()}"}
        elif name.startswith("input_reference[") and name.endswith("]"):
            fields.setdefault("input_reference", {})[name[16:-1]] = data.decode(errors="replace")
        else:
            fields[name] = data.decode(errors="replace")
    for name in _INT_FIELDS:
        if isinstance(fields.get(name), str) and fields[name].isascii() and fields[name].isdigit():
            fields[name] = int(fields[name])
    if isinstance(fields.get("with_audio"), str):
        fields["with_audio"] = fields["with_audio"].lower() == "true"
    return fields


def decode_video_body(content_type: str, body: bytes) -> dict[str, Any]:
    """The fields of a `POST /v1/videos` body (JSON or `multipart/form-data`); `InvalidRequest` if neither."""
    if content_type.lower().startswith("multipart/form-data"):
        return _form_fields(content_type, body)
    try:
        raw = msgspec.json.decode(body or b"{}")
    except (msgspec.DecodeError, RecursionError) as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return raw


def _provider_request(fields: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(fields) - {*_OPENAI_FIELDS, *_PROVIDER_FIELDS})
    if unknown:
        raise InvalidRequest(f"Unknown field `{unknown[0]}`.", param=unknown[0])
    request = {name: fields[name] for name in ("prompt", "size", *_PROVIDER_FIELDS) if name in fields}
    seconds = fields.get("seconds")
    if seconds is not None:
        if not isinstance(seconds, (str, int)) or isinstance(seconds, bool) or not str(seconds).isdigit():
            raise InvalidRequest("`seconds` must be a whole number of seconds, such as \"5\".", param="seconds")
        request["duration"] = int(seconds)
    reference = fields.get("input_reference")
    if reference is not None:
        url = reference.get("image_url") if isinstance(reference, dict) else None
        if not isinstance(url, str) or not url:
            raise InvalidRequest("`input_reference` must be an image file or {\"image_url\": ...}.",
                                 param="input_reference")
        request["image_url"] = url
    return request


def prepare_video_call(entry: ModelEntry, fields: dict[str, Any]) -> VideoCall:
    """Check a video request against `entry` (400 naming the field, before any hold) and price it."""
    require_mode(entry.id, entry.mode, "video", entry.endpoint)
    request = _provider_request(fields)
    try:
        check_request(entry.input_schema(), {"model": entry.id, **request})
    except InvalidRequest as exc:
        if exc.param == "duration" and "seconds" in fields:
            exc.param = "seconds"
        raise
    if entry.unit_pricing is None:  # the catalog refuses a video model without unit prices
        raise InvalidRequest(f"The model `{entry.id}` has no unit price.", param="model")
    if "duration" not in request and entry.inputs.durations:  # sent explicitly: the video object shows it
        request["duration"] = entry.inputs.durations[0]
    if "size" not in request and entry.inputs.sizes:
        request["size"] = entry.inputs.sizes[0]
    duration = int(request.get("duration") or 0)
    units = duration if entry.unit == "second" else 1
    if units <= 0:
        raise InvalidRequest("Give `seconds`: this model is priced per second of video.", param="seconds")
    size, quality = str(request.get("size") or ""), str(request.get("quality") or "")
    price = usd_to_nanos(entry.unit_pricing.price_for(size, quality) * units)
    return VideoCall(model=entry.id, provider_request=request, units=units, price_nanos=price,
                     seconds=str(duration) if duration else "", size=size, prompt=str(request.get("prompt") or ""))
