"""Provider media results kept in the store (`runapi.media.results`), with the simulator as provider."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runapi.media import LocalBackend, MediaStore, StoredMedia
from runapi.media.download import MediaDownloader, MediaDownloadFailed, download_guard
from runapi.media.results import keep_images, keep_video, sniff_image_type
from runapi.simulator import create_simulator_app
from runapi.simulator.media_routes import SAMPLE_MP4
from runapi.simulator.png import png_size, render_png
from tests.support.servers import serve_asgi

ZAI = "/api/paas/v4"


@pytest.fixture(scope="module")
def sim_base() -> Iterator[str]:
    with serve_asgi(create_simulator_app()) as url:
        yield url


@pytest.fixture()
async def kit(tmp_path: Path) -> AsyncIterator[tuple[MediaStore, MediaDownloader]]:
    store = MediaStore(LocalBackend(tmp_path), retention=3600, max_bytes=1_000_000)
    downloader = MediaDownloader(store, download_guard(("127.0.0.1",)), timeout=10)
    await downloader.start()
    yield store, downloader
    await downloader.close()


def sign(stored: StoredMedia) -> str:
    return f"https://gw.example/v1/media/{stored.key}?expires={stored.expires}&signature=x"


async def generate(sim_base: str, path: str, **body: Any) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=sim_base) as client:
        answer = await client.post(path, json={"model": "m", "prompt": "a quiet harbour", "size": "64x48", **body})
        answer.raise_for_status()
        data: list[dict[str, Any]] = answer.json()["data"]
        return data


def test_sniff_image_type() -> None:
    assert sniff_image_type(render_png("x", 2, 2)) == "image/png"
    assert sniff_image_type(b"\xff\xd8\xff\xe0....") == "image/jpeg"
    assert sniff_image_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert sniff_image_type(b"<html>") == "application/octet-stream"


async def test_provider_urls_become_our_urls_or_base64(sim_base: str, kit: tuple[MediaStore, MediaDownloader]) -> None:
    store, downloader = kit
    items = await generate(sim_base, f"{ZAI}/images/generations")
    as_urls = await keep_images(items, "url", store, downloader, sign)
    assert as_urls.failed == 0 and len(as_urls.stored) == 1
    assert as_urls.data == [{"url": sign(as_urls.stored[0])}]
    assert png_size(await store.get(as_urls.stored[0].key) or b"") == (64, 48)
    as_base64 = await keep_images(items, "b64_json", store, downloader, sign)
    assert png_size(base64.b64decode(as_base64.data[0]["b64_json"])) == (64, 48)


async def test_base64_results_are_stored_as_their_type(sim_base: str, kit: tuple[MediaStore, MediaDownloader]) -> None:
    store, downloader = kit
    items = await generate(sim_base, "/v1/images/generations", n=2, response_format="b64_json")
    kept = await keep_images([{**items[0], "revised_prompt": "a harbour at dusk"}, items[1]], "url", store,
                             downloader, sign)
    assert [stored.content_type for stored in kept.stored] == ["image/png", "image/png"]
    assert kept.data[0]["revised_prompt"] == "a harbour at dusk" and "revised_prompt" not in kept.data[1]
    assert await store.get(kept.stored[1].key) == base64.b64decode(items[1]["b64_json"])


async def test_failed_images_are_counted_and_all_failed_raises(sim_base: str,
                                                              kit: tuple[MediaStore, MediaDownloader]) -> None:
    store, downloader = kit
    good = await generate(sim_base, f"{ZAI}/images/generations")
    expired = await generate(sim_base, f"{ZAI}/images/generations", x_sim={"media_url_ttl_s": 0})
    kept = await keep_images([*good, *expired, {"b64_json": "not base64!"}, {}], "url", store, downloader, sign)
    assert kept.failed == 3 and len(kept.data) == 1
    with pytest.raises(MediaDownloadFailed, match="None of the provider's 2 image"):
        await keep_images([*expired, {"b64_json": "@@"}], "url", store, downloader, sign)


async def test_video_and_cover_are_kept(sim_base: str, kit: tuple[MediaStore, MediaDownloader]) -> None:
    store, downloader = kit
    async with httpx.AsyncClient(base_url=sim_base) as client:
        job = (await client.post(f"{ZAI}/videos/generations",
                                 json={"model": "cogvideox-3", "prompt": "p", "x_sim": {"video_delay_ms": 0}})).json()
        [result] = (await client.get(f"{ZAI}/async-result/{job['id']}")).json()["video_result"]
    kept = await keep_video(result["url"], result["cover_image_url"], downloader, sign)
    assert kept.video.content_type == "video/mp4" and await store.get(kept.video.key) == SAMPLE_MP4
    assert kept.cover is not None and kept.cover_url == sign(kept.cover)
    without_cover = await keep_video(result["url"], "http://127.0.0.1:1/gone.png", downloader, sign)
    assert without_cover.cover is None and without_cover.cover_url is None
