"""The benchmark harness (bench/) still works: its servers start, its clients measure, its rows are sane.

Runs the real building blocks on loopback for a few seconds: the simulator and `runapi serve`
as child processes, nginx and the Python floor proxies in front of the simulator, 50 requests through the harness's
own aiohttp client (JSON and SSE), one short wrk run, and the /proc readings.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from bench import litellm_peer, portkey_peer
from bench.cells import Row, add_baselines, measure_cell
from bench.loads import LoadResult, run_async_client, run_wrk
from bench.procs import tree_cpu_seconds, tree_peak_rss_mib
from bench.report import markdown_table, target_checks
from bench.scenarios import SCENARIOS
from bench.servers import (
    Target,
    start_floor,
    start_gateway,
    start_nginx,
    start_upstream,
)
from bench.soak import SoakResult

pytestmark = pytest.mark.skipif(
    shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists() or shutil.which("wrk") is None,
    reason="the benchmark needs Debian's nginx and wrk (apt-get install -y nginx wrk)",
)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Target, Target, Target]]:
    workdir = tmp_path_factory.mktemp("bench")
    upstream = start_upstream(workdir)
    started: list[Target] = []
    try:
        started.append(start_nginx(workdir, upstream))
        started.append(start_gateway(workdir, upstream))
        yield upstream, started[0], started[1]
    finally:
        for target in started:
            target.stop()
        upstream.stop()


def test_async_client_through_the_gateway_counts_requests_and_ttft(servers: tuple[Target, Target, Target]) -> None:
    _, _, gateway = servers
    cpu_before = tree_cpu_seconds(gateway.pid or 0)
    json_result = run_async_client(gateway.url, SCENARIOS["json"].body, gateway.api_key, 4, stream=False, requests=25)
    sse_result = run_async_client(gateway.url, SCENARIOS["stream20"].body, gateway.api_key, 4, stream=True,
                                  requests=25)
    assert (json_result.requests, json_result.errors) == (25, 0)
    assert (sse_result.requests, sse_result.errors) == (25, 0)
    assert 0 < json_result.p50_ms <= json_result.p90_ms <= json_result.p99_ms < 5000
    assert sse_result.ttft_p50_ms is not None and 0 < sse_result.ttft_p50_ms <= sse_result.p50_ms
    assert json_result.overhead_hdr_p50_ms is not None  # the gateway's x-runapi-overhead-ms header
    assert tree_cpu_seconds(gateway.pid or 0) > cpu_before
    assert 20 < tree_peak_rss_mib(gateway.pid or 0) < 1024


def test_cells_run_only_where_the_endpoint_exists(servers: tuple[Target, Target, Target]) -> None:
    """The simulator (and nginx in front of it) has no /v1/responses: those cells are skipped, not errors."""
    upstream, nginx, gateway = servers
    assert [t.serves(SCENARIOS["responses20"]) for t in servers] == [False, False, True]
    assert all(t.serves(SCENARIOS["json"]) and t.serves(SCENARIOS["messages20"]) for t in (upstream, nginx, gateway))


def test_cells_side_by_side_give_sane_rows(servers: tuple[Target, Target, Target], tmp_path: Path) -> None:
    upstream, nginx, gateway = servers
    rows: list[Row] = []
    for target in (upstream, nginx, gateway):
        rows.append(measure_cell(target, upstream, SCENARIOS["json"], 1, duration_s=1, warmup_s=0,
                                 workdir=tmp_path))
    add_baselines(rows)
    direct, proxied, gw = rows
    for row in rows:
        assert row.load.client == "wrk" and row.load.errors == 0 and row.load.requests > 20
        assert row.load.rps > 0 and 0 < row.load.p50_ms <= row.load.p99_ms
        assert row.upstream_cpu_ms > 0
    assert direct.gateway_cpu_ms is None and direct.added_p50_ms is None
    assert proxied.gateway_cpu_ms is not None and proxied.peak_rss_mib and proxied.added_p50_ms is not None
    assert gw.gateway_cpu_ms is not None and gw.gateway_cpu_ms > 0 and gw.peak_rss_mib and gw.peak_rss_mib > 20
    assert gw.process_rss_mib is not None and 20 < gw.process_rss_mib <= gw.peak_rss_mib  # one process here
    assert "runapi-sqlite" in markdown_table(rows)
    assert any(value != "not measured in this run" for _, value, _ in target_checks(rows))


@pytest.mark.parametrize("mode", ["raw", "asgi"])
def test_the_python_floor_proxies_relay_json_and_streams(servers: tuple[Target, Target, Target], tmp_path: Path,
                                                         mode: str) -> None:
    """`bench/floor.py`: a bare proxy with RunAPI's upstream client, answering both kinds of request."""
    upstream = servers[0]
    floor = start_floor(tmp_path, upstream, mode)
    try:
        json_result = run_async_client(floor.url, SCENARIOS["json"].body, "", 4, stream=False, requests=25)
        sse_result = run_async_client(floor.url, SCENARIOS["stream20"].body, "", 4, stream=True, requests=25)
        assert (json_result.requests, json_result.errors) == (25, 0)
        assert (sse_result.requests, sse_result.errors) == (25, 0)  # each with its [DONE] and a content token
        assert sse_result.ttft_p50_ms is not None and 0 < sse_result.ttft_p50_ms <= sse_result.p50_ms
        assert json_result.overhead_hdr_p50_ms is None  # no gateway header: nothing but the relay
    finally:
        floor.stop()


