"""The local upstream simulator, driven over loopback by the official SDKs and raw httpx."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from runapi.simulator import (
    SimulatorConfig,
    create_simulator_app,
    prompt_tokens,
    reply_words,
)
from runapi.simulator.tokens import chunk_texts
from tests.support.servers import serve_asgi

MESSAGES: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the weather in Paris today?"},
]
CLAUDE_MESSAGES: list[Any] = [{"role": "user", "content": "What is the weather in Paris today?"}]
SYSTEM = "You are terse."
OPENAI_TOOLS: list[Any] = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
CLAUDE_TOOLS: list[Any] = [{"name": "search", "description": "Search.", "input_schema": {"type": "object"}}]
ANSWER = " ".join(reply_words(12))


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_asgi(create_simulator_app()) as url:
        yield url


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=5) as client:
        yield client


@pytest.fixture(autouse=True)
def _reset_simulator(http: httpx.Client) -> None:
    http.post("/_sim/reset").raise_for_status()


@pytest.fixture(scope="module")
def oai(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="sk-sim", max_retries=0, timeout=5) as client:
        yield client


@pytest.fixture(scope="module")
def claude(base_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=base_url, api_key="sk-ant-sim", max_retries=0, timeout=5) as client:
        yield client


def sse_data(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]


def sse_events(text: str) -> list[str]:
    return [line[len("event: ") :] for line in text.split("\n") if line.startswith("event: ")]


def chat(http: httpx.Client, **body: Any) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": "glm-4.5-air", "messages": MESSAGES, **body})


# --- token rules -----------------------------------------------------------------------------

TOOL_ARGS = '{"query": "lorem"}'


@pytest.mark.parametrize(
    ("messages", "system", "expected"),
    [
        ([{"role": "user", "content": "hello there"}], None, 2 + 3),
        (MESSAGES, None, 3 + 3 + 7 + 3),
        ([{"role": "user", "content": [{"type": "text", "text": "a b c"}, {"type": "image_url"}]}], None, 3 + 85 + 3),
        (
            [
                {"role": "assistant", "content": None, "tool_calls": [{"function": {"arguments": TOOL_ARGS}}]},
                {"role": "tool", "tool_call_id": "c", "content": "sunny and warm"},
            ],
            None,
            2 + 3 + 3 + 3,
        ),
        (
            [{"role": "user", "content": [{"type": "tool_result", "content": [{"type": "text", "text": "x y"}]}]}],
            "be brief",
            2 + 3 + 2 + 3,
        ),
        ([{"role": "assistant", "content": [{"type": "tool_use", "input": {"query": "lorem"}}]}], None, 2 + 3),
        ([], [{"type": "text", "text": "one two three"}], 3 + 3),
        ([{"role": "user", "content": [{"type": "image", "source": {}}]}], "", 85 + 3 + 3),
    ],
)
def test_prompt_tokens_rules(messages: list[Any], system: Any, expected: int) -> None:
    assert prompt_tokens(messages, system) == expected


def test_reply_words_cycle_and_chunks_concatenate() -> None:
    assert reply_words(3) == ["lorem", "ipsum", "dolor"]
    assert reply_words(40)[19:22] == ["lorem", "ipsum", "dolor"]
    words = reply_words(10)
    for chunks in (0, 1, 3, 4, 10, 50):
        texts = chunk_texts(words, chunks)
        assert "".join(texts) == " ".join(words)
        sizes = {len(text.split()) for text in texts}
        assert max(sizes) - min(sizes) <= 1
    assert len(chunk_texts(words, 0)) == 10 and len(chunk_texts(words, 3)) == 3
    assert chunk_texts([], 3) == []


# --- OpenAI ----------------------------------------------------------------------------------


def test_openai_json_reports_exact_usage(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="glm-4.5-air", messages=MESSAGES)
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "glm-4.5-air"
    assert completion.choices[0].message.content == ANSWER
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (16, 12, 28)
    assert usage.prompt_tokens == prompt_tokens(MESSAGES)


def test_openai_max_tokens_caps_with_length(oai: openai.OpenAI) -> None:
    capped = oai.chat.completions.create(model="m", messages=MESSAGES, max_tokens=5)
    assert capped.choices[0].message.content == " ".join(reply_words(5))
    assert capped.choices[0].finish_reason == "length"
    assert capped.usage is not None and capped.usage.completion_tokens == 5
    newer = oai.chat.completions.create(model="m", messages=MESSAGES, max_completion_tokens=4)
    assert newer.usage is not None and newer.usage.completion_tokens == 4
    roomy = oai.chat.completions.create(model="m", messages=MESSAGES, max_tokens=500)
    assert roomy.choices[0].finish_reason == "stop"


def test_openai_cached_tokens_capped_at_prompt(oai: openai.OpenAI) -> None:
    some = oai.chat.completions.create(model="m", messages=MESSAGES, extra_body={"x_sim": {"cached_tokens": 10}})
    assert some.usage is not None and some.usage.prompt_tokens_details is not None
    assert some.usage.prompt_tokens_details.cached_tokens == 10
    assert some.usage.prompt_tokens == 16
    every = oai.chat.completions.create(model="m", messages=MESSAGES, extra_body={"x_sim": {"cached_tokens": 999}})
    assert every.usage is not None and every.usage.prompt_tokens_details is not None
    assert every.usage.prompt_tokens_details.cached_tokens == 16


def test_openai_reasoning_content_counted_in_completion(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="m", messages=MESSAGES, extra_body={"x_sim": {"reasoning_tokens": 4}}
    )
    message = completion.choices[0].message
    assert message.model_extra == {"reasoning_content": " ".join(reply_words(4))}
    assert message.content == ANSWER
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens == 16 and usage.completion_tokens_details.reasoning_tokens == 4


def test_openai_stream_with_include_usage(oai: openai.OpenAI, http: httpx.Client) -> None:
    stream = oai.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert len({chunk.id for chunk in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == ANSWER
    assert len(chunks) == 1 + 12 + 1 + 1
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (16, 12)
    raw = sse_data(chat(http, stream=True, stream_options={"include_usage": True}).text)
    assert raw[-1] == "[DONE]"
    assert all(json.loads(data)["usage"] is None for data in raw[:-2])


def test_openai_stream_without_usage(http: httpx.Client) -> None:
    plain = sse_data(chat(http, stream=True).text)
    assert plain[-1] == "[DONE]"
    assert all("usage" not in json.loads(data) for data in plain[:-1])
    assert json.loads(plain[-2])["choices"][0]["finish_reason"] == "stop"
    ignored = chat(http, stream=True, stream_options={"include_usage": True}, x_sim={"honour_include_usage": False})
    assert all("usage" not in json.loads(data) for data in sse_data(ignored.text)[:-1])


def test_openai_stream_chunks_and_reasoning(oai: openai.OpenAI) -> None:
    stream = oai.chat.completions.create(
        model="m", messages=MESSAGES, stream=True, extra_body={"x_sim": {"chunks": 5, "reasoning_tokens": 3}}
    )
    deltas = [chunk.choices[0].delta for chunk in stream]
    reasoning = [delta.model_extra["reasoning_content"] for delta in deltas if delta.model_extra]
    content = [delta.content for delta in deltas[1:] if delta.content]
    assert "".join(reasoning) == " ".join(reply_words(3)) and len(reasoning) == 3
    assert "".join(content) == ANSWER and len(content) == 5


def test_openai_tool_call_json_and_stream(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(model="m", messages=MESSAGES, tools=OPENAI_TOOLS)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "search" and json.loads(call.function.arguments) == {"query": "lorem"}

    chunks = list(oai.chat.completions.create(model="m", messages=MESSAGES, tools=OPENAI_TOOLS, stream=True))
    calls = [tc for chunk in chunks for tc in chunk.choices[0].delta.tool_calls or []]
    assert calls[0].id is not None and calls[0].function is not None and calls[0].function.name == "search"
    assert calls[0].function.arguments == ""
    arguments = "".join(tc.function.arguments or "" for tc in calls if tc.function)
    assert json.loads(arguments) == {"query": "lorem"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_openai_tools_answer_text_when_not_asked(oai: openai.OpenAI) -> None:
    none = oai.chat.completions.create(model="m", messages=MESSAGES, tools=OPENAI_TOOLS, tool_choice="none")
    assert none.choices[0].message.content == ANSWER
    follow_up = [
        *MESSAGES,
        {
            "role": "assistant",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "search", "arguments": TOOL_ARGS}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    answer = oai.chat.completions.create(model="m", messages=follow_up, tools=OPENAI_TOOLS)
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.prompt_tokens == prompt_tokens(follow_up)


def test_openai_invalid_requests(http: httpx.Client, oai: openai.OpenAI) -> None:
    missing = http.post("/v1/chat/completions", json={"model": "m"})
    assert missing.status_code == 400
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert http.post("/v1/chat/completions", json={"model": "m", "messages": "hi"}).status_code == 400
    assert http.post("/v1/chat/completions", content=b"{nope").status_code == 400
    assert chat(http, x_sim={"fault": "explode"}).status_code == 400
    assert chat(http, x_sim={"no_such_knob": 1}).status_code == 400
    assert http.post("/v1/nowhere", json={}).status_code == 404
    assert http.get("/v1/chat/completions").status_code == 405
    assert [model.id for model in oai.models.list()][:2] == ["glm-4.5-air", "glm-4.5"]


def test_openai_knobs_in_the_x_sim_header(http: httpx.Client) -> None:
    """Relays that drop unknown body fields pass the knobs as an `x-sim` header; the body's `x_sim` wins."""
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    streamed = http.post("/v1/chat/completions", json=body, headers={"x-sim": '{"chunks": 7}'})
    assert streamed.text.count('"delta":{"content":') == 7
    both = http.post("/v1/chat/completions", json={**body, "x_sim": {"chunks": 3}}, headers={"x-sim": '{"chunks": 7}'})
    assert both.text.count('"delta":{"content":') == 3
    assert http.post("/v1/chat/completions", json=body, headers={"x-sim": "{nope"}).status_code == 400
    assert http.post("/v1/chat/completions", json=body, headers={"x-sim": '{"no_such_knob": 1}'}).status_code == 400


