"""Anthropic tool definitions and `tool_choice` → OpenAI function tools (pure), for `/v1/messages` on
OpenAI-protocol upstreams.

Client tools (name, description, input_schema) become functions. Anthropic-defined tools that
the client runs (bash, the text editor, memory) become functions with the schema Anthropic
documents for them, so a model behind the chat API can call them the same way. Server tools
(web search and fetch, code execution, tool search, MCP toolsets, ...) run on Anthropic's
side: no OpenAI-protocol upstream can run them, so they are left out.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ANTHROPIC_CLIENT_TOOLS", "chat_tool_choice", "chat_tools"]

_STRING = {"type": "string"}
ANTHROPIC_CLIENT_TOOLS: dict[str, dict[str, Any]] = {
    "bash_": {"type": "object", "properties": {"command": _STRING, "restart": {"type": "boolean"}}},
    "text_editor_": {
        "type": "object", "required": ["command", "path"],
        "properties": {"command": {"type": "string", "enum": ["view", "create", "str_replace", "insert", "undo_edit"]},
                       "path": _STRING, "file_text": _STRING, "old_str": _STRING, "new_str": _STRING,
                       "insert_line": {"type": "integer"}, "insert_text": _STRING,
                       "view_range": {"type": "array", "items": {"type": "integer"}}},
    },
    "memory_": {
        "type": "object", "required": ["command"],
        "properties": {"command": {"type": "string", "enum": ["view", "create", "str_replace", "insert", "delete",
                                                              "rename"]},
                       "path": _STRING, "file_text": _STRING, "old_str": _STRING, "new_str": _STRING,
                       "insert_line": {"type": "integer"}, "insert_text": _STRING, "old_path": _STRING,
                       "new_path": _STRING, "view_range": {"type": "array", "items": {"type": "integer"}}},
    },
}
"""Type prefix (`bash_20250124`, `text_editor_20250728`, ...) → the input schema Anthropic documents."""


def _schema_of(tool: dict[str, Any]) -> dict[str, Any] | None:
    """The function parameters for a tool, or None when it is a server tool (or unknown)."""
    kind = tool.get("type")
    if kind in (None, "custom"):
        schema = tool.get("input_schema")
        return schema if isinstance(schema, dict) else {"type": "object", "properties": {}}
    for prefix, schema in ANTHROPIC_CLIENT_TOOLS.items():
        if isinstance(kind, str) and kind.startswith(prefix):
            return schema
    return None


def chat_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tools an OpenAI upstream can offer its model, as function tools (see the module notes)."""
    out = []
    for tool in tools:
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            continue
        schema = _schema_of(tool)
        if schema is None:
            continue
        function: dict[str, Any] = {"name": tool["name"], "parameters": schema}
        if tool.get("description"):
            function["description"] = tool["description"]
        out.append({"type": "function", "function": function})
    return out


def chat_tool_choice(choice: dict[str, Any], offered: set[str]) -> tuple[Any, bool]:
    """(OpenAI `tool_choice` or None for the default, parallel tool calls allowed).

    A `tool` choice naming a tool that was left out (a server tool) falls back to `required`.
    """
    kind = choice.get("type")
    mapped: Any = {"auto": "auto", "any": "required", "none": "none"}.get(str(kind))
    if kind == "tool":
        name = choice.get("name")
        mapped = {"type": "function", "function": {"name": name}} if name in offered else "required"
    return mapped, not choice.get("disable_parallel_tool_use")
