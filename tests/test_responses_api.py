"""`/v1/responses` with the official openai SDK against a real gateway and the simulator: create (string, items,
tools round trips with `previous_response_id`), stream, parse, the stored responses and who may read them,
failures (free), and exact costs that match `/v1/generations/{id}` and the ledger, on chat and Anthropic upstreams."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pydantic
import pytest

from tests.support.charges import charged_generations, generation
from tests.support.gateway import RunningGateway, run_gateway, sqlite_url
from tests.support.sse import decode, sse_data

MODELS = ["glm-4.6", "claude-sonnet-5-5"]  # a chat upstream, and an Anthropic-protocol one
CREDIT = Decimal(10)
READ: Any = {"type": "function", "name": "read_file", "description": "Read a file.", "strict": False, "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}}
SCRIPT = [{"tool_call": {"name": "read_file", "arguments": {"path": "notes.txt"}}}, {"text": "The notes say: ship it."}]


@pytest.fixture()
def sdk(gateway: RunningGateway) -> Iterator[tuple[str, openai.OpenAI]]:
    account, key = gateway.create_account("10")
    with openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=key, max_retries=0) as client:
        yield account, client


def cost_of(response: Any) -> Decimal:
    return Decimal(str(response.usage.model_extra["cost"]))


@pytest.mark.parametrize("model", MODELS)
def test_create_retrieve_list_delete(gateway: RunningGateway, sim: httpx.Client, sdk: tuple[str, openai.OpenAI],
                                     model: str) -> None:
    account, client = sdk
    raw = client.responses.with_raw_response.create(model=model, input="Say hello.", instructions="Be brief.",
                                                    metadata={"ticket": "42"}, max_output_tokens=500)
    response = raw.parse()
    assert response.id.startswith("resp_") and response.object == "response" and response.status == "completed"
    assert response.model == model and response.instructions == "Be brief." and response.metadata == {"ticket": "42"}
    assert response.output_text and response.output[0].type == "message"
    usage = response.usage
    assert usage is not None and usage.total_tokens == usage.input_tokens + usage.output_tokens
    generation_id = raw.headers["x-runapi-generation-id"]
    assert response.id == "resp_" + generation_id.removeprefix("gen-") and "x-runapi-overhead-ms" in raw.headers
    row = generation(gateway, str(client.api_key), response.id)  # a response ID finds its generation
    assert row["id"] == generation_id and row["cost"] == cost_of(response)
    (charged,) = charged_generations(gateway, account, str(client.api_key), CREDIT)
    assert charged["id"] == generation_id

    sent = sim.get("/_sim/stats").json()["last_request"]
    assert (sent.get("system") or sent["messages"][0]["content"]) == "Be brief."

    again = client.responses.retrieve(response.id)
    assert again.model_dump(exclude={"completed_at"}) == response.model_dump(exclude={"completed_at"})
    items = client.responses.input_items.list(response.id)
    listed: list[Any] = list(items.data)
    assert [(item.type, item.role) for item in listed] == [("message", "user")]
    assert listed[0].content[0].text == "Say hello."
    deleted = client.responses.with_raw_response.delete(response.id)
    assert deleted.status_code == 200
    assert deleted.http_response.json() == {"id": response.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_tool_round_trip_with_previous_response_id(gateway: RunningGateway, sim: httpx.Client,
                                                   sdk: tuple[str, openai.OpenAI], model: str, stream: bool) -> None:
    account, client = sdk
    extra = {"x_sim": {"script": SCRIPT}}

    def call(**kwargs: Any) -> Any:
        if not stream:
            return client.responses.create(model=model, tools=[READ], extra_body=extra, **kwargs)
        with client.responses.stream(model=model, tools=[READ], extra_body=extra, **kwargs) as events:
            done: list[Any] = [event.item for event in events if event.type == "response.output_item.done"]
            final: Any = events.get_final_response()
        assert [item.id for item in done] == [item.id for item in final.output]  # each item, whole, once
        return final

    first = call(input=[{"role": "user", "content": "What do my notes say?"}])
    (tool_call,) = [item for item in first.output if item.type == "function_call"]
    assert (tool_call.name, decode(tool_call.arguments)) == ("read_file", {"path": "notes.txt"})
    second = call(previous_response_id=first.id,
                  input=[{"type": "function_call_output", "call_id": tool_call.call_id, "output": "ship it"}])
    assert second.output_text == "The notes say: ship it." and second.previous_response_id == first.id
    sent = sim.get("/_sim/stats").json()["last_request"]
    if model == "glm-4.6":  # the replayed context: the user's question, the tool call, its output
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "tool"]
        assert sent["messages"][1]["tool_calls"][0]["id"] == tool_call.call_id
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": tool_call.call_id, "content": "ship it"}
    else:
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
        assert sent["messages"][2]["content"][0]["tool_use_id"] == tool_call.call_id
    rows = {row["id"]: row for row in charged_generations(gateway, account, str(client.api_key), CREDIT)}
    assert rows["gen-" + first.id[5:]]["cost"] == cost_of(first)
    assert rows["gen-" + second.id[5:]]["cost"] == cost_of(second)
    assert second.usage.input_tokens > first.usage.input_tokens  # the replayed turn is billed as counted


def test_stream_events_in_order(gateway: RunningGateway, sdk: tuple[str, openai.OpenAI]) -> None:
    account, client = sdk
    with client.responses.stream(model="glm-4.6", input="Think, then answer.", reasoning={"effort": "high"},
                                 extra_body={"x_sim": {"reasoning_tokens": 3, "completion_tokens": 6}}) as events:
        seen = list(events)
        final = events.get_final_response()
    assert [event.sequence_number for event in seen] == list(range(len(seen)))
    kinds = [event.type for event in seen]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == "response.completed"
    first_text = kinds.index("response.output_text.delta")
    assert kinds[first_text - 2:first_text] == ["response.output_item.added", "response.content_part.added"]
    assert "response.reasoning_summary_text.delta" in kinds[:first_text]
    assert kinds[-4:-1] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    text = "".join(event.delta for event in seen if event.type == "response.output_text.delta")
    assert text == final.output_text and len(text.split()) == 6
    reasoning = final.output[0]
    assert reasoning.type == "reasoning" and len(reasoning.summary[0].text.split()) == 3
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens == 3
    (row,) = charged_generations(gateway, account, str(client.api_key), CREDIT)
    assert row["cost"] == cost_of(final) and row["stream"] is True


class Weather(pydantic.BaseModel):
    city: str
    temperature_c: int
    sunny: bool


def test_parse_with_a_pydantic_model(sdk: tuple[str, openai.OpenAI], sim: httpx.Client) -> None:
    _, client = sdk
    parsed = client.responses.parse(model="glm-4.6", input="Weather in Paris?", text_format=Weather)
    assert isinstance(parsed.output_parsed, Weather)
    sent = sim.get("/_sim/stats").json()["last_request"]
    assert sent["response_format"]["type"] == "json_schema" and sent["response_format"]["json_schema"]["name"] == "Weather"


def test_custom_tools_are_answered_as_custom_tool_calls(sdk: tuple[str, openai.OpenAI], sim: httpx.Client) -> None:
    _, client = sdk
    patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch"
    tools: Any = [{"type": "custom", "name": "apply_patch", "description": "Apply a patch.",
                   "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/s"}}]
    script = [{"tool_call": {"name": "apply_patch", "arguments": {"input": patch}}}, {"text": "Done."}]
    first = client.responses.create(model="glm-4.6", input="Add a.txt", tools=tools, store=False,
                                    extra_body={"x_sim": {"script": script}})
    (call,) = first.output
    assert call.type == "custom_tool_call" and call.input == patch and call.name == "apply_patch"
    offered = sim.get("/_sim/stats").json()["last_request"]["tools"][0]["function"]
    assert offered["name"] == "apply_patch" and offered["parameters"]["required"] == ["input"]
    history: Any = [{"role": "user", "content": "Add a.txt"}, call.model_dump(exclude_none=True),
                    {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Applied."}]
    with client.responses.stream(model="glm-4.6", input=history, tools=tools, store=False,
                                 extra_body={"x_sim": {"script": script}}) as events:
        assert events.get_final_response().output_text == "Done."
    sent = sim.get("/_sim/stats").json()["last_request"]["messages"]
    assert decode(sent[1]["tool_calls"][0]["function"]["arguments"]) == {"input": patch}
    with pytest.raises(openai.NotFoundError):  # store=False: nothing kept
        client.responses.retrieve(first.id)


def test_max_output_tokens_cut_is_incomplete(sdk: tuple[str, openai.OpenAI]) -> None:
    _, client = sdk
    response = client.responses.create(model="glm-4.6", input="Talk.", max_output_tokens=3,
                                       extra_body={"x_sim": {"completion_tokens": 20}})
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens" and response.usage.output_tokens == 3  # type: ignore[union-attr]
    with client.responses.stream(model="glm-4.6", input="Talk.", max_output_tokens=3,
                                 extra_body={"x_sim": {"completion_tokens": 20}}) as events:
        kinds = [event.type for event in events]
    assert kinds[-1] == "response.incomplete"


def test_another_accounts_response_is_not_found(gateway: RunningGateway, sdk: tuple[str, openai.OpenAI]) -> None:
    _, client = sdk
    response = client.responses.create(model="glm-4.6", input="A secret.")
    _, other_key = gateway.create_account("10")
    with openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=other_key, max_retries=0) as other:
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(response.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.input_items.list(response.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(response.id)
        with pytest.raises(openai.NotFoundError) as error:
            other.responses.create(model="glm-4.6", input="And?", previous_response_id=response.id)
        assert error.value.body["param"] == "previous_response_id"  # type: ignore[index]
        reference: Any = {"type": "item_reference", "id": response.output[0].id}
        with pytest.raises(openai.BadRequestError):  # nor can its items be referenced
            other.responses.create(model="glm-4.6", input=[reference])
    assert client.responses.retrieve(response.id).id == response.id  # the owner still can
    referenced = client.responses.create(model="glm-4.6", input=[reference, {"role": "user", "content": "Go on."}])
    assert referenced.status == "completed"


def test_a_failed_upstream_is_free(gateway: RunningGateway, sdk: tuple[str, openai.OpenAI]) -> None:
    account, client = sdk
    with client.responses.stream(model="glm-4.6", input="Hi.", extra_body={"x_sim": {"fault": "error_event"}}) as events:
        kinds = []
        for event in events:
            kinds.append(event.type)
            if event.type == "response.failed":
                failed = event.response
    assert kinds[-2:] == ["error", "response.failed"] and failed.status == "failed" and failed.error is not None
    assert failed.error.code == "server_error" and failed.usage is None
    with pytest.raises(openai.APIStatusError) as error:
        client.responses.create(model="glm-4.6", input="Hi.", extra_body={"x_sim": {"fault": "500"}})
    assert error.value.status_code >= 500
    assert charged_generations(gateway, account, str(client.api_key), CREDIT) == []
    with pytest.raises(openai.NotFoundError):  # a failed response is not stored
        client.responses.retrieve(failed.id)


@pytest.mark.parametrize(("body", "param"), [
    ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "input[0].type"),
    ({"input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0].type"),
    ({"input": "hi", "tools": [{"type": "teleport"}]}, "tools[0].type"),
    ({"input": "hi", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}, "tool_choice.type"),
    ({"input": "hi", "text": {"format": {"type": "json_schema"}}}, "text.format.schema"),
    ({"input": "hi", "max_output_tokens": 0}, "$.max_output_tokens"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ({"input": []}, "input"),
    ({"input": "hi", "background": True}, "background"),
])
def test_bad_input_is_a_400_naming_the_field(gateway: RunningGateway, body: dict[str, Any], param: str) -> None:
    _, key = gateway.create_account("10")
    response = httpx.post(f"{gateway.base_url}/v1/responses", json={"model": "glm-4.6", **body},
                          headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error", error


CODEX_TURN: Any = {  # what Codex CLI 0.169.0 sends on its second turn (CODEX-WIRE.md), tools trimmed
    "model": "glm-4.6", "stream": True, "tool_choice": "auto", "parallel_tool_calls": True,
    "reasoning": {"summary": "auto"}, "store": False, "include": ["reasoning.encrypted_content"],
    "prompt_cache_key": "01a24e8d-6d22-7c12-b5cc-2018a967f2c5", "client_metadata": {"originator": "codex_exec"},
    "input": [
        {"type": "message", "id": "msg_a", "role": "developer", "content": [{"type": "input_text", "text": "Be safe."}]},
        {"type": "message", "id": "msg_b", "role": "user",
         "content": [{"type": "input_text", "text": "<env/>"}, {"type": "input_text", "text": "run echo"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
        {"type": "function_call", "status": "completed", "id": "fc_1", "name": "exec_command",
         "arguments": "{\"cmd\":\"echo hi\"}", "call_id": "call_1"},
        {"type": "function_call_output", "id": "fco_1", "call_id": "call_1", "output": "hi\n"},
    ],
    "tools": [
        {"type": "function", "name": "exec_command", "strict": False, "parameters": {
            "type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
        {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [
            {"type": "function", "name": "spawn_agent", "parameters": {"type": "object", "properties": {}}}]},
        {"type": "web_search", "external_web_access": False},
    ],
}


@pytest.mark.parametrize("model", MODELS)
def test_a_codex_turn(gateway: RunningGateway, sim: httpx.Client, model: str) -> None:
    _, key = gateway.create_account("10")
    response = httpx.post(f"{gateway.base_url}/v1/responses", json={**CODEX_TURN, "model": model},
                          headers={"authorization": f"Bearer {key}", "accept": "text/event-stream"})
    assert response.status_code == 200, response.text
    events = [decode(data) for data in sse_data(response.text)]
    done = [event["item"] for event in events if event["type"] == "response.output_item.done"]
    assert events[-1]["type"] == "response.completed" and done == events[-1]["response"]["output"]
    assert done[0]["type"] == "message" and done[0]["content"][0]["text"]
    sent = sim.get("/_sim/stats").json()["last_request"]
    if model == "glm-4.6":
        assert sent["messages"][0] == {"role": "system", "content": "Be safe."}
        assert [tool["function"]["name"] for tool in sent["tools"]] == ["exec_command", "spawn_agent"]
        assert "client_metadata" not in sent and "include" not in sent and "store" not in sent
    else:
        assert sent["system"] == "Be safe." and [tool["name"] for tool in sent["tools"]] == ["exec_command", "spawn_agent"]
    assert httpx.get(f"{gateway.base_url}/v1/responses/{events[-1]['response']['id']}",
                     headers={"authorization": f"Bearer {key}"}).status_code == 404  # store: false


def test_namespaced_calls_name_their_namespace(sdk: tuple[str, openai.OpenAI]) -> None:
    _, client = sdk
    tools: Any = CODEX_TURN["tools"]
    script = [{"tool_call": {"name": "spawn_agent", "arguments": {}}}]
    response = client.responses.create(model="glm-4.6", input="Spawn one.", tools=tools,
                                       extra_body={"x_sim": {"script": script}})
    (call,) = response.output
    assert call.type == "function_call" and call.name == "spawn_agent" and call.namespace == "multi_agent_v1"


def test_store_on_both_backends(database_url: str, sim_url: str, tmp_path: Path) -> None:
    with run_gateway(database_url, sim_url, circuit_failures=0) as gw:
        _, key = gw.create_account("10")
        with openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0) as client:
            first = client.responses.create(model="glm-4.6", input="One.", instructions="Only here.")
            second = client.responses.create(model="glm-4.6", input=[{"role": "user", "content": "Two."}],
                                             previous_response_id=first.id)
            assert second.instructions is None  # instructions do not carry over
            page = client.responses.input_items.list(second.id, order="asc", limit=1)
            assert len(page.data) == 1 and page.has_more is False
            got = client.responses.retrieve(second.id)
            assert got.previous_response_id == first.id and cost_of(got) == cost_of(second)
            client.responses.delete(first.id)
            with pytest.raises(openai.NotFoundError):
                client.responses.create(model="glm-4.6", input="Three.", previous_response_id=first.id)


def test_a_failed_store_write_is_logged_and_the_answer_stands(sim_url: str, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """The store writes after the answer: a write that fails (here the table is gone) is logged, the call was
    answered and charged all the same, and the response is simply not stored."""
    with run_gateway(sqlite_url(tmp_path), sim_url, circuit_failures=0) as gw:
        account, key = gw.create_account("10")
        with sqlite3.connect(tmp_path / "runapi.db") as db:
            db.execute("DROP TABLE responses")
        with openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=key, max_retries=0) as client, \
                caplog.at_level("ERROR", logger="runapi.responses"):
            response = client.responses.create(model="glm-4.6", input="Hi.")
            assert response.status == "completed"
            with pytest.raises(openai.InternalServerError):  # reading the missing table: the read fails, loudly
                client.responses.retrieve(response.id)
        assert any("could not store 1 response(s)" in record.getMessage() and response.id in record.getMessage()
                   for record in caplog.records)
        (row,) = charged_generations(gw, account, key, CREDIT)
        assert row["cost"] == cost_of(response)