# --- Anthropic -------------------------------------------------------------------------------


def test_anthropic_json_reports_exact_usage(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="claude-sim", max_tokens=100, system=SYSTEM, messages=CLAUDE_MESSAGES)
    assert message.id.startswith("msg_") and message.model == "claude-sim"
    assert message.content[0].type == "text" and message.content[0].text == ANSWER
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens == prompt_tokens(CLAUDE_MESSAGES, SYSTEM) == 16
    assert message.usage.output_tokens == 12
    assert (message.usage.cache_read_input_tokens, message.usage.cache_creation_input_tokens) == (0, 0)


def test_anthropic_input_tokens_exclude_cache(claude: anthropic.Anthropic) -> None:
    cached = claude.messages.create(
        model="m",
        max_tokens=100,
        system=SYSTEM,
        messages=CLAUDE_MESSAGES,
        extra_body={"x_sim": {"cached_tokens": 5, "cache_creation_tokens": 4}},
    )
    usage = cached.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (7, 5, 4)
    capped = claude.messages.create(
        model="m",
        max_tokens=100,
        messages=CLAUDE_MESSAGES,
        extra_body={"x_sim": {"cached_tokens": 10, "cache_creation_tokens": 10}},
    )
    usage = capped.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (0, 10, 0)


def test_anthropic_max_tokens_thinking_and_tool_use(claude: anthropic.Anthropic) -> None:
    short = claude.messages.create(model="m", max_tokens=4, messages=CLAUDE_MESSAGES)
    assert short.stop_reason == "max_tokens" and short.usage.output_tokens == 4
    thinking = claude.messages.create(
        model="m", max_tokens=100, messages=CLAUDE_MESSAGES, extra_body={"x_sim": {"reasoning_tokens": 3}}
    )
    assert thinking.content[0].type == "thinking" and thinking.content[0].thinking == "lorem ipsum dolor"
    assert thinking.content[1].type == "text" and thinking.usage.output_tokens == 15
    tool = claude.messages.create(model="m", max_tokens=100, messages=CLAUDE_MESSAGES, tools=CLAUDE_TOOLS)
    block = tool.content[0]
    assert tool.stop_reason == "tool_use" and block.type == "tool_use"
    assert block.id.startswith("toolu_") and block.name == "search" and block.input == {"query": "lorem"}
    none = claude.messages.create(
        model="m", max_tokens=100, messages=CLAUDE_MESSAGES, tools=CLAUDE_TOOLS, tool_choice={"type": "none"}
    )
    assert none.stop_reason == "end_turn"
    result: list[Any] = [
        *CLAUDE_MESSAGES,
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": block.id, "name": "search", "input": block.input}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "sunny"}]},
    ]
    after = claude.messages.create(model="m", max_tokens=100, messages=result, tools=CLAUDE_TOOLS)
    assert after.stop_reason == "end_turn" and after.usage.input_tokens == prompt_tokens(result) == 19


