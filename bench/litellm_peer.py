"""LiteLLM's proxy as an optional peer row (`bench/run.py --litellm`).

The proxy is installed once into a virtual environment of its own, outside the project
(`~/.cache/runapi-bench/litellm-<version>`), so none of its ~150 dependencies reach RunAPI's. It runs
one worker in front of the same simulator, with one model (`openai/glm-4.5-air`, the simulator as its
`api_base`), a master key for auth and no database: LiteLLM's lightest set-up, with no spend tracking
or per-key limits, which RunAPI's rows do carry. The body's `x_sim` object reaches the simulator
unchanged (LiteLLM forwards unknown fields to OpenAI-compatible providers).

The version is pinned: 1.106.12 is the last release whose `proxy` extra installs from PyPI alone
(later ones need a separate `litellm-proxy` package), and it predates the withdrawn 1.107.0.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from bench.procs import Child, free_port, wait_for_port
from bench.scenarios import MODEL
from bench.servers import PEER_PATHS, Target

VERSION = "1.106.12"
VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "runapi-bench" / f"litellm-{VERSION}"
CONFIG = """\
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: {upstream}/v1
      api_key: sk-bench
general_settings:
  master_key: {master_key}
"""


def litellm_binary(console: Console) -> Path:
    """The `litellm` command of the peer's own virtual environment, installed on first use."""
    binary = VENV / "bin" / "litellm"
    if binary.exists():
        return binary
    with console.status(f"installing LiteLLM {VERSION} into {VENV} (once; about a minute) …"):
        VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, capture_output=True)
        install = subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={VERSION}"],
                                 capture_output=True, text=True)
    if install.returncode != 0 or not binary.exists():
        raise RuntimeError(f"could not install LiteLLM {VERSION} into {VENV}:\n{install.stderr[-2000:]}\n"
                           f"Check PyPI access, or delete {VENV} and run again.")
    return binary


def start_litellm(workdir: Path, upstream: Target, console: Console) -> Target:
    """LiteLLM's proxy (one worker, master key, no database) in front of `upstream`."""
    binary = litellm_binary(console)
    directory = workdir / "litellm"
    directory.mkdir(exist_ok=True)
    master_key = "sk-litellm-" + secrets.token_hex(8)
    config = directory / "config.yaml"
    config.write_text(CONFIG.format(model=MODEL, upstream=upstream.base_url, master_key=master_key))
    port = free_port()
    # The packaged price list, not a download; errors only in the log (no per-request lines).
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    env.pop("DATABASE_URL", None)
    child = Child("litellm", [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                              "--num_workers", "1"], workdir / "litellm.log", env=env, cwd=directory)
    try:
        wait_for_port(port, timeout=120, proc=child.proc)
    except RuntimeError:
        child.stop()
        raise RuntimeError(f"LiteLLM did not start:\n{child.log_tail()}") from None
    return Target("litellm", f"http://127.0.0.1:{port}", api_key=master_key, child=child, paths=PEER_PATHS)
