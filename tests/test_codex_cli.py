"""Real Codex CLI (`codex exec`, pinned in tests/clients/codex/package.json) against a gateway on the simulator.

Codex runs with a temporary CODEX_HOME whose config.toml defines a custom model provider pointing at the
gateway (`wire_api = "responses"`, the rk- key in the variable `env_key` names), in a temporary working
directory, sandbox read-only, approvals never, analytics, update checks and plugin catalogs off, no retries,
and every connection that is not to loopback sent to a loopback trap (HTTPS_PROXY, NO_PROXY for 127.0.0.1)
that refuses it and notes where it was headed: each test asserts Codex tried nothing beyond the gateway
(without `[features] plugins = false`, Codex 0.169.0 reaches for github.com and chatgpt.com).
The simulator's script (`POST /_sim/script`) decides what the "model" says, so Codex's own agent loop runs a
real shell command (its `exec_command` tool) and finishes. Skipped only where the client is not installed
(`.ci/run` installs it with `npm ci` in tests/clients/codex).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from runapi.simulator import create_simulator_app
from runapi.simulator.config import SimulatorConfig
from tests.support.charges import charged_generations
from tests.support.gateway import RunningGateway, run_gateway, sqlite_url
from tests.support.servers import serve_asgi

CODEX_DIR = Path(__file__).parent / "clients" / "codex"
CODEX_JS = CODEX_DIR / "node_modules" / "@openai" / "codex" / "bin" / "codex.js"
MODELS = ["glm-4.6", "claude-sonnet-5-5"]  # Responses onto a chat-completions upstream, and onto an Anthropic one

CONFIG = """\
model = "{model}"
model_provider = "runapi"
approval_policy = "never"
sandbox_mode = "read-only"
check_for_update_on_startup = false

[model_providers.runapi]
name = "RunAPI"
base_url = "{base_url}/v1"
env_key = "RUNAPI_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[features]
plugins = false
remote_plugin = false
"""


class OutboundTrap:
    """A loopback proxy address that refuses every connection, noting each one's first line (`CONNECT host:443`)."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self._socket.getsockname()[1]
        self._seen: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _note(self, connection: socket.socket) -> None:
        with connection:
            connection.settimeout(5)
            with contextlib.suppress(OSError):
                line = connection.recv(4096).split(b"\r\n")[0].decode("latin-1")
                with self._lock:
                    self._seen.append(line)

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # closed by `attempts`
            while True:
                self._note(self._socket.accept()[0])

    def attempts(self) -> list[str]:
        """Every connection made to the trap, once the client has exited (those still queued included)."""
        self._socket.setblocking(False)
        with contextlib.suppress(OSError):
            while True:
                connection, _ = self._socket.accept()
                connection.setblocking(True)
                self._note(connection)
        self._socket.close()
        with self._lock:
            return list(self._seen)