def test_anthropic_stream_event_sequence(claude: anthropic.Anthropic, http: httpx.Client) -> None:
    with claude.messages.stream(
        model="m",
        max_tokens=100,
        system=SYSTEM,
        messages=CLAUDE_MESSAGES,
        extra_body={"x_sim": {"cached_tokens": 6, "reasoning_tokens": 2, "chunks": 4}},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == ANSWER
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.output_tokens) == (10, 6, 14)

    body = {"model": "m", "max_tokens": 100, "messages": CLAUDE_MESSAGES, "stream": True}
    events = sse_events(http.post("/v1/messages", json=body).text)
    assert events == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 12,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_anthropic_stream_tool_use(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="m", max_tokens=100, messages=CLAUDE_MESSAGES, tools=CLAUDE_TOOLS) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    block = final.content[0]
    assert block.type == "tool_use" and block.name == "search" and block.input == {"query": "lorem"}


def test_anthropic_validation_and_count_tokens(claude: anthropic.Anthropic, http: httpx.Client) -> None:
    missing = http.post("/v1/messages", json={"model": "m", "messages": CLAUDE_MESSAGES})
    assert missing.status_code == 400
    assert missing.json()["type"] == "error"
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in missing.json()["error"]["message"]
    count = claude.messages.count_tokens(model="m", system=SYSTEM, messages=CLAUDE_MESSAGES)
    assert count.input_tokens == prompt_tokens(CLAUDE_MESSAGES, SYSTEM)


