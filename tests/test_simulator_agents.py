"""The simulator as a model an agent can drive: schema-valid tool arguments, JSON answers, scripted turns."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import anthropic
import httpx
import jsonschema  # type: ignore[import-untyped]
import openai
import pydantic
import pytest

from runapi.simulator import (
    SimulatorConfig,
    create_simulator_app,
    prompt_tokens,
    reply_words,
)
from runapi.simulator.schema_values import example_value
from runapi.simulator.script import ScriptTurn, assistant_turns, current_turn
from tests.support.servers import serve_asgi

ASK: list[Any] = [{"role": "user", "content": "Fix the failing test."}]
EDIT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "minLength": 8},
        "mode": {"enum": ["replace", "append"]},
        "line": {"type": "integer", "minimum": 3, "maximum": 9},
        "ratio": {"type": "number", "exclusiveMinimum": 0.5, "multipleOf": 0.25},
        "dry_run": {"type": "boolean"},
        "edits": {"type": "array", "minItems": 2, "uniqueItems": True, "items": {
            "type": "object", "required": ["old", "new"], "additionalProperties": False,
            "properties": {"old": {"type": "string"}, "new": {"type": "string", "maxLength": 3}}}},
        "owner": {"$ref": "#/$defs/person"},
        "note": {"anyOf": [{"type": "null"}, {"type": "string", "format": "date-time"}]},
        "optional": {"type": "string"},
    },
    "required": ["path", "mode", "line", "ratio", "dry_run", "edits", "owner", "note"],
    "additionalProperties": False,
    "$defs": {"person": {"type": "object", "required": ["email", "tags"], "properties": {
        "email": {"type": "string", "format": "email"},
        "tags": {"type": ["array", "null"], "items": {"type": "string"}, "maxItems": 1}}}},
}
OPENAI_EDIT: Any = [{"type": "function", "function": {"name": "edit", "parameters": EDIT_SCHEMA}}]
CLAUDE_EDIT: Any = [{"name": "edit", "description": "Edit a file.", "input_schema": EDIT_SCHEMA}]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_asgi(create_simulator_app()) as url:
        yield url


@pytest.fixture()
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=5) as client:
        client.post("/_sim/reset").raise_for_status()
        yield client
        client.post("/_sim/reset").raise_for_status()


@pytest.fixture()
def oai(base_url: str, http: httpx.Client) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="sk-sim", max_retries=0, timeout=5) as client:
        yield client


@pytest.fixture()
def claude(base_url: str, http: httpx.Client) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=base_url, api_key="sk-ant-sim", max_retries=0, timeout=5) as client:
        yield client


# --- the schema generator (pure) ---------------------------------------------------------------


@pytest.mark.parametrize("schema", [
    EDIT_SCHEMA,
    {"type": "object"},
    {"type": "string", "enum": ["a", "b"]},
    {"const": {"x": 1}},
    {"type": "integer", "exclusiveMaximum": 0},
    {"type": "integer", "minimum": -5, "maximum": -2},
    {"type": "number", "minimum": 1.5},
    {"type": "integer", "multipleOf": 7, "minimum": 8},
    {"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "minimum": 0, "exclusiveMinimum": True},
    {"type": "string", "maxLength": 2},
    {"type": "string", "format": "uuid"},
    {"type": "array", "items": {"type": "integer"}, "minItems": 3, "uniqueItems": True},
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}], "items": False},
    {"type": "array", "maxItems": 0},
    {"allOf": [{"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}},
               {"required": ["b"], "properties": {"b": {"type": "integer", "minimum": 2}}}]},
    {"oneOf": [{"type": "object", "required": ["kind"], "properties": {"kind": {"const": "file"}}},
               {"type": "object", "required": ["kind"], "properties": {"kind": {"const": "dir"}}}]},
    {"type": "object", "minProperties": 2, "properties": {"a": {"type": "string"}, "b": {"type": "null"}}},
    {"type": "object", "required": ["x"], "additionalProperties": {"type": "integer"}},
    {"$ref": "#/definitions/node", "definitions": {"node": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"}, "children": {"type": "array", "items": {"$ref": "#/definitions/node"}}}}}},
    {"type": ["null", "integer"], "minimum": 4},
    True,
])
def test_example_values_validate(schema: Any) -> None:
    value = example_value(schema)
    jsonschema.validate(value, schema if isinstance(schema, dict) else {})
    assert value == example_value(schema)  # deterministic


def test_example_values_are_minimal_and_readable() -> None:
    value = example_value(EDIT_SCHEMA)
    assert "optional" not in value and value["mode"] == "replace" and value["line"] == 3 and value["ratio"] == 0.75
    assert value["path"] == "loremxxx" and value["edits"] == [{"old": "lorem", "new": "lor"}, {"old": "ipsum", "new": "ips"}]
    assert value["owner"] == {"email": "lorem@example.com", "tags": ["lorem"]}


def test_script_turn_follows_the_assistant_turns() -> None:
    script = (ScriptTurn(tool_call={"name": "Read"}), ScriptTurn(text="done"))  # type: ignore[arg-type]
    chat = [*ASK, {"role": "assistant", "tool_calls": []}, {"role": "tool", "content": "x"}]
    assert assistant_turns(chat) == 1 and current_turn(script, ASK) == script[0]
    assert current_turn(script, chat) == script[1]
    assert current_turn(script, [*chat, {"role": "assistant", "content": "done"}, *ASK]) is None


# --- tool arguments and JSON answers ------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_openai_tool_arguments_validate(oai: openai.OpenAI, stream: bool) -> None:
    if stream:
        chunks = list(oai.chat.completions.create(model="m", messages=ASK, tools=OPENAI_EDIT, stream=True))
        arguments = "".join(tc.function.arguments or "" for chunk in chunks for tc in chunk.choices[0].delta.tool_calls
                            or [] if tc.function)
    else:
        message = oai.chat.completions.create(model="m", messages=ASK, tools=OPENAI_EDIT).choices[0].message
        assert message.tool_calls is not None
        arguments = message.tool_calls[0].function.arguments  # type: ignore[union-attr]
    jsonschema.validate(json.loads(arguments), EDIT_SCHEMA)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_tool_input_validates(claude: anthropic.Anthropic, stream: bool) -> None:
    message: anthropic.types.Message
    if stream:
        with claude.messages.stream(model="m", max_tokens=50, messages=ASK, tools=CLAUDE_EDIT) as events:
            message = events.get_final_message()
    else:
        message = claude.messages.create(model="m", max_tokens=50, messages=ASK, tools=CLAUDE_EDIT)
    (use,) = [block for block in message.content if block.type == "tool_use"]
    jsonschema.validate(use.input, EDIT_SCHEMA)


class Verdict(pydantic.BaseModel):
    passed: bool
    failures: list[str]
    severity: Literal["low", "high"]
    score: int = pydantic.Field(ge=2)


def test_openai_structured_outputs_parse(oai: openai.OpenAI) -> None:
    parsed = oai.chat.completions.parse(model="m", messages=ASK, response_format=Verdict).choices[0].message.parsed
    assert parsed == Verdict(passed=True, failures=["lorem"], severity="low", score=2)
    content = oai.chat.completions.create(model="m", messages=ASK, response_format={"type": "json_object"},
                                          max_tokens=3).choices[0].message.content
    assert json.loads(content or "") == {"answer": "lorem ipsum dolor"}
    chunks = oai.chat.completions.create(model="m", messages=ASK, stream=True, response_format={
        "type": "json_schema", "json_schema": {"name": "v", "schema": Verdict.model_json_schema()}})
    Verdict.model_validate_json("".join(chunk.choices[0].delta.content or "" for chunk in chunks))


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_output_config_format(claude: anthropic.Anthropic, http: httpx.Client, stream: bool) -> None:
    body = {"model": "m", "max_tokens": 50, "messages": ASK, "stream": stream,
            "output_config": {"format": {"type": "json_schema", "schema": Verdict.model_json_schema()}}}
    if stream:
        with claude.messages.stream(**{k: v for k, v in body.items() if k != "stream"}) as events:  # type: ignore[arg-type]
            text = events.get_final_text()
    else:
        text = claude.messages.create(**body).content[0].text  # type: ignore[call-overload]
    Verdict.model_validate_json(text)


# --- scripts ------------------------------------------------------------------------------------

SCRIPT = [{"text": "Reading it.", "tool_call": {"name": "edit"}},
          {"tool_calls": [{"name": "read", "arguments": {"path": "a.py"}}, {"name": "read", "arguments": {"path": "b"}}]},
          {"text": "All  tests\npass now."}]


def test_openai_script_plays_one_turn_per_assistant_turn(oai: openai.OpenAI) -> None:
    extra = {"x_sim": {"script": SCRIPT}}
    messages: list[Any] = [*ASK]
    first = oai.chat.completions.create(model="m", messages=messages, tools=OPENAI_EDIT, extra_body=extra)
    message = first.choices[0].message
    assert message.content == "Reading it." and first.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None and message.tool_calls[0].function.name == "edit"  # type: ignore[union-attr]
    arguments = message.tool_calls[0].function.arguments  # type: ignore[union-attr]
    jsonschema.validate(json.loads(arguments), EDIT_SCHEMA)
    assert first.usage is not None and first.usage.completion_tokens == 2 + len(arguments.split())
    messages += [message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": message.tool_calls[0].id, "content": "ok"}]
    chunks = list(oai.chat.completions.create(model="m", messages=messages, stream=True, extra_body=extra))
    calls = [tc for chunk in chunks for tc in chunk.choices[0].delta.tool_calls or []]
    assert [(tc.index, tc.function.name) for tc in calls if tc.id] == [(0, "read"), (1, "read")]  # type: ignore[union-attr]
    for index, path in ((0, "a.py"), (1, "b")):
        text = "".join(tc.function.arguments or "" for tc in calls if tc.index == index)  # type: ignore[union-attr]
        assert json.loads(text) == {"path": path}
    messages += [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}]
    last = oai.chat.completions.create(model="m", messages=messages, extra_body=extra)
    assert last.choices[0].message.content == "All  tests\npass now." and last.choices[0].finish_reason == "stop"
    assert last.usage is not None and last.usage.completion_tokens == 4  # whitespace-separated words
    messages += [{"role": "assistant", "content": "All tests pass now."}, *ASK]
    after = oai.chat.completions.create(model="m", messages=messages, extra_body=extra)  # past the end: lorem ipsum
    assert after.choices[0].message.content == " ".join(reply_words(12))


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_script_set_by_the_control_endpoint(claude: anthropic.Anthropic, http: httpx.Client,
                                                      stream: bool) -> None:
    assert http.post("/_sim/script", json={"script": SCRIPT}).json() == {"turns": 3}

    def call(messages: list[Any]) -> anthropic.types.Message:
        if not stream:
            return claude.messages.create(model="m", max_tokens=5, messages=messages, tools=CLAUDE_EDIT)
        with claude.messages.stream(model="m", max_tokens=5, messages=messages, tools=CLAUDE_EDIT) as events:
            return events.get_final_message()

    first = call(ASK)
    assert [block.type for block in first.content] == ["text", "tool_use"] and first.stop_reason == "tool_use"
    assert first.content[0].text == "Reading it."  # type: ignore[union-attr]
    jsonschema.validate(first.content[1].input, EDIT_SCHEMA)  # type: ignore[union-attr]
    history: list[Any] = [*ASK, {"role": "assistant", "content": [b.model_dump() for b in first.content]},
                          {"role": "user", "content": [{"type": "tool_result", "tool_use_id": first.content[1].id,  # type: ignore[union-attr]
                                                        "content": "ok"}]}]
    second = call(history)
    assert [(b.type, b.input) for b in second.content] == [("tool_use", {"path": "a.py"}), ("tool_use", {"path": "b"})]  # type: ignore[union-attr]
    history += [{"role": "assistant", "content": [b.model_dump() for b in second.content]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": b.id, "content": "ok"}  # type: ignore[union-attr]
                                             for b in second.content]}]
    third = call(history)
    assert third.content[0].text == "All  tests\npass now." and third.stop_reason == "end_turn"  # type: ignore[union-attr]
    assert third.usage.output_tokens == 4 and third.usage.input_tokens == prompt_tokens(history)
    http.post("/_sim/reset").raise_for_status()  # the script set at run time ends with a reset
    assert call(history).content[0].text == " ".join(reply_words(5))  # type: ignore[union-attr]


def test_instance_script_and_bad_scripts(http: httpx.Client) -> None:
    config = SimulatorConfig(script=(ScriptTurn(text="scripted"),))
    with serve_asgi(create_simulator_app(config)) as url:
        answer = httpx.post(f"{url}/v1/chat/completions", json={"model": "m", "messages": ASK}).json()
        assert answer["choices"][0]["message"]["content"] == "scripted"
        httpx.post(f"{url}/_sim/reset").raise_for_status()  # the instance's own script stays
        answer = httpx.post(f"{url}/v1/chat/completions", json={"model": "m", "messages": ASK}).json()
        assert answer["choices"][0]["message"]["content"] == "scripted"
    assert http.post("/_sim/script", json={"script": [{}]}).status_code == 400
    assert http.post("/_sim/script", json={"script": [{"tool_call": {"arguments": {}}}]}).status_code == 400
    bad = http.post("/v1/messages", json={"model": "m", "max_tokens": 5, "messages": ASK,
                                          "x_sim": {"script": [{"texts": "x"}]}})
    assert bad.status_code == 400 and "x_sim" in bad.json()["error"]["message"]