def codex(gateway: RunningGateway, key: str, workdir: Path, prompt: str, model: str, *,
          events: bool = False) -> subprocess.CompletedProcess[str]:
    """`codex exec` in `workdir` with a fresh CODEX_HOME and HOME; returns the finished process. With `events`,
    stdout is Codex's JSONL event stream (`--json`) instead of the final answer."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: Codex CLI cannot run here")
    if not CODEX_JS.exists() or not any((CODEX_DIR / "node_modules" / "@openai").glob("codex-*")):
        pytest.skip(f"Codex CLI is not installed: run `npm ci --ignore-scripts` in {CODEX_DIR}")
    home = workdir.parent / "home"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(CONFIG.format(model=model, base_url=gateway.base_url))
    trap = OutboundTrap()  # any call beyond loopback fails here
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "CODEX_HOME": str(codex_home),
        "RUNAPI_API_KEY": key, "HTTPS_PROXY": trap.url, "HTTP_PROXY": trap.url, "ALL_PROXY": trap.url,
        "NO_PROXY": "127.0.0.1,localhost", "NO_COLOR": "1",
    }
    command = [node, str(CODEX_JS), "exec", "--skip-git-repo-check", "--color", "never", *(["--json"] if events else []),
               prompt]
    done = subprocess.run(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=180, check=False)
    assert trap.attempts() == [], "Codex tried to reach beyond loopback"
    return done


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "project"
    path.mkdir()
    (path / "notes.txt").write_text("The release is blocked on the flaky integration test.\n")
    return path


@pytest.mark.parametrize("model", MODELS)
def test_codex_answers_and_every_call_is_charged(gateway: RunningGateway, sim: httpx.Client, workdir: Path,
                                                 model: str) -> None:
    account, key = gateway.create_account("5")
    sim.post("/_sim/script", json={"script": [{"text": "Hello from the simulated model."}]}).raise_for_status()
    done = codex(gateway, key, workdir, "Say hello.", model)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hello from the simulated model."
    stats = sim.get("/_sim/stats").json()
    assert stats["requests"] == 1  # one model turn, no retries
    sent = json.dumps(stats["last_request"])
    assert "Say hello." in sent and "You are a coding agent running in the Codex CLI" in sent  # its developer prompt
    rows = charged_generations(gateway, account, key, Decimal(5))
    assert len(rows) == 1 and rows[0]["model"] == model


@pytest.mark.parametrize("model", MODELS)
def test_codex_runs_a_shell_command_then_answers(gateway: RunningGateway, sim: httpx.Client, workdir: Path,
                                                 model: str) -> None:
    account, key = gateway.create_account("5")
    script = [{"text": "Let me read the notes.",
               "tool_call": {"name": "exec_command", "arguments": {"cmd": "cat notes.txt"}}},
              {"text": "The notes say the release is blocked on a flaky test."}]
    sim.post("/_sim/script", json={"script": script}).raise_for_status()
    done = codex(gateway, key, workdir, "What do the notes in this directory say?", model, events=True)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    items = [event["item"] for event in events if event["type"] == "item.completed"]
    [command] = [item for item in items if item["type"] == "command_execution"]
    assert "cat notes.txt" in command["command"] and command["exit_code"] == 0
    assert "flaky integration test" in command["aggregated_output"]
    assert [item["text"] for item in items if item["type"] == "agent_message"] == [
        "Let me read the notes.", "The notes say the release is blocked on a flaky test."]
    stats = sim.get("/_sim/stats").json()
    assert stats["requests"] == 2  # the tool call, then the answer
    assert "flaky integration test" in json.dumps(stats["last_request"])  # the command's output went back
    rows = charged_generations(gateway, account, key, Decimal(5))
    assert len(rows) == 2 and all(row["model"] == model and row["usage"]["output_tokens"] > 0 for row in rows)
    assert_turn_tokens_charged(events, rows)


def assert_turn_tokens_charged(events: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    """The tokens Codex counted for its turn (the sum of each `response.completed`'s usage) are the ones charged."""
    [usage] = [event["usage"] for event in events if event["type"] == "turn.completed"]
    charged = {name: sum(row["usage"][name] for row in rows) for name in ("input_tokens", "output_tokens",
                                                                         "cache_read_tokens")}
    assert (usage["input_tokens"], usage["cached_input_tokens"], usage["output_tokens"]) == (
        charged["input_tokens"] + charged["cache_read_tokens"], charged["cache_read_tokens"], charged["output_tokens"])


@pytest.fixture(scope="module")
def thinking_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGateway, str]]:
    """A gateway on a simulator of its own that reasons (5 words a turn) and reads 40 prompt tokens from cache."""
    with serve_asgi(create_simulator_app(SimulatorConfig(reasoning_tokens=5, cached_tokens=40))) as sim_url:
        with run_gateway(sqlite_url(tmp_path_factory.mktemp("codex")), sim_url, circuit_failures=0) as running:
            yield running, sim_url


@pytest.mark.parametrize("model", MODELS)
def test_codex_replays_reasoning_and_cached_tokens_are_charged(thinking_gateway: tuple[RunningGateway, str],
                                                               workdir: Path, model: str) -> None:
    gateway, sim_url = thinking_gateway
    account, key = gateway.create_account("5")
    script = [{"tool_call": {"name": "exec_command", "arguments": {"cmd": "cat notes.txt"}}}, {"text": "Done."}]
    with httpx.Client(base_url=sim_url) as sim:
        sim.post("/_sim/reset").raise_for_status()
        sim.post("/_sim/script", json={"script": script}).raise_for_status()
        done = codex(gateway, key, workdir, "What do the notes say?", model, events=True)
        stats = sim.get("/_sim/stats").json()
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    items = [event["item"] for event in events if event["type"] == "item.completed"]
    assert [item["type"] for item in items if item["type"] != "error"] == [
        "reasoning", "command_execution", "reasoning", "agent_message"]  # shown as Codex shows a model's thinking
    assert items[-1]["text"] == "Done." and stats["requests"] == 2
    if model == "glm-4.6":  # GLM takes its reasoning back (`reasoning_content`); Anthropic needs signed thinking
        assert "lorem ipsum dolor sit amet" in json.dumps(stats["last_request"]["messages"])
    rows = charged_generations(gateway, account, key, Decimal(5))
    assert len(rows) == 2 and all(row["usage"]["cache_read_tokens"] == 40 for row in rows)
    assert_turn_tokens_charged(events, rows)