# --- faults ----------------------------------------------------------------------------------


def test_fault_429_and_500_in_provider_shapes(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    with pytest.raises(openai.RateLimitError) as limited:
        oai.chat.completions.create(model="m", messages=MESSAGES, extra_body={"x_sim": {"fault": "429"}})
    assert limited.value.response.headers["retry-after"] == "1"
    assert limited.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.InternalServerError) as failed:
        oai.chat.completions.create(model="m", messages=MESSAGES, stream=True, extra_body={"x_sim": {"fault": "500"}})
    assert failed.value.type == "server_error"

    with pytest.raises(anthropic.RateLimitError) as claude_limited:
        claude.messages.create(
            model="m", max_tokens=9, messages=CLAUDE_MESSAGES, extra_body={"x_sim": {"fault": "429"}}
        )
    assert claude_limited.value.response.headers["retry-after"] == "1"
    assert claude_limited.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Rate limit reached (simulated)."},
    }
    with pytest.raises(anthropic.InternalServerError) as claude_failed:
        claude.messages.create(
            model="m", max_tokens=9, messages=CLAUDE_MESSAGES, extra_body={"x_sim": {"fault": "500"}}
        )
    assert isinstance(claude_failed.value.body, dict) and claude_failed.value.body["error"]["type"] == "api_error"


