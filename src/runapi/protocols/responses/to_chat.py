"""A Responses request → a chat-completions body (pure).

Input items become chat messages: `message` items (and easy-input `{role, content}`), `function_call`
/ `custom_tool_call` (an assistant message's `tool_calls`), `function_call_output` /
`custom_tool_call_output` (`tool` messages), `reasoning` (the next assistant message's
`reasoning_content`, which GLM takes back; other upstreams drop it), `item_reference` (the stored
item, looked up by the caller). `instructions` is the first system message; `developer` messages
become system messages. Options map onto their chat names; fields this module does not know pass
through to the upstream unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from runapi.errors import InvalidRequest
from runapi.protocols.responses.ids import item_id
from runapi.protocols.responses.request import ResponsesRequest
from runapi.protocols.responses.tools import CUSTOM_INPUT, chat_tool_choice, chat_tools

_encode = msgspec.json.encode

# Responses fields translated here, or dropped because chat completions has no equivalent.
_HANDLED = frozenset({
    "model", "input", "instructions", "tools", "tool_choice", "text", "reasoning", "max_output_tokens",
    "parallel_tool_calls", "metadata", "store", "previous_response_id", "stream", "stream_options", "include",
    "truncation", "background", "conversation", "prompt", "max_tool_calls", "top_logprobs", "service_tier",
    "temperature", "top_p", "user", "prompt_cache_key", "safety_identifier", "client_metadata",
})
_PASSED = ("temperature", "top_p", "user", "prompt_cache_key", "safety_identifier")  # under their chat names
_CHAT_EFFORT = {"minimal": "minimal", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}
_TEXT_PARTS = ("input_text", "output_text", "text", "summary_text", "reasoning_text")


class ChatTranslation(msgspec.Struct):
    """The chat body; the names of the tools whose calls are `custom_tool_call` items; each namespaced
    function's namespace."""

    body: dict[str, Any]
    custom_tools: frozenset[str] = frozenset()
    namespaces: dict[str, str] = {}


def input_items(request: ResponsesRequest) -> list[dict[str, Any]]:
    """The request's input as a list of items (a string is one user message)."""
    if request.input is None:
        return []
    if isinstance(request.input, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": request.input}]}]
    return request.input


def number_input_items(items: Sequence[dict[str, Any]], resp_id: str) -> list[dict[str, Any]]:
    """The input items as stored and listed: each with an `id` (its own if it had one), messages typed."""
    out = []
    for index, item in enumerate(items):
        item = dict(item)
        if "type" not in item and "role" in item:
            item["type"] = "message"
        if item.get("type") == "message" and isinstance(item.get("content"), str):
            kind = "output_text" if item.get("role") == "assistant" else "input_text"
            item["content"] = [{"type": kind, "text": item["content"]}]
        item.setdefault("id", item_id("in", resp_id, index))
        out.append(item)
    return out


def references(items: Sequence[Any]) -> list[str]:
    """The IDs of the `item_reference` items, for the caller to look up."""
    return [item["id"] for item in items
            if isinstance(item, dict) and item.get("type") == "item_reference" and isinstance(item.get("id"), str)]


def _text(parts: Any, param: str) -> str:
    """The text of a content list (or string): text parts joined; other parts refused."""
    if isinstance(parts, str):
        return parts
    if not isinstance(parts, list):
        raise InvalidRequest("`content` must be a string or a list of content parts.", param=param)
    texts = []
    for index, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "refusal":
            texts.append(str(part.get("refusal", "")))
        elif kind in _TEXT_PARTS and isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            raise InvalidRequest(f"A content part of type `{kind}` is not supported here.", param=f"{param}[{index}].type")
    return "".join(texts)


def _user_parts(content: Any, param: str) -> str | list[dict[str, Any]]:
    """A user message's content as chat content parts (text, image_url, file)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest("`content` must be a string or a list of content parts.", param=param)
    if (len(content) == 1 and isinstance(content[0], dict) and content[0].get("type") in _TEXT_PARTS
            and isinstance(content[0].get("text"), str)):
        return str(content[0]["text"])  # one text part: plain content, which every chat upstream takes
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        where = f"{param}[{index}]"
        if kind in _TEXT_PARTS and isinstance(part.get("text"), str):
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "input_image":
            if not isinstance(part.get("image_url"), str):
                raise InvalidRequest("An `input_image` needs an `image_url` (a URL or a data URL); uploaded file IDs "
                                     "are not supported.", param=f"{where}.image_url")
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail") in ("low", "high", "auto"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file":
            file = {name: part[name] for name in ("file_data", "filename", "file_id") if isinstance(part.get(name), str)}
            if "file_data" not in file and "file_id" not in file:
                raise InvalidRequest("An `input_file` needs `file_data` (with `filename`) or `file_id`; `file_url` "
                                     "is not supported.", param=where)
            parts.append({"type": "file", "file": file})
        else:
            raise InvalidRequest(f"A content part of type `{kind}` is not supported here.", param=f"{where}.type")
    return parts


class _Conversation:
    """Chat messages built item by item."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.reasoning: list[str] = []  # reasoning text waiting for the next assistant message

    def assistant(self, content: str | None) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if self.reasoning:
            message["reasoning_content"] = "\n\n".join(self.reasoning)
            self.reasoning = []
        self.messages.append(message)
        return message

    def tool_call(self, call_id: str, name: str, arguments: str) -> None:
        last = self.messages[-1] if self.messages else None
        if last is None or last["role"] != "assistant" or self.reasoning:
            last = self.assistant(None)
        last.setdefault("tool_calls", []).append(
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})

    def add(self, item: Any, param: str) -> None:
        if not isinstance(item, dict):
            raise InvalidRequest("An input item must be an object.", param=param)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            self._message(item, param)
        elif kind in ("function_call", "custom_tool_call"):
            call_id, name = item.get("call_id"), item.get("name")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise InvalidRequest(f"A `{kind}` item needs `call_id` and `name`.", param=f"{param}.call_id")
            arguments = (str(item.get("arguments") or "{}") if kind == "function_call"
                         else _encode({CUSTOM_INPUT: str(item.get("input", ""))}).decode())
            self.tool_call(call_id, name, arguments)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            if not isinstance(item.get("call_id"), str):
                raise InvalidRequest(f"A `{kind}` item needs a `call_id`.", param=f"{param}.call_id")
            output = item.get("output", "")
            text = output if isinstance(output, str) else _tool_output_text(output)
            self.messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
        elif kind == "reasoning":
            texts = [str(part.get("text", "")) for part in (item.get("summary") or []) + (item.get("content") or [])
                     if isinstance(part, dict)]
            if any(texts):
                self.reasoning.append("\n\n".join(text for text in texts if text))
        else:
            raise InvalidRequest(f"Input items of type `{kind}` are not supported here.", param=f"{param}.type")

    def _message(self, item: dict[str, Any], param: str) -> None:
        role, content = item.get("role"), item.get("content")
        if role == "assistant":
            self.assistant(_text(content, f"{param}.content"))
        elif role in ("system", "developer"):
            self.messages.append({"role": "system", "content": _text(content, f"{param}.content")})
        elif role == "user":
            self.messages.append({"role": "user", "content": _user_parts(content, f"{param}.content")})
        else:
            raise InvalidRequest(f"Unknown message role {role!r}: expected user, assistant, system or developer.",
                                 param=f"{param}.role")


