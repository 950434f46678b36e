"""Cached output URLs of the media store, served by real gateways on loopback: signatures, ranges,
content types, 410 after expiry, no API key; two instances sharing an S3-compatible store (moto)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from runapi.media import LocalBackend, MediaStore, StoredMedia
from runapi.media.runtime import open_backend
from runapi.simulator.media_routes import SAMPLE_MP4
from runapi.simulator.png import render_png
from runapi.outbound.output_urls import OutputSigner
from tests.support.gateway import RunningGateway, run_gateway, sqlite_url
from tests.support.s3_server import ACCESS_KEY, SECRET_KEY, create_bucket, moto_s3

SECRET = "media-test-output-secret"
PNG = render_png("a lighthouse", 300, 200)


@pytest.fixture(scope="module")
def local_gateway(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    directory = tmp_path_factory.mktemp("media-gw")
    with run_gateway(sqlite_url(directory), sim_url, env={"RUNAPI_OUTPUT_SECRET": SECRET},
                     media={"retention": 3600}) as running:
        yield running


def put(gateway: RunningGateway, data: bytes, content_type: str) -> StoredMedia:
    """Store `data` as the gateway's own runtime would: the backend its settings name, its retention."""
    store = MediaStore(open_backend(gateway.settings), gateway.settings.media.retention, 10_000_000)
    return asyncio.run(store.put(data, content_type))


def signed(gateway: RunningGateway, key: str, expires: int) -> str:
    return OutputSigner(SECRET).media_url(gateway.base_url, key, expires)


def test_default_store_is_a_directory_beside_the_sqlite_database(local_gateway: RunningGateway) -> None:
    database = local_gateway.settings.database_url.removeprefix("sqlite+aiosqlite:///")
    stored = put(local_gateway, PNG, "image/png")
    assert (Path(database + "-media") / stored.key).read_bytes() == PNG


def test_signed_url_serves_the_file_without_an_api_key(local_gateway: RunningGateway) -> None:
    stored = put(local_gateway, PNG, "image/png")
    assert stored.expires == pytest.approx(time.time() + 3600, abs=5)
    answer = httpx.get(signed(local_gateway, stored.key, stored.expires))
    assert answer.status_code == 200 and answer.content == PNG
    assert answer.headers["content-type"] == "image/png" and answer.headers["accept-ranges"] == "bytes"
    assert answer.headers["content-length"] == str(len(PNG))
    assert "max-age=" in answer.headers["cache-control"]


def test_ranges_head_and_416(local_gateway: RunningGateway) -> None:
    stored = put(local_gateway, SAMPLE_MP4, "video/mp4")
    url = signed(local_gateway, stored.key, stored.expires)
    part = httpx.get(url, headers={"range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == SAMPLE_MP4[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(SAMPLE_MP4)}"
    assert part.headers["content-type"] == "video/mp4"
    tail = httpx.get(url, headers={"range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == SAMPLE_MP4[-16:]
    head = httpx.head(url)
    assert head.status_code == 200 and head.content == b"" and head.headers["content-length"] == str(len(SAMPLE_MP4))
    outside = httpx.get(url, headers={"range": f"bytes={len(SAMPLE_MP4)}-"})
    assert outside.status_code == 416 and outside.headers["content-range"] == f"bytes */{len(SAMPLE_MP4)}"
    assert outside.json()["error"]["code"] == "range_not_satisfiable"


def test_unsigned_or_tampered_urls_are_403(local_gateway: RunningGateway) -> None:
    stored = put(local_gateway, PNG, "image/png")
    url = signed(local_gateway, stored.key, stored.expires)
    base = f"{local_gateway.base_url}/v1/media/{stored.key}"
    other = put(local_gateway, b"another", "image/png")
    for attempt in (base, url.replace(f"expires={stored.expires}", f"expires={stored.expires + 1}"),
                    url.replace(stored.key, other.key), url[:-2] + ("AA" if not url.endswith("AA") else "BB")):
        answer = httpx.get(attempt)
        assert answer.status_code == 403, attempt
        assert answer.json()["error"]["code"] == "invalid_signature"
    # A task's output signature is no media signature: each kind signs its own subject.
    task_signature = OutputSigner(SECRET).signature(stored.key, stored.expires)
    forged = httpx.get(base, params={"expires": stored.expires, "signature": task_signature})
    assert forged.status_code == 403


def test_expired_url_is_410_with_a_clear_message(local_gateway: RunningGateway) -> None:
    stored = put(local_gateway, PNG, "image/png")
    answer = httpx.get(signed(local_gateway, stored.key, int(time.time()) - 1))
    assert answer.status_code == 410
    error = answer.json()["error"]
    assert error["code"] == "output_expired"
    assert "expired at" in error["message"] and "kept for 3600 seconds" in error["message"]


def test_deleted_media_is_410(local_gateway: RunningGateway) -> None:
    stored = put(local_gateway, PNG, "image/png")
    database = local_gateway.settings.database_url.removeprefix("sqlite+aiosqlite:///")
    asyncio.run(LocalBackend(Path(database + "-media")).delete(stored.key))
    answer = httpx.get(signed(local_gateway, stored.key, stored.expires))
    assert answer.status_code == 410 and answer.json()["error"]["code"] == "media_expired"


def test_two_instances_sharing_an_s3_store_serve_each_others_outputs(sim_url: str, tmp_path: Path) -> None:
    with moto_s3() as endpoint:
        create_bucket(endpoint, "shared-media")
        env = {"RUNAPI_OUTPUT_SECRET": SECRET, "RUNAPI_MEDIA_URL": f"s3://shared-media/runapi?endpoint={endpoint}",
               "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        with run_gateway(sqlite_url(tmp_path, "a.db"), sim_url, env=env) as first, \
                run_gateway(sqlite_url(tmp_path, "b.db"), sim_url, env=env) as second:
            assert first.settings.media_credentials == (ACCESS_KEY, SECRET_KEY)
            assert "AWS" not in repr(first.settings) and SECRET_KEY not in repr(first.settings)
            from_first, from_second = put(first, PNG, "image/png"), put(second, SAMPLE_MP4, "video/mp4")
            for gateway in (first, second):
                image = httpx.get(signed(gateway, from_first.key, from_first.expires))
                video = httpx.get(signed(gateway, from_second.key, from_second.expires),
                                  headers={"range": "bytes=0-7"})
                assert image.status_code == 200 and image.content == PNG
                assert video.status_code == 206 and video.content == SAMPLE_MP4[:8]
            assert not list(tmp_path.glob("*-media"))  # nothing went to a local directory


def test_media_settings_are_validated() -> None:
    from runapi.config import ConfigError, ConfigFile, load_settings

    with pytest.raises(ConfigError, match="unknown options"):
        load_settings({"RUNAPI_MEDIA_URL": "s3://bucket?colour=blue"}, ConfigFile())
    with pytest.raises(msgspec.ValidationError, match="must be positive"):
        msgspec.convert({"media": {"retention": 0}}, ConfigFile)


def test_regression_far_future_expires_is_403_not_500(local_gateway: RunningGateway) -> None:
    """Schemathesis found it: an `expires` past year 9999 made the (unused) expiry message fail."""
    answer = httpx.get(f"{local_gateway.base_url}/v1/media/0", params={"expires": 999999999999, "signature": "0" * 256})
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "invalid_signature"