def test_fault_cut_drops_the_connection(oai: openai.OpenAI, claude: anthropic.Anthropic, http: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        chat(http, x_sim={"fault": "cut"})
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="m", messages=MESSAGES, extra_body={"x_sim": {"fault": "cut"}})

    received: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        http.stream(
            "POST", "/v1/chat/completions", json={"messages": MESSAGES, "stream": True, "x_sim": {"fault": "cut"}}
        ) as response,
    ):
        for line in response.iter_lines():
            received.append(line)
    datas = [json.loads(line[6:]) for line in received if line.startswith("data: ")]
    assert "".join(data["choices"][0]["delta"].get("content", "") for data in datas) == " ".join(reply_words(6))
    assert all(data["choices"][0]["finish_reason"] is None for data in datas)

    texts: list[str] = []
    with (
        pytest.raises(Exception, match="incomplete chunked read"),
        claude.messages.stream(
            model="m", max_tokens=100, messages=CLAUDE_MESSAGES, extra_body={"x_sim": {"fault": "cut"}}
        ) as stream,
    ):
        texts.extend(stream.text_stream)
    assert "".join(texts) == " ".join(reply_words(6))


def test_fault_stall_times_out_the_client(base_url: str, oai: openai.OpenAI) -> None:
    with httpx.Client(base_url=base_url, timeout=0.3) as client:
        with pytest.raises(httpx.ReadTimeout):
            chat(client, x_sim={"fault": "stall"})
        body = {"messages": MESSAGES, "stream": True, "x_sim": {"fault": "stall"}}
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            lines = response.iter_lines()
            first = json.loads(next(lines)[6:])
            assert first["choices"][0]["delta"]["role"] == "assistant"
            with pytest.raises(httpx.ReadTimeout):
                list(lines)
    with pytest.raises(openai.APITimeoutError):
        oai.with_options(timeout=0.3).chat.completions.create(
            model="m", messages=MESSAGES, extra_body={"x_sim": {"fault": "stall"}}
        )


def test_fault_bad_json(http: httpx.Client, oai: openai.OpenAI) -> None:
    broken = chat(http, x_sim={"fault": "bad_json"})
    assert broken.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        broken.json()
    datas = sse_data(chat(http, stream=True, x_sim={"fault": "bad_json"}).text)
    assert datas[-1] == "[DONE]"
    unparsable = []
    for data in datas[:-1]:
        try:
            json.loads(data)
        except json.JSONDecodeError:
            unparsable.append(data)
    assert len(unparsable) == 1
    with pytest.raises(json.JSONDecodeError):
        list(
            oai.chat.completions.create(
                model="m", messages=MESSAGES, stream=True, extra_body={"x_sim": {"fault": "bad_json"}}
            )
        )
    claude_broken = http.post(
        "/v1/messages", json={"max_tokens": 5, "messages": CLAUDE_MESSAGES, "x_sim": {"fault": "bad_json"}}
    )
    assert claude_broken.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        claude_broken.json()


