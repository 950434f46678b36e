"""The openai-agents SDK's default model (OpenAI Responses) against the gateway on the simulator: an agent with one
function tool runs its loop to a final answer, and every model call is charged exactly.

The simulator's script makes the "model" call the tool, then answer. Tracing is off (nothing leaves loopback).
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import httpx
import httpx2
import openai
import pytest
from agents import Agent, RunConfig, Runner, function_tool
from agents.models.openai_provider import OpenAIProvider

from tests.support.charges import charged_generations
from tests.support.gateway import RunningGateway

ANSWER = "It is sunny in Paris, 21 degrees."


def weather_agent(calls: list[str]) -> Agent:
    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        calls.append(city)
        return f"Sunny in {city}, 21 C"

    return Agent(name="Weather", instructions="Answer with the weather tool.", tools=[get_weather])


async def run_agent(gateway: RunningGateway, key: str, model: str, calls: list[str], seen: list[tuple[str, str]], *,
                    stream: bool) -> str:
    """Run the agent to its final output; `seen` gets (path, generation id) of each HTTP call the SDK made."""
    async def note(response: httpx2.Response) -> None:
        seen.append((response.request.url.path, response.headers.get("x-runapi-generation-id", "")))

    http = httpx2.AsyncClient(event_hooks={"response": [note]})  # the openai SDK's own HTTP client
    client = openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0, http_client=http)
    config = RunConfig(model=model, model_provider=OpenAIProvider(openai_client=client, use_responses=True),
                       tracing_disabled=True)
    agent = weather_agent(calls)
    try:
        if stream:
            streamed = Runner.run_streamed(agent, "What is the weather in Paris?", run_config=config)
            async for _ in streamed.stream_events():
                pass
            return str(streamed.final_output)
        result = await Runner.run(agent, "What is the weather in Paris?", run_config=config)
        return str(result.final_output)
    finally:
        await client.close()


@pytest.mark.parametrize(("model", "stream"), [("glm-4.6", False), ("glm-4.6", True), ("claude-sonnet-5-5", True)])
def test_agent_runs_its_tool_to_a_final_answer(gateway: RunningGateway, sim: httpx.Client, model: str,
                                               stream: bool) -> None:
    account, key = gateway.create_account("5")
    script = [{"tool_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}, {"text": ANSWER}]
    sim.post("/_sim/script", json={"script": script}).raise_for_status()
    calls: list[str] = []
    seen: list[tuple[str, str]] = []
    final = asyncio.run(run_agent(gateway, key, model, calls, seen, stream=stream))
    assert final == ANSWER
    assert calls == ["Paris"]  # the SDK ran the tool the model asked for
    assert [path for path, _ in seen] == ["/v1/responses", "/v1/responses"]
    stats = sim.get("/_sim/stats").json()
    assert stats["requests"] == 2 and "Sunny in Paris, 21 C" in json.dumps(stats["last_request"])
    rows = charged_generations(gateway, account, key, Decimal(5))
    assert len(rows) == 2 and all(row["model"] == model and row["usage"]["output_tokens"] > 0 for row in rows)
    assert {row["id"] for row in rows} == {generation_id for _, generation_id in seen}
