"""The OpenAI Responses API (`/v1/responses`), translated onto chat completions. Pure: no I/O.

- `request`: the typed view of a `POST /v1/responses` body (`decode_responses_request`).
- `to_chat`: Responses input items, tools and options → a chat-completions body.
- `from_chat`: a `chat.completion` → Responses output items; the `response` object.
- `events`: `chat.completion.chunk`s → Responses SSE events, each with its `sequence_number`.
- `tools`: function and `custom` tools and `tool_choice` → chat tools.
- `ids`: response and item IDs, derived from the generation ID.
"""

from runapi.protocols.responses.events import ChatToResponseEvents
from runapi.protocols.responses.from_chat import (
    ResponseContext,
    output_items,
    response_object,
    usage_json,
)
from runapi.protocols.responses.ids import (
    RESPONSE_PREFIX,
    generation_of,
    item_response,
    response_id,
)
from runapi.protocols.responses.request import (
    ResponsesRequest,
    decode_responses_request,
    echo_params,
)
from runapi.protocols.responses.to_chat import (
    ChatTranslation,
    input_items,
    number_input_items,
    references,
    to_chat,
)

__all__ = [
    "RESPONSE_PREFIX",
    "ChatToResponseEvents",
    "ChatTranslation",
    "ResponseContext",
    "ResponsesRequest",
    "decode_responses_request",
    "echo_params",
    "generation_of",
    "input_items",
    "item_response",
    "number_input_items",
    "output_items",
    "references",
    "response_id",
    "response_object",
    "to_chat",
    "usage_json",
]
