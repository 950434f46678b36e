"""Image generation as the development simulator answers it, in OpenAI's and Z.ai's shapes (pure).

OpenAI `POST /v1/images/generations` (openai-python `types/image_generate_params.py`,
`images_response.py`): `n`, `size`, `quality`, `response_format` "url" | "b64_json" (GPT image
models answer b64_json by default and report token `usage`). Z.ai `POST /paas/v4/images/generations`
(https://docs.z.ai/api-reference/image/generate-image): one image, `data[].url` only, plus
`content_filter`. Each image is a real PNG of the requested size (`png.render_png`, seeded by the
prompt and the image's index).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

from .embeddings import Shape
from .png import MAX_SIDE

__all__ = ["ImageCall", "image_output_tokens", "images_body", "parse_images"]

_encode = msgspec.json.Encoder().encode
_SIZE = re.compile(r"^([0-9]{1,5})x([0-9]{1,5})$")
_OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160}
"""GPT image output tokens per 1024x1024 image by quality (OpenAI's image-generation guide)."""
MAX_IMAGES = 10


class ImageCall(msgspec.Struct, frozen=True):
    """A validated image request."""

    model: str
    prompt: str
    n: int
    width: int
    height: int
    quality: str
    response_format: Literal["url", "b64_json"]


def parse_images(raw: dict[str, Any], shape: Shape) -> ImageCall:
    """Validate an image request body; raises `ValueError` naming the bad field."""
    model, prompt = raw.get("model"), raw.get("prompt")
    if not isinstance(model, str) or not model:
        raise ValueError("model: expected a model name")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt: expected a non-empty string")
    n = raw.get("n", 1) if shape == "openai" else 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_IMAGES:
        raise ValueError(f"n: expected an integer from 1 to {MAX_IMAGES}")
    size = raw.get("size") or "auto"
    match = _SIZE.match(size) if isinstance(size, str) else None
    if size == "auto":
        width = height = 1024
    elif match and all(1 <= int(side) <= MAX_SIDE for side in match.groups()):
        width, height = int(match[1]), int(match[2])
    else:
        raise ValueError(f"size: expected 'auto' or WIDTHxHEIGHT, each side from 1 to {MAX_SIDE}")
    gpt_image = model.startswith("gpt-image")
    default_format = "b64_json" if gpt_image and shape == "openai" else "url"
    asked = (raw.get("response_format") or default_format) if shape == "openai" else "url"
    if asked not in ("url", "b64_json"):
        raise ValueError("response_format: expected 'url' or 'b64_json'")
    response_format: Literal["url", "b64_json"] = "url" if asked == "url" else "b64_json"
    quality = raw.get("quality") or ("medium" if gpt_image else "standard")
    if not isinstance(quality, str) or len(quality) > 16:
        raise ValueError("quality: expected a quality name such as 'low', 'high', 'standard' or 'hd'")
    return ImageCall(model=model, prompt=prompt, n=n, width=width, height=height, quality=quality,
                     response_format=response_format)


def image_output_tokens(call: ImageCall) -> int:
    """GPT image output tokens of the whole call: the quality's 1024x1024 figure, scaled by area."""
    per_image = _OUTPUT_TOKENS.get(call.quality, _OUTPUT_TOKENS["medium"])
    return call.n * max(1, per_image * call.width * call.height // (1024 * 1024))


def images_body(call: ImageCall, shape: Shape, created: int, items: list[dict[str, str]],
                prompt_tokens: int) -> bytes:
    """The JSON answer: `items` are each image's `{"url": ...}` or `{"b64_json": ...}`."""
    if shape == "zai":
        return _encode({"created": created, "data": items, "content_filter": [{"role": "assistant", "level": 3}]})
    body: dict[str, Any] = {"created": created, "data": items}
    if call.model.startswith("gpt-image"):
        output = image_output_tokens(call)
        body |= {
            "background": "opaque", "output_format": "png", "quality": call.quality,
            "size": f"{call.width}x{call.height}",
            "usage": {"input_tokens": prompt_tokens, "output_tokens": output, "total_tokens": prompt_tokens + output,
                      "input_tokens_details": {"text_tokens": prompt_tokens, "image_tokens": 0}},
        }
    return _encode(body)
