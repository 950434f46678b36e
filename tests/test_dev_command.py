"""`runapi dev` as a new user meets it: one port, one dev key kept across runs, a banner with every client's
lines, and a readable request log that never shows a key."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
from pathlib import Path

import httpx

from runapi.storage import AccountStore, ApiKey, create_engine
from tests.support.processes import RUNAPI, ChildProcess, clean_env
from tests.support.servers import free_port

READY = "Requests are logged below"
STOPPED_BY_CTRL_C = (0, 130, -signal.SIGINT)  # uvicorn ends by re-raising the signal it caught


def _keys(database: Path) -> list[ApiKey]:
    async def read() -> list[ApiKey]:
        engine = create_engine(f"sqlite+aiosqlite:///{database}")
        try:
            return await AccountStore(engine).list_keys()
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _start_dev(directory: Path, port: int, *extra: str) -> ChildProcess:
    dev = ChildProcess([*RUNAPI, "dev", "--port", str(port), *extra], cwd=directory,
                       env=clean_env(COLUMNS="200"))
    dev.wait_for("stdout", lambda lines: any(READY in line for line in lines))
    return dev


def _banner_key(dev: ChildProcess) -> str:
    keys = {match for line in dev.lines["stdout"] for match in re.findall(r"rk-[A-Za-z0-9_\-]{20,}", line)}
    assert len(keys) == 1, keys  # one key, everywhere in the banner
    key: str = keys.pop()
    return key


def _chat(root: str, key: str) -> httpx.Response:
    return httpx.post(f"{root}/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=30,
                      json={"model": "glm-4.5-air", "messages": [{"role": "user", "content": "Hello"}]})


def test_a_second_dev_on_the_same_port_exits_and_a_restart_keeps_the_key(tmp_path: Path) -> None:
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    database = tmp_path / "runapi-dev.db"
    first = _start_dev(tmp_path, port)
    try:
        key = _banner_key(first)
        key_file = tmp_path / "runapi-dev.key"
        assert key_file.read_text().strip() == key
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600  # owner-only
        keys_before = _keys(database)
        assert [k.name for k in keys_before if k.revoked_at is None] == ["runapi dev"]
        assert key not in database.read_bytes().decode("latin-1")  # stored hashed

        second = ChildProcess([*RUNAPI, "dev", "--port", str(port)], cwd=tmp_path, env=clean_env(COLUMNS="200"))
        code = second.process.wait(60)
        second.stop()
        assert code != 0
        message = " ".join(" ".join(second.lines["stderr"]).split())
        assert f"Port {port} on 127.0.0.1 is already in use" in message and "--port" in message
        assert not any("rk-" in line for line in second.lines["stdout"] + second.lines["stderr"])
        assert _keys(database) == keys_before  # no key minted, nothing changed

        assert _chat(root, key).status_code == 200  # the first one still serves
    finally:
        assert first.stop() in STOPPED_BY_CTRL_C

    again = _start_dev(tmp_path, port)
    try:
        assert _banner_key(again) == key
        assert "the same key as last run" in "\n".join(again.lines["stdout"])
        assert _keys(database) == keys_before
        assert _chat(root, key).status_code == 200
    finally:
        again.stop()

    rotated = _start_dev(tmp_path, port, "--new-key")
    try:
        new_key = _banner_key(rotated)
        assert new_key != key and (tmp_path / "runapi-dev.key").read_text().strip() == new_key
        assert _chat(root, key).status_code == 401  # the old key is revoked
        assert _chat(root, new_key).status_code == 200
        assert [k.name for k in _keys(database) if k.revoked_at is None] == ["runapi dev"]
    finally:
        rotated.stop()


def test_banner_has_both_base_urls_every_client_and_the_pages(tmp_path: Path) -> None:
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    dev = _start_dev(tmp_path, port)
    try:
        key = _banner_key(dev)
        banner = "\n".join(dev.lines["stdout"])
        assert f"OpenAI base URL     {root}/v1" in banner
        assert f"Anthropic base URL  {root} " in banner
        assert f"curl {root}/v1/chat/completions -H \"Authorization: Bearer {key}\"" in banner
        assert f"OpenAI(base_url=\"{root}/v1\", api_key=\"{key}\")" in banner
        assert f"Anthropic(base_url=\"{root}\", api_key=\"{key}\")" in banner
        assert f"ANTHROPIC_BASE_URL={root} ANTHROPIC_AUTH_TOKEN={key} claude --model glm-4.6" in banner
        assert "[model_providers.runapi]" in banner and f'base_url = "{root}/v1"' in banner
        assert 'wire_api = "responses"' in banner and 'env_key = "RUNAPI_API_KEY"' in banner
        for page in ("/models", "/pricing", "/docs", "/dashboard"):
            assert f"{root}{page}" in banner
            assert httpx.get(f"{root}{page}", follow_redirects=True).status_code == 200

        # The pasted anthropic SDK line works against the root (not /v1).
        from anthropic import Anthropic

        with Anthropic(base_url=root, api_key=key) as client:
            reply = client.messages.create(model="glm-4.5-air", max_tokens=64,
                                           messages=[{"role": "user", "content": "Hello"}])
        assert reply.content and reply.usage.output_tokens > 0

        # One readable access line per request, with the facts and never the key.
        generation = _chat(root, key).json()["id"]
        lines = dev.wait_for("stderr", lambda ls: any(generation in line for line in ls))
        line = next(line for line in lines if generation in line)
        assert re.search(rf"INFO +POST /v1/chat/completions 200 · glm-4\.5-air {generation} · [\d.]+ ms "
                         r"\(overhead [\d.]+ ms\) · \$0\.\d+$", line), line
        assert httpx.get(f"{root}/v1/models/{key}").status_code == 404
        lines = dev.wait_for("stderr", lambda ls: any("/v1/models/rk-[redacted]" in line for line in ls))
        assert not any(key in line for line in lines)
    finally:
        dev.stop()