def _json16(target: str, rps: float, process_rss_mib: float = 100.0) -> Row:
    load = LoadResult(requests=int(rps * 4), errors=0, duration_s=4.0, p50_ms=1.0, p90_ms=1.0, p99_ms=1.0,
                      client="wrk")
    return Row(target, "json", 16, load, gateway_cpu_ms=0.3, upstream_cpu_ms=0.03, peak_rss_mib=200.0,
               process_rss_mib=process_rss_mib)


def test_the_rss_per_worker_verdict_takes_the_largest_process_of_this_commits_rows() -> None:
    """Issue 8 bounds RSS per worker (150 MiB): judged on the largest single process, not the tree's sum
    (two workers and their supervisor), and not on a --baseline row."""
    rows = [_json16("runapi-sqlite", 4000, 120.0), _json16("runapi-sqlite-x2", 2000, 140.0),
            _json16("runapi-sqlite-at-abc123", 4000, 400.0), _json16("nginx", 20000, 900.0)]
    (text, measured, verdict), = [check for check in target_checks(rows) if "RSS per worker" in check[0]]
    assert verdict == "met" and measured == "140.0 MiB (runapi-sqlite-x2)"
    rows.append(_json16("runapi-postgres", 1500, 151.0))
    assert [check[2] for check in target_checks(rows) if "RSS per worker" in check[0]] == ["missed"]


def test_the_workers_verdict_compares_with_one_worker_set_up_the_same_way() -> None:
    """`--workers N` is judged against the x1 row (SQLite + Redis), not the in-memory SQLite row."""
    memory = _json16("runapi-sqlite", 4000)
    grows = [memory, _json16("runapi-sqlite-x1", 1500), _json16("runapi-sqlite-x2", 2100)]
    (text, measured, verdict), = [check for check in target_checks(grows) if "--workers" in check[0]]
    assert verdict == "met" and "2,100 against 1,500" in measured and "1.40×" in measured
    flat = [memory, _json16("runapi-sqlite-x1", 2000), _json16("runapi-sqlite-x2", 2100)]
    assert [check[2] for check in target_checks(flat) if "--workers" in check[0]] == ["missed"]
    assert not [check for check in target_checks([memory]) if "--workers" in check[0]]  # not measured: no line