def _tool_output_text(output: Any) -> str:
    """A tool output given as content parts: its text parts joined (images in tool outputs are not passed on)."""
    if not isinstance(output, list):
        return str(output)
    return "".join(str(part.get("text", "")) for part in output if isinstance(part, dict) and part.get("type") in _TEXT_PARTS)


def _reasoning_options(request: ResponsesRequest, glm_thinking: bool) -> dict[str, Any]:
    effort = request.reasoning.effort if request.reasoning else None
    if effort is None:
        return {}
    out: dict[str, Any] = {}
    if glm_thinking:  # GLM switches thinking on and off; it has no effort levels
        out["thinking"] = {"type": "disabled" if effort == "none" else "enabled"}
    elif effort in _CHAT_EFFORT:
        out["reasoning_effort"] = _CHAT_EFFORT[effort]
    return out


def _response_format(request: ResponsesRequest) -> dict[str, Any] | None:
    fmt = request.text.format if request.text else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    if fmt.schema is None or not fmt.name:
        raise InvalidRequest("A `json_schema` format needs `name` and `schema`.", param="text.format.schema")
    spec: dict[str, Any] = {"name": fmt.name, "schema": fmt.schema}
    if fmt.strict is not None:
        spec["strict"] = fmt.strict
    if fmt.description:
        spec["description"] = fmt.description
    return {"type": "json_schema", "json_schema": spec}


def to_chat(request: ResponsesRequest, raw: Mapping[str, Any], *, history: Sequence[dict[str, Any]] = (),
            referenced: Mapping[str, dict[str, Any]] | None = None, glm_thinking: bool = False) -> ChatTranslation:
    """The chat body for `request`. `history`: the items a `previous_response_id` replays (its inputs and
    outputs, oldest first); `referenced`: the stored items the `item_reference`s name; `glm_thinking`: the
    model takes GLM's `thinking` switch rather than `reasoning_effort`. Raises `InvalidRequest` naming the
    bad field."""
    conversation = _Conversation()
    if request.instructions:
        conversation.messages.append({"role": "system", "content": request.instructions})
    for item in history:
        conversation.add(item, "previous_response_id")
    if request.input is not None and not isinstance(request.input, str | list):
        raise InvalidRequest("`input` must be a string or a list of items.", param="input")
    for index, item in enumerate(input_items(request)):
        if isinstance(item, dict) and item.get("type") == "item_reference":
            found = (referenced or {}).get(str(item.get("id")))
            if found is None:
                raise InvalidRequest(f"No stored item with id {item.get('id')!r}.", param=f"input[{index}].id",
                                     code="item_not_found")
            item = found
        conversation.add(item, f"input[{index}]")
    if conversation.reasoning:  # trailing reasoning, with no answer after it: nothing to attach it to
        conversation.reasoning = []
    if not any(message["role"] != "system" for message in conversation.messages):
        raise InvalidRequest("`input` must hold at least one message or item.", param="input")
    body = {name: value for name, value in raw.items() if name not in _HANDLED}
    body["model"] = request.model
    body["messages"] = conversation.messages
    tools = chat_tools(request.tools or [])
    if tools.tools:
        body["tools"] = tools.tools
        choice = chat_tool_choice(request.tool_choice)
        if choice is not None:
            body["tool_choice"] = choice
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    elif request.tool_choice is not None:
        chat_tool_choice(request.tool_choice)  # a choice forcing a hosted tool is still refused
    for name in _PASSED:
        if raw.get(name) is not None:
            body[name] = raw[name]
    body.update(_reasoning_options(request, glm_thinking))
    response_format = _response_format(request)
    if response_format is not None:
        body["response_format"] = response_format
    if request.max_output_tokens is not None:
        body["max_tokens"] = request.max_output_tokens
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return ChatTranslation(body, tools.custom, tools.namespaces)
