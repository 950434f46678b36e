"""Pure translation between OpenAI chat completions and Anthropic Messages, for Anthropic upstreams.

- `to_messages_request(chat, upstream_model, max_output)`: a chat-completions body → a Messages body.
- `from_messages_reply(body, created)`: a Messages answer → a `chat.completion` object and its usage.
- `messages_usage(data)`: Anthropic usage (input excludes cache reads and writes) → `Usage`.
- `fold_system_messages(body)`: a Messages body with its `role: "system"` messages moved into
  `system`, for upstream models that refuse mid-conversation system messages.

No I/O, no clock: callers pass `created`. Malformed client input raises `InvalidRequest`
naming the field. Streams are translated in `protocols.anthropic.stream`.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from runapi.errors import InvalidRequest
from runapi.money import Usage
from runapi.protocols.anthropic.stop_reasons import finish_reason

ANTHROPIC_VERSION = "2023-06-01"

THINKING_BUDGETS = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384}
"""OpenAI `reasoning_effort` → Anthropic thinking `budget_tokens`."""

MIN_THINKING_BUDGET = 1024

# Chat-completions fields this module translates, or drops because Anthropic has no equivalent.
# Any other field is the client's extra for the upstream and passes through unchanged.
_HANDLED = frozenset({
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "stop",
    "temperature", "top_p", "tools", "tool_choice", "parallel_tool_calls", "user", "n", "response_format",
    "reasoning_effort", "thinking", "frequency_penalty", "presence_penalty", "logit_bias", "logprobs",
    "top_logprobs", "seed", "store", "metadata", "modalities", "audio", "prediction", "service_tier",
    "web_search_options", "verbosity", "prompt_cache_key", "safety_identifier", "tool_stream", "functions",
    "function_call",
})

_encode = msgspec.json.Encoder().encode


class _MessagesUsage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


def messages_usage(data: Any) -> Usage | None:
    """Anthropic usage → `Usage` (Anthropic's `input_tokens` already exclude cache reads and writes)."""
    if not isinstance(data, dict):
        return None
    try:
        usage = msgspec.convert(data, _MessagesUsage)
    except msgspec.ValidationError:
        return None
    return Usage.from_anthropic(usage.input_tokens or 0, usage.output_tokens or 0,
                                usage.cache_read_input_tokens or 0, usage.cache_creation_input_tokens or 0)


def fold_system_messages(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` with its `role: "system"` messages moved, in order, to the end of `system` (as text blocks;
    the top-level system's own blocks and cache marks kept). Anthropic merges the user turns this
    leaves adjacent. `raw` itself is not changed."""
    folded = [message for message in raw.get("messages") or () if message.get("role") == "system"]
    if not folded:
        return raw
    system = raw.get("system")
    blocks: list[Any] = [{"type": "text", "text": system}] if isinstance(system, str) and system else list(system or ())
    for message in folded:
        content = message.get("content")
        blocks += [{"type": "text", "text": content}] if isinstance(content, str) else list(content or ())
    messages = [message for message in raw["messages"] if message.get("role") != "system"]
    return {**raw, "system": blocks, "messages": messages}


# -- request ------------------------------------------------------------------------------------


def _with_cache_control(block: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    if isinstance(part.get("cache_control"), dict):
        block["cache_control"] = part["cache_control"]
    return block


def _data_url(url: str, path: str) -> tuple[str, str]:
    """(media type, base64 data) of a `data:` URL."""
    head, sep, data = url.partition(",")
    if not sep or not head.endswith(";base64"):
        raise InvalidRequest("Only base64 `data:` URLs can be sent to Anthropic models.", param=path)
    return head[len("data:"):-len(";base64")], data


def _image_block(part: dict[str, Any], path: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise InvalidRequest("An image_url part needs `image_url.url`.", param=path)
    if url.startswith("data:"):
        media_type, data = _data_url(url, path)
        source: dict[str, Any] = {"type": "base64", "media_type": media_type, "data": data}
    else:
        source = {"type": "url", "url": url}
    return _with_cache_control({"type": "image", "source": source}, part)


def _file_block(part: dict[str, Any], path: str) -> dict[str, Any]:
    file = part.get("file")
    if not isinstance(file, dict):
        file = {}
    data = file.get("file_data")
    if not isinstance(data, str) or not data.startswith("data:"):
        raise InvalidRequest("Anthropic models take files as base64 `file.file_data` data URLs.", param=path)
    media_type, encoded = _data_url(data, path)
    block: dict[str, Any] = {"type": "document",
                             "source": {"type": "base64", "media_type": media_type, "data": encoded}}
    if isinstance(file.get("filename"), str):
        block["title"] = file["filename"]
    return _with_cache_control(block, part)


def _content_blocks(content: Any, path: str, *, role: str) -> list[dict[str, Any]]:
    """OpenAI message content (a string or parts) → Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for j, part in enumerate(content):
        where = f"{path}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" or kind == "refusal":
            text = part.get("text", part.get("refusal", ""))
            if text:
                blocks.append(_with_cache_control({"type": "text", "text": text}, part))
        elif kind == "image_url" and role in ("user", "tool"):
            blocks.append(_image_block(part, where))
        elif kind == "file" and role == "user":
            blocks.append(_file_block(part, where))
        else:
            raise InvalidRequest(f"Content parts of type {kind!r} in {role} messages are not supported by "
                                 "Anthropic models.", param=where)
    return blocks


def _tool_use_blocks(tool_calls: Any, path: str) -> list[dict[str, Any]]:
    blocks = []
    for j, call in enumerate(tool_calls or ()):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequest("A tool call needs `function.name`.", param=f"{path}[{j}]")
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError as exc:
            raise InvalidRequest("Tool call arguments must be a JSON object.",
                                 param=f"{path}[{j}].function.arguments") from exc
        if not isinstance(arguments, dict):
            raise InvalidRequest("Tool call arguments must be a JSON object.", param=f"{path}[{j}].function.arguments")
        blocks.append({"type": "tool_use", "id": call.get("id") or f"toolu_{j}", "name": function["name"],
                       "input": arguments})
    return blocks


def _translate_messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, alternating user/assistant messages). Consecutive same-role turns are merged,
    tool results first, as Anthropic wants them right after the assistant's tool calls."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for i, message in enumerate(messages):
        role, path = message.get("role"), f"messages[{i}].content"
        if role in ("system", "developer"):
            system.extend(_content_blocks(message.get("content"), path, role="system"))
        elif role == "user":
            add("user", _content_blocks(message.get("content"), path, role="user"))
        elif role == "assistant":
            blocks = _content_blocks(message.get("content"), path, role="assistant")
            add("assistant", blocks + _tool_use_blocks(message.get("tool_calls"), f"messages[{i}].tool_calls"))
        elif role == "tool":
            if not isinstance(message.get("tool_call_id"), str):
                raise InvalidRequest("A tool message needs `tool_call_id`.", param=f"messages[{i}].tool_call_id")
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message["tool_call_id"]}
            content = message.get("content")
            result["content"] = content if isinstance(content, str) else _content_blocks(content, path, role="tool")
            add("user", [result])
        else:
            raise InvalidRequest(f"Messages with role {role!r} are not supported by Anthropic models; use tools.",
                                 param=f"messages[{i}].role")
    return system, turns


def _tools(tools: list[Any]) -> list[dict[str, Any]]:
    out = []
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if tool.get("type", "function") != "function" or not isinstance(function, dict) or "name" not in function:
            raise InvalidRequest("Only function tools can be sent to Anthropic models.", param=f"tools[{i}]")
        spec: dict[str, Any] = {"name": function["name"],
                                "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
        if function.get("description"):
            spec["description"] = function["description"]
        out.append(_with_cache_control(spec, tool))
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice is None:
        result: dict[str, Any] | None = None
    elif choice == "auto":
        result = {"type": "auto"}
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        return {"type": "none"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        result = {"type": "tool", "name": choice["function"].get("name")}
    else:
        raise InvalidRequest("Unsupported tool_choice for an Anthropic model.", param="tool_choice")
    if parallel is False:
        result = {**(result or {"type": "auto"}), "disable_parallel_tool_use": True}
    return result


def _thinking(chat: dict[str, Any], max_tokens: int) -> dict[str, Any] | None:
    """Anthropic `thinking` from GLM/Anthropic-style `thinking` or OpenAI's `reasoning_effort`."""
    thinking, effort = chat.get("thinking"), chat.get("reasoning_effort")
    budget: Any = None
    if isinstance(thinking, dict):
        if thinking.get("type") == "disabled":
            return {"type": "disabled"}
        if thinking.get("type") != "enabled":
            return None
        budget = thinking.get("budget_tokens") or max(MIN_THINKING_BUDGET, max_tokens // 2)
    elif isinstance(effort, str) and effort in THINKING_BUDGETS:
        budget = THINKING_BUDGETS[effort]
    if not isinstance(budget, int) or max_tokens <= MIN_THINKING_BUDGET:
        return None  # Anthropic needs MIN_THINKING_BUDGET <= budget < max_tokens
    return {"type": "enabled", "budget_tokens": max(MIN_THINKING_BUDGET, min(budget, max_tokens - 1))}


def _unsigned_tool_turn(turns: list[dict[str, Any]]) -> bool:
    """Whether the last assistant turn called tools without a thinking block before them. With thinking on,
    Anthropic refuses such a continuation (the turn's signed thinking blocks must come back, and a chat
    history carries none: `reasoning_content` has no signature), so the call goes without thinking."""
    for turn in reversed(turns):
        if turn["role"] == "assistant":
            blocks = turn["content"]
            first = blocks[0].get("type") if blocks and isinstance(blocks[0], dict) else None
            return first not in ("thinking", "redacted_thinking") and any(
                isinstance(block, dict) and block.get("type") == "tool_use" for block in blocks)
    return False


def to_messages_request(chat: dict[str, Any], upstream_model: str, max_output: int) -> dict[str, Any]:
    """A chat-completions body → an Anthropic Messages body for `upstream_model`.

    `max_tokens` defaults to (and is capped at) the model's `max_output` when that is known (> 0).
    """
    if (chat.get("n") or 1) != 1:
        raise InvalidRequest("Anthropic models return one choice: n must be 1.", param="n")
    response_format = chat.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        raise InvalidRequest("response_format is not supported by Anthropic models.", param="response_format")
    if chat.get("functions") is not None:
        raise InvalidRequest("Legacy `functions` are not supported by Anthropic models; use `tools`.",
                             param="functions")
    system, messages = _translate_messages(chat.get("messages") or [])
    requested = chat.get("max_completion_tokens") or chat.get("max_tokens")
    max_tokens = requested or max_output or 4096
    if max_output > 0:
        max_tokens = min(max_tokens, max_output)
    body: dict[str, Any] = {"model": upstream_model, "max_tokens": max_tokens, "messages": messages}
    if system:
        plain = all(set(block) == {"type", "text"} for block in system)
        body["system"] = "\n\n".join(block["text"] for block in system) if plain else system
    thinking = _thinking(chat, max_tokens)
    if thinking is not None and thinking["type"] == "enabled" and _unsigned_tool_turn(messages):
        thinking = None
    if thinking is not None:
        body["thinking"] = thinking
    thinking_on = thinking is not None and thinking["type"] == "enabled"
    if chat.get("temperature") is not None and not thinking_on:
        body["temperature"] = min(float(chat["temperature"]), 1.0)  # Anthropic's range is 0..1
    if chat.get("top_p") is not None and not thinking_on:
        body["top_p"] = chat["top_p"]
    stop = chat.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if chat.get("tools"):
        body["tools"] = _tools(chat["tools"])
    choice = _tool_choice(chat.get("tool_choice"), chat.get("parallel_tool_calls"))
    if choice is not None and chat.get("tools"):
        body["tool_choice"] = choice
    if isinstance(chat.get("user"), str):
        body["metadata"] = {"user_id": chat["user"]}
    if chat.get("stream"):
        body["stream"] = True
    for key, value in chat.items():
        if key not in _HANDLED and key not in body:
            body[key] = value
    return body


# -- complete answers -----------------------------------------------------------------------------


def openai_usage(usage: Usage) -> dict[str, Any]:
    """OpenAI's usage object for `usage` (`prompt_tokens` includes cached tokens)."""
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.prompt_tokens + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens}}


def from_messages_reply(body: dict[str, Any], created: int) -> tuple[dict[str, Any], Usage | None]:
    """A Messages answer → (`chat.completion` object, usage). Text blocks are joined; thinking
    becomes `reasoning_content`; tool_use blocks become `tool_calls`."""
    texts: list[str] = []
    reasoning: list[str] = []
    tool_calls: list[dict[str, Any]] = []
    for block in body.get("content") or ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "thinking":
            reasoning.append(str(block.get("thinking", "")))
        elif kind == "tool_use":
            arguments = _encode(block.get("input") or {}).decode()
            tool_calls.append({"id": block.get("id", ""), "type": "function",
                               "function": {"name": block.get("name", ""), "arguments": arguments}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not tool_calls else None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if tool_calls:
        message["tool_calls"] = tool_calls
    usage = messages_usage(body.get("usage"))
    reply: dict[str, Any] = {
        "id": body.get("id", ""), "object": "chat.completion", "created": created, "model": body.get("model", ""),
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": finish_reason(body.get("stop_reason"))}],
    }
    if usage is not None:
        reply["usage"] = openai_usage(usage)
    return reply, usage