@pytest.mark.skipif(not litellm_peer.VENV.joinpath("bin", "litellm").exists(),
                    reason="LiteLLM is not installed for the benchmark: `python bench/run.py --litellm` installs it")
def test_the_litellm_peer_relays_the_same_scenarios(servers: tuple[Target, Target, Target], tmp_path: Path) -> None:
    """`--litellm`: LiteLLM's proxy in front of the simulator, with its master key, passing `x_sim` through
    (the stream has the scenario's 20 content chunks, not the simulator's default)."""
    upstream = servers[0]
    peer = litellm_peer.start_litellm(tmp_path, upstream, Console(quiet=True))
    try:
        request = urllib.request.Request(peer.url, data=SCENARIOS["stream20"].body, headers={
            "authorization": f"Bearer {peer.api_key}", "content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            events = [line for line in response.read().split(b"\n") if line.startswith(b"data: ")]
        assert events[-1] == b"data: [DONE]"
        assert sum(b'"delta":{"content":"' in event for event in events) == 20
        refused = urllib.request.Request(peer.url, data=SCENARIOS["json"].body, headers={
            "authorization": "Bearer sk-wrong", "content-type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(refused, timeout=30)
        error.value.close()
        assert error.value.code in (400, 401)
        result = run_async_client(peer.url, SCENARIOS["json"].body, peer.api_key, 2, stream=False, requests=10)
        assert (result.requests, result.errors) == (10, 0)
    finally:
        peer.stop()


@pytest.mark.skipif(shutil.which("npm") is None or shutil.which("node") is None,
                    reason="Portkey's gateway needs Node.js and npm")
def test_the_portkey_peer_relays_chat_and_messages(servers: tuple[Target, Target, Target], tmp_path: Path) -> None:
    """`--portkey`: Portkey's gateway (installed from npm on first use) in front of the simulator. Its routing
    headers reach it from both load clients: wrk's Lua script (JSON) and the aiohttp client (SSE, whose 20
    content chunks show that `x_sim` passed through and that the streaming path works on this Node)."""
    upstream = servers[0]
    peer = portkey_peer.start_portkey(tmp_path, upstream, Console(quiet=True))
    try:
        chat = run_wrk(peer.url, SCENARIOS["json"].body, peer.api_key, 2, 1.0, tmp_path,
                       peer.headers_for(SCENARIOS["json"]))
        assert chat.requests > 0 and chat.errors == 0
        unrouted = run_wrk(peer.url, SCENARIOS["json"].body, peer.api_key, 1, 1.0, tmp_path)
        assert unrouted.errors == unrouted.requests > 0  # without its headers Portkey refuses (400): they were sent
        request = urllib.request.Request(peer.url, data=SCENARIOS["stream20"].body, headers={
            "authorization": f"Bearer {peer.api_key}", "content-type": "application/json",
            **peer.headers_for(SCENARIOS["stream20"])})
        with urllib.request.urlopen(request, timeout=30) as response:
            events = [line for line in response.read().split(b"\n") if line.startswith(b"data: ")]
        assert events[-1] == b"data: [DONE]"
        assert sum(b'"delta":{"content":"' in event for event in events) == 20
        messages = SCENARIOS["messages20"]
        result = run_async_client(peer.base_url + messages.path, messages.body, peer.api_key, 2, stream=True,
                                  requests=6, protocol=messages.protocol, headers=peer.headers_for(messages))
        assert (result.requests, result.errors) == (6, 0)
    finally:
        peer.stop()


def test_the_soak_tells_flat_from_levelled_off_from_growing() -> None:
    def run(values: list[float]) -> str:
        return SoakResult(60, "json", 16, 1, samples=[(3.0 * i, v) for i, v in enumerate(values)]).verdict

    assert run([100.0] * 20) == "flat"
    assert run([100.0 + 2 * i for i in range(10)] + [120.0] * 10) == "levelled off"  # grew, then stopped
    assert run([100.0 + i for i in range(20)]) == "GROWING"
