"""Anthropic's Messages protocol, as pure translation.

- `inbound`: `/v1/messages` requests → the gateway's chat-completions shape (`tools`: tool
  definitions); `replies`: chat-completions answers → Messages answers and events; `errors`:
  errors in Anthropic's shape and words.
- `outbound`: chat-completions requests → Messages requests for Anthropic upstreams, and their
  answers back; `stream`: Messages streams → chat-completions chunks.
- `stop_reasons`: the one table of stop reasons, read both ways.
"""

from runapi.protocols.anthropic.errors import anthropic_error, error_type
from runapi.protocols.anthropic.inbound import (
    CountTokensRequest,
    MessagesRequest,
    decode_messages_request,
    to_chat_request,
)
from runapi.protocols.anthropic.outbound import (
    ANTHROPIC_VERSION,
    fold_system_messages,
    from_messages_reply,
    messages_usage,
    openai_usage,
    to_messages_request,
)
from runapi.protocols.anthropic.replies import (
    ChatToMessagesEvents,
    error_event,
    messages_usage_json,
    to_message,
)
from runapi.protocols.anthropic.stop_reasons import finish_reason, stop_reason
from runapi.protocols.anthropic.stream import (
    MessagesToChatStream,
    NativeStreamMeter,
    upstream_error_message,
)

__all__ = [
    "ANTHROPIC_VERSION",
    "ChatToMessagesEvents",
    "CountTokensRequest",
    "MessagesRequest",
    "MessagesToChatStream",
    "NativeStreamMeter",
    "anthropic_error",
    "decode_messages_request",
    "error_event",
    "error_type",
    "finish_reason",
    "fold_system_messages",
    "from_messages_reply",
    "messages_usage",
    "messages_usage_json",
    "openai_usage",
    "stop_reason",
    "to_chat_request",
    "to_message",
    "to_messages_request",
    "upstream_error_message",
]
