"""Responses tools and `tool_choice` → chat-completions tools (pure).

A `function` tool is a chat function tool. A `custom` tool (freeform text input, as Codex's
`apply_patch`) becomes a function taking one string argument, `input`; its calls are answered
back as `custom_tool_call` items. Tools that run on OpenAI's side (web search, file search, shell,
computer use, MCP, ...) cannot be offered to another model: a 400 names the tool type.
"""

from __future__ import annotations

from typing import Any

from runapi.errors import InvalidRequest

CUSTOM_INPUT = "input"
"""The one argument of a `custom` tool's function."""


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


def chat_tools(tools: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], frozenset[str]]:
    """(chat tools, names of the custom tools). Raises `InvalidRequest` for a tool type that cannot be mapped."""
    out: list[dict[str, Any]] = []
    custom: set[str] = set()
    for index, tool in enumerate(tools):
        kind = tool.get("type")
        if kind == "function":
            out.append(_function_tool(tool, index))
        elif kind == "custom":
            out.append(_custom_tool(tool, index))
            custom.add(tool["name"])
        else:
            raise InvalidRequest(
                f"Tools of type `{kind}` run on OpenAI's own servers and are not supported here: only `function` "
                "and `custom` tools can be offered to this gateway's models.", param=f"tools[{index}].type",
                code="unsupported_tool_type")
    return out, frozenset(custom)


def chat_tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    """`tool_choice` as chat completions takes it (None: the upstream's default, auto)."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom") and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools" and choice.get("mode") in ("auto", "required"):
        return str(choice["mode"])  # every offered tool stays allowed: a wider choice than asked, never a refusal
    shown = choice.get("type") if isinstance(choice, dict) else choice
    raise InvalidRequest(f"`tool_choice` {shown!r} is not supported: use auto, none, required or "
                         "{\"type\": \"function\", \"name\": ...}.", param="tool_choice")
