"""Real Claude Code (`claude -p`, pinned in tests/clients/package.json) against a gateway on the simulator.

Claude Code runs in a temporary HOME and working directory, with only the Read and Glob tools,
telemetry, updates and non-essential traffic off, and every connection that is not to loopback
sent to a closed loopback port (HTTPS_PROXY, with NO_PROXY for 127.0.0.1). The simulator's
script (`POST /_sim/script`) decides what the "model" says, so a real agent loop runs to its end.
Skipped only where node is absent; `.ci/run` installs the client with `npm ci`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.charges import charged_generations
from tests.support.gateway import RunningGateway
from tests.support.servers import free_port

CLIENTS = Path(__file__).parent / "clients"
WRAPPER = CLIENTS / "node_modules" / "@anthropic-ai" / "claude-code" / "cli-wrapper.cjs"
MODELS = ["glm-4.6", "claude-sonnet-5-5"]  # the translated path (OpenAI-protocol upstream) and the native one


def claude(gateway: RunningGateway, key: str, workdir: Path, prompt: str, model: str) -> subprocess.CompletedProcess[str]:
    """`claude -p` in `workdir` with a fresh HOME; returns the finished process."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: Claude Code cannot run here")
    if not WRAPPER.exists():
        pytest.fail(f"Claude Code is not installed: run `npm ci` in {CLIENTS}")
    home = workdir.parent / "home"
    home.mkdir(exist_ok=True)
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: any call beyond loopback fails here
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TMPDIR": str(workdir.parent),
        "ANTHROPIC_BASE_URL": gateway.base_url, "ANTHROPIC_AUTH_TOKEN": key,
        "DISABLE_TELEMETRY": "1", "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_BUG_COMMAND": "1",
        "HTTPS_PROXY": closed, "HTTP_PROXY": closed, "NO_PROXY": "127.0.0.1,localhost",
    }
    command = [node, str(WRAPPER), "-p", prompt, "--model", model, "--tools", "Read,Glob", "--allowedTools", "Read,Glob",
               "--strict-mcp-config", "--no-session-persistence"]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    (path / "notes.txt").write_text("The release is blocked on the flaky integration test.\n")
    return path


def _requests(sim: httpx.Client) -> dict[str, Any]:
    return dict(sim.get("/_sim/stats").json())


@pytest.mark.parametrize("model", MODELS)
def test_claude_code_answers_and_every_call_is_charged(gateway: RunningGateway, sim: httpx.Client, workdir: Path,
                                                       model: str) -> None:
    account, key = gateway.create_account("5")
    sim.post("/_sim/script", json={"script": [{"text": "Hello from the simulated model."}]}).raise_for_status()
    done = claude(gateway, key, workdir, "Say hello.", model)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hello from the simulated model."
    stats = _requests(sim)
    sent = stats["last_request"]
    if model == "glm-4.6":  # Claude Code's mid-conversation system message, folded into the system prompt
        assert stats["last_target"] == "/v1/chat/completions"
        assert [m["role"] for m in sent["messages"]] == ["system", "user"]
        assert "Primary working directory" in sent["messages"][0]["content"]
    else:  # relayed as sent, on Anthropic's beta surface, with Claude Code's beta headers
        assert stats["last_target"] == "/v1/messages?beta=true"
        assert "system" in [m["role"] for m in sent["messages"]]
        assert "claude-code-20250219" in stats["last_headers"]["anthropic-beta"]
    rows = charged_generations(gateway, account, key, Decimal(5))
    assert len(rows) == stats["requests"] >= 1 and {row["model"] for row in rows} == {model}


@pytest.mark.parametrize("model", MODELS)
def test_claude_code_runs_a_tool_then_answers(gateway: RunningGateway, sim: httpx.Client, workdir: Path,
                                             model: str) -> None:
    account, key = gateway.create_account("5")
    notes = str(workdir / "notes.txt")
    script = [{"text": "Let me read the notes.", "tool_call": {"name": "Read", "arguments": {"file_path": notes}}},
              {"text": "The notes say the release is blocked on a flaky test."}]
    sim.post("/_sim/script", json={"script": script}).raise_for_status()
    done = claude(gateway, key, workdir, "What do the notes in this directory say?", model)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("The notes say the release is blocked on a flaky test.")
    stats = _requests(sim)
    assert stats["requests"] == 2  # the tool call, then the answer
    conversation = json.dumps(stats["last_request"]["messages"])
    assert "flaky integration test" in conversation  # Claude Code ran Read and sent the file back
    rows = charged_generations(gateway, account, key, Decimal(5))
    assert len(rows) == 2 and all(row["usage"]["output_tokens"] > 0 for row in rows)
