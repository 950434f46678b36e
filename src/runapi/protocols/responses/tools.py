"""Responses tools and `tool_choice` → chat-completions tools (pure).

A `function` tool is a chat function tool; a `namespace` tool's function tools are offered under
their own names (the call item says which namespace it came from). A `custom` tool (freeform text
input, as Codex's `apply_patch`) becomes a function taking one string argument, `input`; its calls
are answered back as `custom_tool_call` items. Tools that OpenAI runs on its own servers (web search,
file search, code interpreter, ...) have no runner here: they are left out of what the model is
offered (Codex offers `web_search` on every turn; refusing it would refuse every Codex request), and a
`tool_choice` that forces one is a 400 naming the tool type. A tool type this module does not know is
a 400 naming it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from runapi.errors import InvalidRequest

CUSTOM_INPUT = "input"
"""The one argument of a `custom` tool's function."""

HOSTED_TOOLS = frozenset({
    "web_search", "web_search_preview", "web_search_2025_08_26", "web_search_preview_2025_03_11", "file_search",
    "code_interpreter", "image_generation", "computer_use_preview", "computer_use", "mcp", "local_shell", "shell",
    "apply_patch", "tool_search",
})
"""Tools run by OpenAI's servers (or, for `local_shell`/`shell`/`apply_patch`, by a client for OpenAI's
own models' special output items): never offered to this gateway's models."""


class ChatTools(msgspec.Struct, frozen=True):
    """The chat tools; the custom tools' names; each namespaced function's namespace."""

    tools: list[dict[str, Any]]
    custom: frozenset[str] = frozenset()
    namespaces: dict[str, str] = {}


def _function_tool(tool: dict[str, Any], index: int) -> dict[str, Any]:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("A function tool needs a `name`.", param=f"tools[{index}].name")
    function: dict[str, Any] = {"name": name, "parameters": tool.get("parameters") or {"type": "object", "properties": {}}}
    if tool.get("description"):
        function["description"] = tool["description"]
    if tool.get("strict") is not None:
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _custom_tool(tool: dict[str, Any], index: int) -> dict[str, Any]:
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("A custom tool needs a `name`.", param=f"tools[{index}].name")
    described = "The tool's whole input, as free text."
    fmt = tool.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
        described += f" It must follow this {fmt.get('syntax', '')} grammar:\n{fmt['definition']}"
    function: dict[str, Any] = {"name": name, "parameters": {
        "type": "object", "properties": {CUSTOM_INPUT: {"type": "string", "description": described}},
        "required": [CUSTOM_INPUT], "additionalProperties": False}}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def chat_tools(tools: list[dict[str, Any]]) -> ChatTools:
    """The chat tools for `tools`. Raises `InvalidRequest` for a tool type this module does not know."""
    out: list[dict[str, Any]] = []
    custom: set[str] = set()
    namespaces: dict[str, str] = {}
    for index, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function":
            out.append(_function_tool(tool, index))
        elif kind == "custom":
            out.append(_custom_tool(tool, index))
            custom.add(tool["name"])
        elif kind == "namespace":
            for inner, member in enumerate(tool.get("tools") or ()):
                where = f"tools[{index}].tools[{inner}]"
                if not isinstance(member, dict) or member.get("type") not in ("function", "custom"):
                    raise InvalidRequest("A namespace holds `function` and `custom` tools only.", param=f"{where}.type")
                out.append(_function_tool(member, index) if member["type"] == "function" else _custom_tool(member, index))
                if member["type"] == "custom":
                    custom.add(member["name"])
                namespaces[member["name"]] = str(tool.get("name") or "")
        elif kind not in HOSTED_TOOLS:
            raise InvalidRequest(f"Tools of type `{kind}` are not supported: `function`, `custom` and `namespace` tools "
                                 "are offered to the model; OpenAI's hosted tools are left out.",
                                 param=f"tools[{index}].type", code="unsupported_tool_type")
    return ChatTools(out, frozenset(custom), namespaces)


def chat_tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """`tool_choice` as chat completions takes it (None: the upstream's default, auto)."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom") and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools" and choice.get("mode") in ("auto", "required"):
        return str(choice["mode"])  # every offered tool stays allowed: a wider choice than asked, never a refusal
    shown = choice.get("type") if isinstance(choice, dict) else choice
    if shown in HOSTED_TOOLS:
        raise InvalidRequest(f"`tool_choice` forces the `{shown}` tool, which OpenAI runs on its own servers: this "
                             "gateway has no such tool.", param="tool_choice.type", code="unsupported_tool_type")
    raise InvalidRequest(f"`tool_choice` {shown!r} is not supported: use auto, none, required or "
                         "{\"type\": \"function\", \"name\": ...}.", param="tool_choice")
