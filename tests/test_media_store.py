"""The media store: one contract for the local directory and the S3-compatible store (moto's server on
loopback), pure range and location parsing, and the download helper against the simulator."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from runapi.errors import UpstreamTimeout
from runapi.media import (
    ByteRange,
    LocalBackend,
    LocalLocation,
    MediaBackend,
    MediaStore,
    MediaTooLarge,
    RangeNotSatisfiable,
    S3Backend,
    S3Location,
    parse_media_url,
    parse_range,
)
from runapi.media.download import MediaDownloader, MediaDownloadFailed, download_guard
from runapi.media.keys import content_type_of, is_media_key, key_group, new_media_key
from runapi.simulator import create_simulator_app
from runapi.simulator.png import png_size
from tests.support.raw_servers import RawServer
from tests.support.s3_server import ACCESS_KEY, SECRET_KEY, create_bucket, moto_s3
from tests.support.servers import serve_asgi

DAY = 86400.0


# --- pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", ByteRange(0, 100, 1000)),
        ("bytes=900-", ByteRange(900, 1000, 1000)),
        ("bytes=990-2000", ByteRange(990, 1000, 1000)),
        ("bytes=-10", ByteRange(990, 1000, 1000)),
        ("bytes=-5000", ByteRange(0, 1000, 1000)),
        ("bytes=0-1,5-6", None),  # several ranges: the whole file, as RFC 9110 allows
        ("items=0-1", None),
        ("bytes=5-2", None),  # invalid: ignored
        ("bytes=-", None),
    ],
)
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize(("header", "size"), [("bytes=1000-", 1000), ("bytes=-0", 1000), ("bytes=0-", 0)])
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


def test_content_range_is_inclusive() -> None:
    assert ByteRange(0, 100, 1000).content_range() == "bytes 0-99/1000"


@pytest.mark.parametrize(
    ("url", "sqlite", "expected"),
    [
        ("", "/data/runapi.db", LocalLocation(Path("/data/runapi.db-media"))),
        ("", None, LocalLocation(Path("runapi-media"))),
        ("/var/lib/runapi/media", None, LocalLocation(Path("/var/lib/runapi/media"))),
        ("file:///srv/media", None, LocalLocation(Path("/srv/media"))),
        ("s3://bucket", None, S3Location("bucket")),
        ("s3://bucket/a/b/?endpoint=http://127.0.0.1:9000/&region=eu-west-1", None,
         S3Location("bucket", "a/b", "http://127.0.0.1:9000", "eu-west-1")),
        ("s3://bucket/p?virtual_hosted=true", None, S3Location("bucket", "p", virtual_hosted=True)),
    ],
)
def test_parse_media_url(url: str, sqlite: str | None, expected: object) -> None:
    assert parse_media_url(url, sqlite) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("s3://key:secret@bucket/p", "no credentials"),
        ("s3://bucket?acl=public", "unknown options"),
        ("s3://bucket?endpoint=ftp://x", "endpoint"),
        ("gs://bucket", "expected a directory"),
        ("file://host/path", "local path"),
    ],
)
def test_bad_media_urls_say_why(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_media_url(url, None)


def test_keys_carry_their_purge_minute_and_content_type() -> None:
    key = new_media_key("image/png", 1_800_000_030)  # 2027-01-15T08:00:30Z: purged from the next minute
    assert key.startswith("20270115T0801Z/") and key.endswith(".png") and is_media_key(key)
    assert content_type_of(key) == "image/png" and key_group(key) == "20270115T0801Z"
    assert content_type_of(new_media_key("video/mp4; codecs=avc1", 0)) == "video/mp4"
    assert new_media_key("text/html", 0).endswith(".bin")  # not served as a page
    for bad in ("../etc/passwd", "20270115T0801Z/../x.png", "20270115T0801Z/short.png",
                "20270115T0801Z/aaaaaaaaaaaaaaaaaaaaaaaa.exe"):
        assert not is_media_key(bad)


# --- one contract, every backend ----------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3() as endpoint:
        create_bucket(endpoint, "media")
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> MediaBackend:
    if request.param == "local":
        return LocalBackend(tmp_path / "media")
    endpoint = request.getfixturevalue("s3_endpoint")
    location = S3Location("media", prefix=f"t/{os.urandom(4).hex()}", endpoint=endpoint)
    return S3Backend(location, ACCESS_KEY, SECRET_KEY, timeout=30)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_put_read_ranges_and_delete(backend: MediaBackend) -> None:
    store = MediaStore(backend, retention=DAY, max_bytes=10_000_000)
    data = os.urandom(600_000)  # several read chunks
    stored = await store.put(data, "image/png")
    assert stored.size == len(data) and stored.content_type == "image/png"
    assert await store.size(stored.key) == len(data)
    assert await store.get(stored.key) == data
    middle = b"".join([chunk async for chunk in store.read(stored.key, 1000, 300_123)])
    assert middle == data[1000:300_123]
    streamed = await store.put(stream(b"abc", b"", b"defg"), "video/mp4")
    assert streamed.key.endswith(".mp4") and await store.get(streamed.key) == b"abcdefg"
    await store.delete(stored.key)
    assert await store.size(stored.key) is None
    await store.delete(stored.key)  # twice: no error
    assert await store.get(streamed.key) == b"abcdefg"


async def test_too_large_or_broken_streams_store_nothing(backend: MediaBackend) -> None:
    store = MediaStore(backend, retention=DAY, max_bytes=1000)
    with pytest.raises(MediaTooLarge):
        await store.put(b"x" * 1001, "image/png")

    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 100
        raise ConnectionResetError("upstream went away")

    with pytest.raises(ConnectionResetError):
        await store.put(broken(), "image/png")
    assert await store.put(b"x" * 1000, "image/png")  # exactly the limit fits
    groups = await backend.groups()
    assert len(groups) == 1 and await backend.delete_group(groups[0]) == 1  # the one good object only


async def test_retention_hides_then_purges(backend: MediaBackend) -> None:
    clock = Clock(1_800_000_000.0)
    store = MediaStore(backend, retention=3600, max_bytes=1000, clock=clock)
    old = await store.put(b"old", "image/png")
    clock.now += 1800
    young = await store.put(b"young", "image/png")
    assert old.expires == 1_800_003_600
    clock.now = old.expires + 60  # past the old one's purge minute
    assert store.expired(old.key) and await store.size(old.key) is None  # hidden at once, before any purge
    assert await store.purge() == 1
    assert await store.get(young.key) == b"young"
    clock.now = young.expires + 60
    assert await store.purge() == 1 and await backend.groups() == []


# --- downloads of provider URLs -----------------------------------------------------------------


@pytest.fixture(scope="module")
def sim_base() -> Iterator[str]:
    with serve_asgi(create_simulator_app()) as url:
        yield url


async def image_url(sim_base: str, **x_sim: object) -> str:
    import httpx

    async with httpx.AsyncClient(base_url=sim_base) as client:
        body = {"model": "cogview-4", "prompt": "a heron", "size": "96x64", "x_sim": x_sim}
        answer = await client.post("/api/paas/v4/images/generations", json=body)
        url: str = answer.json()["data"][0]["url"]
        return url


async def test_download_copies_a_provider_url_into_the_store(tmp_path: Path, sim_base: str) -> None:
    store = MediaStore(LocalBackend(tmp_path), retention=DAY, max_bytes=1_000_000)
    downloader = MediaDownloader(store, download_guard(("127.0.0.1",)), timeout=10)
    await downloader.start()
    try:
        stored = await downloader.copy(await image_url(sim_base))
        assert stored.content_type == "image/png"
        assert png_size(await store.get(stored.key) or b"") == (96, 64)
        with pytest.raises(MediaDownloadFailed, match="HTTP 403 \\(it may have expired\\)"):
            await downloader.copy(await image_url(sim_base, media_url_ttl_s=0))
    finally:
        await downloader.close()


async def test_download_refuses_special_addresses_unless_allowed(tmp_path: Path, sim_base: str) -> None:
    store = MediaStore(LocalBackend(tmp_path), retention=DAY, max_bytes=1_000_000)
    downloader = MediaDownloader(store, download_guard(()), timeout=10)
    await downloader.start()
    try:
        for url in (await image_url(sim_base), "http://169.254.169.254/latest/meta-data/", "file:///etc/passwd"):
            with pytest.raises(MediaDownloadFailed, match="media url"):
                await downloader.copy(url)
        assert await LocalBackend(tmp_path).groups() == []
    finally:
        await downloader.close()


async def test_download_bounds_size_and_time(tmp_path: Path, sim_base: str) -> None:
    store = MediaStore(LocalBackend(tmp_path), retention=DAY, max_bytes=100)  # a 96x64 PNG is bigger
    downloader = MediaDownloader(store, download_guard(("127.0.0.1",)), timeout=0.5)
    await downloader.start()
    try:
        with pytest.raises(MediaDownloadFailed, match="too large"):
            await downloader.copy(await image_url(sim_base))

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # never answers; ends when the client gives up

        async with RawServer(silent) as server:
            with pytest.raises(UpstreamTimeout):
                await downloader.copy(server.url("/video.mp4"))
        assert await LocalBackend(tmp_path).groups() == []
    finally:
        await downloader.close()


async def test_purge_sweeps_partial_writes_a_crash_left(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path)
    stale, fresh = tmp_path / ".incoming" / "stale", tmp_path / ".incoming" / "fresh"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"being written")
    os.utime(stale, (1_800_000_000 - 2 * DAY, 1_800_000_000 - 2 * DAY))
    os.utime(fresh, (1_800_000_000 - 60, 1_800_000_000 - 60))
    store = MediaStore(backend, retention=DAY, max_bytes=1000, clock=Clock(1_800_000_000.0))
    assert await store.purge() == 1
    assert not stale.exists() and fresh.exists()