def test_fault_error_event(oai: openai.OpenAI, claude: anthropic.Anthropic, http: httpx.Client) -> None:
    datas = sse_data(chat(http, stream=True, x_sim={"fault": "error_event"}).text)
    assert json.loads(datas[-1])["error"]["type"] == "server_error"
    assert "[DONE]" not in datas
    with pytest.raises(openai.APIError, match="had an error"):
        list(
            oai.chat.completions.create(
                model="m", messages=MESSAGES, stream=True, extra_body={"x_sim": {"fault": "error_event"}}
            )
        )
    with (
        pytest.raises(anthropic.APIStatusError) as overloaded,
        claude.messages.stream(
            model="m", max_tokens=100, messages=CLAUDE_MESSAGES, extra_body={"x_sim": {"fault": "error_event"}}
        ) as stream,
    ):
        stream.get_final_message()
    assert isinstance(overloaded.value.body, dict) and overloaded.value.body["error"]["type"] == "overloaded_error"
    assert chat(http, x_sim={"fault": "error_event"}).status_code == 500


def test_fault_queue_runs_before_configured_fault(http: httpx.Client) -> None:
    assert http.post("/_sim/faults", json={"faults": ["500", "429"]}).json() == {"queued": ["500", "429"]}
    assert chat(http, x_sim={"fault": "bad_json"}).status_code == 500
    assert chat(http).status_code == 429
    assert chat(http).status_code == 200
    assert http.post("/_sim/faults", json={"faults": ["boom"]}).status_code == 400
    http.post("/_sim/faults", json={"faults": ["500"]})
    http.post("/_sim/reset")
    assert chat(http).status_code == 200


def test_instance_fault_overridden_per_request() -> None:
    with serve_asgi(create_simulator_app(SimulatorConfig(fault="500", completion_tokens=3))) as url:
        with httpx.Client(base_url=url) as client:
            assert chat(client).status_code == 500
            answer = chat(client, x_sim={"fault": ""}).json()
            assert answer["choices"][0]["message"]["content"] == "lorem ipsum dolor"


def test_stats_record_pass_through(oai: openai.OpenAI, claude: anthropic.Anthropic, http: httpx.Client) -> None:
    oai.chat.completions.create(
        model="glm-4.6",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"custom_field": [1, 2]},
    ).close()
    stats = http.get("/_sim/stats").json()
    assert stats["requests"] == 1
    assert stats["last_request"]["model"] == "glm-4.6" and stats["last_request"]["custom_field"] == [1, 2]
    assert stats["last_request"]["stream_options"] == {"include_usage": True}
    assert stats["last_headers"]["authorization"] == "Bearer sk-sim"

    claude.messages.create(
        model="m", max_tokens=5, messages=CLAUDE_MESSAGES, extra_headers={"anthropic-beta": "sim-beta-1"}
    )
    stats = http.get("/_sim/stats").json()
    assert stats["requests"] == 2
    # anthropic 2.x sends `api_key` as a Bearer token, not as `x-api-key`
    assert stats["last_headers"]["authorization"] == "Bearer sk-ant-sim"
    assert stats["last_headers"]["anthropic-version"] and stats["last_headers"]["anthropic-beta"] == "sim-beta-1"
    raw_headers = {"x-api-key": "sk-ant-raw", "anthropic-version": "2023-06-01"}
    http.post("/v1/messages", json={"max_tokens": 5, "messages": CLAUDE_MESSAGES}, headers=raw_headers)
    stats = http.get("/_sim/stats").json()
    assert stats["requests"] == 3
    assert (
        stats["last_headers"]["x-api-key"] == "sk-ant-raw"
        and stats["last_headers"]["anthropic-version"] == "2023-06-01"
    )
    http.post("/_sim/reset")
    assert http.get("/_sim/stats").json() == {"requests": 0, "last_request": None, "last_headers": {},
                                              "last_target": "", "by_path": {}}


def test_latency_and_chunk_delay(http: httpx.Client) -> None:
    started = time.perf_counter()
    chat(http, x_sim={"latency_ms": 150})
    assert time.perf_counter() - started >= 0.15
    started = time.perf_counter()
    chat(http, stream=True, x_sim={"chunk_delay_ms": 40, "chunks": 3})
    assert time.perf_counter() - started >= 0.12
