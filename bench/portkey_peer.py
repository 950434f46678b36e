"""Portkey's open-source AI gateway as an optional peer row (`bench/run.py --portkey`).

The npm package `@portkey-ai/gateway` (pinned below) is installed once outside the project, into
`~/.cache/runapi-bench/portkey-<version>` with `npm install --ignore-scripts` (its postinstall only runs
patch-package for its own development). It runs as one Node process, `start-server.js --headless` with
`NODE_ENV=production` (no log UI), in front of the same simulator. Portkey has no server-side model
list: every request names its provider and upstream in headers (`x-portkey-custom-host: <simulator>/v1`;
`x-portkey-provider: openai` for chat completions, `anthropic` for Messages, which Portkey relays as they
are), and the bearer key is the upstream's. Its OpenAI provider drops body fields it does not know, the
scenario's `x_sim` knobs among them, so they travel again as an `x-sim` header that Portkey is told to
forward (`x-portkey-forward-headers`) and the simulator reads. It does no auth of its own, no limits and
no spend tracking; it listens on every interface (it has no host option).

On Node 20, 1.15.x's streaming path throws `TypeError: immutable`: it appends its own headers to the
`Response` that `fetch` returned, whose headers are immutable in undici. `COPY_HEADERS` is preloaded
(`node --import`) to hand Portkey a copy of each upstream response with mutable headers; a stream's
body is passed on as is, not buffered.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
from pathlib import Path

from rich.console import Console

from bench.procs import Child, free_port, wait_for_port
from bench.scenarios import MESSAGES_PATH, Scenario
from bench.servers import PEER_PATHS, Target

VERSION = "1.15.2"
HOME = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "runapi-bench" / f"portkey-{VERSION}"
SERVER = HOME / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
COPY_HEADERS = """\
// Preloaded by bench/portkey_peer.py: fetch's responses with mutable headers (Portkey 1.15 appends to them).
const upstreamFetch = globalThis.fetch;
globalThis.fetch = async (...args) => {
  const response = await upstreamFetch(...args);
  return new Response(response.body, {
    status: response.status, statusText: response.statusText, headers: new Headers(response.headers),
  });
};
"""


def portkey_server(console: Console) -> Path:
    """Portkey's `start-server.js`, installed from npm on first use."""
    if SERVER.exists():
        return SERVER
    if shutil.which("npm") is None:
        raise RuntimeError("--portkey needs Node.js and npm (apt-get install -y nodejs npm)")
    with console.status(f"installing Portkey's gateway {VERSION} into {HOME} (once; about 20 s) …"):
        HOME.mkdir(parents=True, exist_ok=True)
        install = subprocess.run(["npm", "install", "--prefix", str(HOME), "--ignore-scripts", "--no-audit",
                                  "--no-fund", f"@portkey-ai/gateway@{VERSION}"], check=False, capture_output=True,
                                 text=True)
    if install.returncode != 0 or not SERVER.exists():
        raise RuntimeError(f"could not install @portkey-ai/gateway@{VERSION} into {HOME}:\n{install.stderr[-2000:]}\n"
                           f"Check npm registry access, or delete {HOME} and run again.")
    return SERVER


def start_portkey(workdir: Path, upstream: Target, console: Console) -> Target:
    """Portkey's gateway (one Node process, headless) in front of `upstream`."""
    server = portkey_server(console)
    directory = workdir / "portkey"
    directory.mkdir(exist_ok=True)
    preload = directory / "copy-headers.mjs"
    preload.write_text(COPY_HEADERS)
    port = free_port()
    env = {**os.environ, "NODE_ENV": "production"}
    child = Child("portkey", ["node", "--import", str(preload), str(server), f"--port={port}", "--headless"],
                  workdir / "portkey.log", env=env, cwd=directory)
    try:
        wait_for_port(port, timeout=60, proc=child.proc)
    except RuntimeError:
        child.stop()
        raise RuntimeError(f"Portkey's gateway did not start:\n{child.log_tail()}") from None
    return Target("portkey", f"http://127.0.0.1:{port}", api_key="sk-bench", child=child, paths=PEER_PATHS,
                  scenario_headers=functools.partial(routing_headers, f"{upstream.base_url}/v1"))


def routing_headers(upstream_url: str, scenario: Scenario) -> dict[str, str]:
    """Portkey's headers for one scenario: the provider by path, the simulator as its host, and the body's
    `x_sim` knobs again as an `x-sim` header that Portkey forwards (its OpenAI provider drops unknown fields)."""
    provider = "anthropic" if scenario.path == MESSAGES_PATH else "openai"
    headers = {"x-portkey-provider": provider, "x-portkey-custom-host": upstream_url}
    knobs = json.loads(scenario.body).get("x_sim")
    if knobs:
        headers |= {"x-sim": json.dumps(knobs, separators=(",", ":")), "x-portkey-forward-headers": "x-sim"}
    return headers
