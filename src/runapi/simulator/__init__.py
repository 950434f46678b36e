"""Local upstream simulator: a development tool that speaks real provider wire formats on loopback.

It answers OpenAI chat completions and Anthropic Messages requests (JSON and SSE)
with deterministic text and usage, so tests, benchmarks and `runapi dev` can run
without provider keys. Knobs and faults are described on `SimulatorConfig`; the
token rules in `prompt_tokens` and `reply_words`; scripted agent exchanges in `script`. Real deployments point at real
providers.
"""

from .app import SimulatorApp, create_simulator_app, serve
from .config import FAULTS, SimulatorConfig
from .script import ScriptedToolCall, ScriptTurn
from .tokens import prompt_tokens, reply_words

__all__ = ["FAULTS", "ScriptTurn", "ScriptedToolCall", "SimulatorApp", "SimulatorConfig", "create_simulator_app",
           "prompt_tokens", "reply_words", "serve"]
