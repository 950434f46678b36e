"""Inbound Anthropic Messages requests → the gateway's chat-completions shape (pure functions).

- `decode_messages_request(body)`: validate a `/v1/messages` body (typed view + the raw dict).
- `to_chat_request(raw)`: a Messages body → a chat-completions body for OpenAI-protocol upstreams.

What the chat translation keeps, and what it drops (no OpenAI equivalent), is listed in
docs/agents.md. Answers are translated back in `protocols.anthropic.replies`.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from runapi.errors import InvalidRequest
from runapi.protocols.anthropic.tools import chat_tool_choice, chat_tools
from runapi.protocols.openai.chat_request import decode_typed_body

# Messages fields translated below, or dropped for OpenAI-protocol upstreams (no equivalent there;
# an OpenAI-compatible upstream would refuse them as unknown). Any other field is the client's extra
# (GLM's own fields, the simulator's `x_sim`) and passes through unchanged.
_HANDLED = frozenset({
    "model", "messages", "system", "max_tokens", "stop_sequences", "stream", "temperature", "top_p", "top_k",
    "tools", "tool_choice", "metadata", "thinking", "output_config", "output_format", "service_tier", "container",
    "mcp_servers", "context_management", "cache_control", "diagnostics", "inference_geo", "speed",
    "user_profile_id", "workspace_id", "betas",
    # the beta surface's (`?beta=true`): server-held threads, compaction requests, refusal fallbacks, billing
    "thread", "compaction", "fallbacks", "fallback_credit_token", "billing_policy",
})
_DROPPED_ASSISTANT_BLOCKS = frozenset({"redacted_thinking", "server_tool_use", "mcp_tool_use", "mcp_tool_result",
                                       "container_upload"})
"""Assistant blocks an OpenAI upstream cannot take back (Anthropic-side tools and hidden reasoning)."""
MAX_USER_ID = 64
"""A longer `metadata.user_id` (Claude Code sends a JSON object) is sent as its SHA-256."""

_encode = msgspec.json.Encoder(decimal_format="number").encode


class InboundMessage(msgspec.Struct):
    role: Literal["user", "assistant", "system"]
    content: str | list[dict[str, Any]]


class MessagesRequest(msgspec.Struct):
    """The typed view of a `/v1/messages` body (content blocks are checked while translating)."""

    model: Annotated[str, Meta(min_length=1)]
    messages: Annotated[list[InboundMessage], Meta(min_length=1)]
    max_tokens: Annotated[int, Meta(ge=1)]
    system: str | list[dict[str, Any]] | None = None
    stream: bool | None = False
    temperature: Annotated[float, Meta(ge=0, le=1)] | None = None
    top_p: Annotated[float, Meta(ge=0, le=1)] | None = None
    stop_sequences: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None


class CountTokensRequest(msgspec.Struct):
    model: Annotated[str, Meta(min_length=1)]
    messages: Annotated[list[InboundMessage], Meta(min_length=1)]
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None


def decode_messages_request(body: bytes, type_: type[Any] = MessagesRequest) -> tuple[Any, dict[str, Any]]:
    """Validate a Messages body as `type_`. Raises `InvalidRequest` naming the bad field. A whole-number
    float `max_tokens` (`100.0`, an integer in JSON Schema's terms) is read, and passed on, as an integer."""
    return decode_typed_body(body, type_, whole_numbers=("max_tokens",))


# -- blocks -----------------------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    """The text of a string or of text blocks (system prompts, tool results)."""
    if isinstance(content, str):
        return content
    return "\n".join(str(block.get("text", "")) for block in content or () if isinstance(block, dict)
                     and block.get("type") == "text")


def _source(block: dict[str, Any]) -> dict[str, Any]:
    source = block.get("source")
    return source if isinstance(source, dict) else {}


def _image_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    source = _source(block)
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = str(source.get("url", ""))
    else:
        raise InvalidRequest("Images need a base64 or url source for this model.", param=f"{path}.source")
    return {"type": "image_url", "image_url": {"url": url}}


def _titled(block: dict[str, Any], text: str) -> str:
    heading = "\n".join(str(block[key]) for key in ("title", "context") if isinstance(block.get(key), str))
    return f"{heading}\n\n{text}" if heading else text


def _document_part(block: dict[str, Any], path: str) -> dict[str, Any]:
    source = _source(block)
    kind = source.get("type")
    if kind == "text":
        return {"type": "text", "text": _titled(block, str(source.get("data", "")))}
    if kind == "content":  # a document made of text blocks
        return {"type": "text", "text": _titled(block, _text_of(source.get("content")))}
    if kind == "url":
        return {"type": "text", "text": _titled(block, f"Document: {source.get('url', '')}")}
    if kind == "base64":
        data = f"data:{source.get('media_type', 'application/pdf')};base64,{source.get('data', '')}"
        return {"type": "file", "file": {"file_data": data, "filename": str(block.get("title") or "document.pdf")}}
    raise InvalidRequest("Documents need a base64, text, content or url source for this model.",
                         param=f"{path}.source")


def _search_result_part(block: dict[str, Any]) -> dict[str, Any]:
    heading = "\n".join(str(block[key]) for key in ("title", "source") if isinstance(block.get(key), str))
    return {"type": "text", "text": f"{heading}\n\n{_text_of(block.get('content'))}".strip()}


def _user_part(block: dict[str, Any], path: str) -> dict[str, Any] | None:
    """One user content block as a chat content part (None: nothing to send)."""
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": str(block.get("text", ""))}
    if kind == "image":
        return _image_part(block, path)
    if kind == "document":
        return _document_part(block, path)
    if kind == "search_result":
        return _search_result_part(block)
    if kind == "container_upload":
        return None  # a file for Anthropic's code execution container: no such container here
    raise InvalidRequest(f"Content blocks of type {kind!r} are not supported by this model.", param=path)


def _tool_message(block: dict[str, Any], path: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A tool_result → (the chat tool message, its non-text parts for the user message after it):
    chat tool messages carry text only, so images and files follow in a user message."""
    content = block.get("content")
    texts: list[str] = []
    extra: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    for j, item in enumerate(content if isinstance(content, list) else ()):
        part = _user_part(item, f"{path}.content[{j}]") if isinstance(item, dict) else None
        if part is None:
            continue
        if part["type"] == "text":
            texts.append(part["text"])
        else:
            extra.append(part)
    text = "\n".join(texts)
    if extra:
        text += f"\n({len(extra)} attachment(s) follow in the next message)"
    message = {"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")),
               "content": f"Error: {text}" if block.get("is_error") else text}
    return message, extra


def _user_turn(content: Any, path: str) -> list[dict[str, Any]]:
    """One user turn → tool messages (its tool results, first) and then one user message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tool_messages: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        where = f"{path}[{j}]"
        if block.get("type") == "tool_result":
            message, attachments = _tool_message(block, where)
            tool_messages.append(message)
            parts += attachments
        elif (part := _user_part(block, where)) is not None:
            parts.append(part)
    if not parts:
        return tool_messages
    if len(parts) == 1 and parts[0]["type"] == "text":
        return [*tool_messages, {"role": "user", "content": parts[0]["text"]}]
    return [*tool_messages, {"role": "user", "content": parts}]


def _assistant_turn(content: Any) -> dict[str, Any]:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in content:
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "thinking":
            reasoning.append(str(block.get("thinking", "")))
        elif kind == "tool_use":
            arguments = _encode(block.get("input") or {}).decode()
            calls.append({"id": str(block.get("id", "")), "type": "function",
                          "function": {"name": str(block.get("name", "")), "arguments": arguments}})
        elif kind == "compaction" and isinstance(block.get("content"), str):
            texts.append(block["content"])  # context management's summary of the turns it replaced
        # Other blocks (redacted thinking, server tool calls and their results) have no chat form: dropped.
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message


# -- the request ------------------------------------------------------------------------------------


def system_prompt(raw: dict[str, Any]) -> str:
    """The whole system prompt: `system`, then each `role: "system"` message's text, in order."""
    texts = [_text_of(raw.get("system"))] if raw.get("system") else []
    texts += [_text_of(message.get("content")) for message in raw.get("messages") or ()
              if isinstance(message, dict) and message.get("role") == "system"]
    return "\n\n".join(text for text in texts if text)


def _user_field(metadata: Any) -> str | None:
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if not isinstance(user_id, str) or not user_id:
        return None
    return user_id if len(user_id) <= MAX_USER_ID else hashlib.sha256(user_id.encode()).hexdigest()


def _thinking(thinking: Any) -> dict[str, Any] | None:
    """GLM's thinking switch for an explicit ask. `adaptive` (the model decides) is GLM's own default,
    so it sends nothing, and neither do budgets, which have no OpenAI equivalent."""
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    return {"type": kind} if kind in ("enabled", "disabled") else None


def _response_format(raw: dict[str, Any]) -> dict[str, Any] | None:
    """`output_config.format` (or the beta's `output_format`) → OpenAI `response_format`."""
    config = raw.get("output_config")
    spec = config.get("format") if isinstance(config, dict) else None
    spec = spec or raw.get("output_format")
    if not isinstance(spec, dict) or spec.get("type") != "json_schema" or not isinstance(spec.get("schema"), dict):
        return None
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": spec["schema"], "strict": True}}


def to_chat_request(raw: dict[str, Any]) -> dict[str, Any]:
    """A Messages body → a chat-completions body (for OpenAI-protocol upstreams).

    System messages anywhere in `messages` are folded into the one leading system message;
    tool results become tool messages; fields with no OpenAI equivalent are dropped.
    """
    messages: list[dict[str, Any]] = []
    system = system_prompt(raw)
    if system:
        messages.append({"role": "system", "content": system})
    for i, message in enumerate(raw.get("messages") or ()):
        role = message.get("role")
        if role == "assistant":
            messages.append(_assistant_turn(message.get("content")))
        elif role == "user":
            messages.extend(_user_turn(message.get("content"), f"messages[{i}].content"))
    chat: dict[str, Any] = {"model": raw.get("model"), "messages": messages, "max_tokens": raw.get("max_tokens")}
    for field in ("temperature", "top_p", "stream"):
        if raw.get(field) is not None:
            chat[field] = raw[field]
    if raw.get("stop_sequences"):
        chat["stop"] = raw["stop_sequences"]
    tools = chat_tools(raw.get("tools") or [])
    if tools:
        chat["tools"] = tools
        if isinstance(raw.get("tool_choice"), dict):
            choice, parallel = chat_tool_choice(raw["tool_choice"], {tool["function"]["name"] for tool in tools})
            if choice is not None:
                chat["tool_choice"] = choice
            if not parallel:
                chat["parallel_tool_calls"] = False
    if (user := _user_field(raw.get("metadata"))) is not None:
        chat["user"] = user
    if (thinking := _thinking(raw.get("thinking"))) is not None:
        chat["thinking"] = thinking
    if (response_format := _response_format(raw)) is not None:
        chat["response_format"] = response_format
    for key, value in raw.items():
        if key not in _HANDLED:
            chat[key] = value
    return chat
