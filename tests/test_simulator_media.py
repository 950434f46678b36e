"""The simulator's media endpoints (embeddings, images, video jobs) over loopback, OpenAI SDK and raw httpx."""

from __future__ import annotations

import base64
import math
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from runapi.simulator import create_simulator_app
from runapi.simulator.embeddings import embedding_vector
from runapi.simulator.media_routes import SAMPLE_MP4
from runapi.simulator.png import png_size, render_png
from tests.support.servers import serve_asgi

ZAI = "/api/paas/v4"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with serve_asgi(create_simulator_app()) as url:
        yield url


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=5) as client:
        yield client


@pytest.fixture(autouse=True)
def _reset_simulator(http: httpx.Client) -> None:
    http.post("/_sim/reset").raise_for_status()


@pytest.fixture(scope="module")
def oai(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="sk-sim", max_retries=0, timeout=5) as client:
        yield client


def norm(vector: list[float]) -> float:
    return math.sqrt(sum(c * c for c in vector))


# --- embeddings -------------------------------------------------------------------------------


def test_sdk_embeddings_default_base64_decode_to_the_vectors_of_the_requested_dimension(oai: openai.OpenAI) -> None:
    answer = oai.embeddings.create(model="text-embedding-3-small", input=["red apple", "a green pear tree"],
                                   dimensions=64)
    assert [len(item.embedding) for item in answer.data] == [64, 64]
    assert [item.index for item in answer.data] == [0, 1]
    assert answer.usage.prompt_tokens == 2 + 4 == answer.usage.total_tokens
    expected = embedding_vector("red apple", 64)
    assert answer.data[0].embedding == pytest.approx(expected, abs=1e-6)  # float32 on the wire
    assert norm(answer.data[1].embedding) == pytest.approx(1.0, abs=1e-5)


def test_float_embeddings_are_deterministic_unit_vectors_and_differ_by_input(http: httpx.Client) -> None:
    def embed(text: str) -> list[float]:
        body = {"model": "text-embedding-3-small", "input": text, "encoding_format": "float", "dimensions": 256}
        answer = http.post("/v1/embeddings", json=body)
        assert answer.status_code == 200, answer.text
        vector: list[float] = answer.json()["data"][0]["embedding"]
        return vector

    first, again, other = embed("hello world"), embed("hello world"), embed("goodbye world")
    assert first == again and first != other
    assert len(first) == 256 and norm(first) == pytest.approx(1.0, abs=1e-12)


def test_base64_is_little_endian_float32(http: httpx.Client) -> None:
    body = {"model": "m", "input": "one two three", "encoding_format": "base64", "dimensions": 8}
    answer = http.post("/v1/embeddings", json=body).json()
    values = struct.unpack("<8f", base64.b64decode(answer["data"][0]["embedding"]))
    assert list(values) == pytest.approx(embedding_vector("one two three", 8), abs=1e-6)
    assert answer["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert answer["object"] == "list" and answer["model"] == "m"


def test_token_array_inputs_count_their_length(http: httpx.Client) -> None:
    body = {"model": "m", "input": [[1, 2, 3], [4, 5]], "encoding_format": "float", "dimensions": 4}
    answer = http.post("/v1/embeddings", json=body).json()
    assert answer["usage"]["prompt_tokens"] == 5
    assert answer["data"][1]["embedding"] == embedding_vector((4, 5), 4)


def test_default_dimensions_per_shape(http: httpx.Client) -> None:
    openai_answer = http.post("/v1/embeddings", json={"model": "m", "input": "x", "encoding_format": "float"}).json()
    zai_answer = http.post(f"{ZAI}/embeddings", json={"model": "embedding-3", "input": "x"}).json()
    assert len(openai_answer["data"][0]["embedding"]) == 1536
    assert len(zai_answer["data"][0]["embedding"]) == 2048


def test_zai_shape_floats_and_usage_with_completion_tokens(http: httpx.Client) -> None:
    answer = http.post(f"{ZAI}/embeddings", json={"model": "embedding-3", "input": ["a b", "c"], "dimensions": 256})
    assert answer.status_code == 200
    body = answer.json()
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3}
    assert body["data"][0]["embedding"] == embedding_vector("a b", 256)
    assert body["model"] == "embedding-3"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "m", "input": ""}, "input"),
        ({"model": "m", "input": []}, "input"),
        ({"model": "m", "input": [1, "a"]}, "input"),
        ({"model": "m", "input": "a", "dimensions": 0}, "dimensions"),
        ({"model": "m", "input": "a", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "a"}, "model"),
    ],
)
def test_bad_embeddings_requests_are_400_naming_the_field(http: httpx.Client, body: dict[str, Any], field: str) -> None:
    answer = http.post("/v1/embeddings", json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith(f"{field}:")
    zai = http.post(f"{ZAI}/embeddings", json=body)
    assert zai.status_code == 400 and zai.json()["error"]["code"] == "1214"


def test_embeddings_faults_in_each_shape(http: httpx.Client) -> None:
    http.post("/_sim/faults", json={"faults": ["429", "500"]}).raise_for_status()
    limited = http.post(f"{ZAI}/embeddings", json={"model": "embedding-3", "input": "a"})
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "1302"
    failed = http.post("/v1/embeddings", json={"model": "m", "input": "a"})
    assert failed.status_code == 500 and failed.json()["error"]["type"] == "server_error"
    overridden = http.post("/v1/embeddings", json={"model": "m", "input": "a", "x_sim": {"fault": "429"}})
    assert overridden.status_code == 429 and overridden.headers["retry-after"] == "1"


def test_zai_chat_completions_path_answers_in_the_openai_format(http: httpx.Client) -> None:
    answer = http.post(f"{ZAI}/chat/completions", json={"model": "glm-4.6", "messages": [{"role": "user",
                                                                                          "content": "hi"}]})
    assert answer.status_code == 200 and answer.json()["object"] == "chat.completion"


# --- images -----------------------------------------------------------------------------------


def test_sdk_images_url_serves_a_real_png_of_the_requested_size(oai: openai.OpenAI, http: httpx.Client) -> None:
    answer = oai.images.generate(model="dall-e-3", prompt="a red fox", size="256x128", n=2, response_format="url")
    assert answer.data is not None and len(answer.data) == 2
    urls = [item.url for item in answer.data]
    assert all(url and "/_sim/media/" in url and "expires=" in url for url in urls)
    files = [http.get(url or "") for url in urls]
    assert all(f.status_code == 200 and f.headers["content-type"] == "image/png" for f in files)
    assert png_size(files[0].content) == (256, 128)
    assert files[0].content != files[1].content  # seeded by the image's index too
    assert files[0].content == render_png("a red fox#0", 256, 128)


def test_sdk_images_b64_json_and_gpt_image_usage(oai: openai.OpenAI) -> None:
    answer = oai.images.generate(model="gpt-image-1", prompt="a quiet lake at dawn", quality="low")
    assert answer.data is not None and answer.data[0].b64_json and answer.data[0].url is None
    assert png_size(base64.b64decode(answer.data[0].b64_json)) == (1024, 1024)
    assert answer.usage is not None
    assert answer.usage.input_tokens == 5 and answer.usage.output_tokens == 272
    assert answer.size == "1024x1024" and answer.output_format == "png"


def test_image_urls_expire(http: httpx.Client) -> None:
    body = {"model": "dall-e-3", "prompt": "a fox", "size": "64x64", "x_sim": {"media_url_ttl_s": 0}}
    url = http.post("/v1/images/generations", json=body).json()["data"][0]["url"]
    expired = http.get(url)
    assert expired.status_code == 403 and b"expired" in expired.content
    assert http.get("/_sim/media/no-such-file.png").status_code == 404


def test_zai_images_answer_one_url_and_content_filter(http: httpx.Client) -> None:
    body = {"model": "cogview-4-250304", "prompt": "a cat on a windowsill", "size": "512x512", "n": 3,
            "response_format": "b64_json"}
    answer = http.post(f"{ZAI}/images/generations", json=body)
    assert answer.status_code == 200
    data = answer.json()
    assert len(data["data"]) == 1 and set(data["data"][0]) == {"url"}
    assert data["content_filter"] == [{"role": "assistant", "level": 3}]
    assert png_size(http.get(data["data"][0]["url"]).content) == (512, 512)


def test_filtered_images_are_refused_in_each_shape(http: httpx.Client) -> None:
    body = {"model": "m", "prompt": "p", "x_sim": {"fault": "filtered"}}
    openai_answer = http.post("/v1/images/generations", json=body)
    assert openai_answer.status_code == 400
    assert openai_answer.json()["error"]["code"] == "content_policy_violation"
    zai_answer = http.post(f"{ZAI}/images/generations", json=body)
    assert zai_answer.status_code == 400 and zai_answer.json()["error"]["code"] == "1301"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "m", "prompt": " "}, "prompt"),
        ({"model": "m", "prompt": "p", "size": "big"}, "size"),
        ({"model": "m", "prompt": "p", "size": "5000x10"}, "size"),
        ({"model": "m", "prompt": "p", "n": 0}, "n"),
        ({"model": "m", "prompt": "p", "response_format": "png"}, "response_format"),
    ],
)
def test_bad_image_requests_are_400_naming_the_field(http: httpx.Client, body: dict[str, Any], field: str) -> None:
    answer = http.post("/v1/images/generations", json=body)
    assert answer.status_code == 400 and answer.json()["error"]["message"].startswith(f"{field}:")


# --- video jobs -------------------------------------------------------------------------------


def zai_video(http: httpx.Client, **x_sim: Any) -> dict[str, Any]:
    body = {"model": "cogvideox-3", "prompt": "A cat is playing with a ball.", "x_sim": x_sim}
    answer = http.post(f"{ZAI}/videos/generations", json=body)
    assert answer.status_code == 200, answer.text
    job: dict[str, Any] = answer.json()
    return job


def test_zai_video_job_succeeds_with_an_mp4_and_a_cover(http: httpx.Client) -> None:
    job = zai_video(http, video_delay_ms=0)
    assert job["task_status"] == "PROCESSING" and job["model"] == "cogvideox-3" and job["request_id"]
    result = http.get(f"{ZAI}/async-result/{job['id']}").json()
    assert result["task_status"] == "SUCCESS" and result["request_id"] == job["request_id"]
    [video] = result["video_result"]
    mp4 = http.get(video["url"])
    assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
    assert mp4.content == SAMPLE_MP4 and mp4.content[4:8] == b"ftyp"
    cover = http.get(video["cover_image_url"])
    assert cover.headers["content-type"] == "image/png" and png_size(cover.content) == (160, 90)
    again = http.get(f"{ZAI}/async-result/{job['id']}").json()
    assert again["video_result"] == result["video_result"]  # the same URLs on every poll


def test_zai_video_job_moves_from_processing_to_success_after_the_delay(http: httpx.Client) -> None:
    job = zai_video(http, video_delay_ms=150)
    first = http.get(f"{ZAI}/async-result/{job['id']}").json()
    assert first["task_status"] == "PROCESSING" and "video_result" not in first
    statuses = {first["task_status"]}
    deadline = time.monotonic() + 10
    while "SUCCESS" not in statuses and time.monotonic() < deadline:  # polls, as the gateway's worker will
        statuses.add(http.get(f"{ZAI}/async-result/{job['id']}").json()["task_status"])
    assert statuses == {"PROCESSING", "SUCCESS"}


def test_zai_video_faults_fail_and_never_finish(http: httpx.Client) -> None:
    failed = zai_video(http, video_delay_ms=0, fault="fail")
    result = http.get(f"{ZAI}/async-result/{failed['id']}").json()
    assert result["task_status"] == "FAIL" and "video_result" not in result
    http.post("/_sim/faults", json={"faults": ["stall"]}).raise_for_status()
    stalled = zai_video(http, video_delay_ms=0)
    assert http.get(f"{ZAI}/async-result/{stalled['id']}").json()["task_status"] == "PROCESSING"


def test_video_submission_errors_and_unknown_tasks(http: httpx.Client) -> None:
    bad = http.post(f"{ZAI}/videos/generations", json={"model": "cogvideox-3"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "1214"
    assert bad.json()["error"]["message"].startswith("prompt:")
    limited = http.post(f"{ZAI}/videos/generations", json={"model": "cogvideox-3", "prompt": "p",
                                                            "x_sim": {"fault": "429"}})
    assert limited.status_code == 429
    assert http.get(f"{ZAI}/async-result/nope").status_code == 404
    assert http.get("/v1/videos/video_nope").json()["error"]["message"] == "No video task 'video_nope'"
    stats = http.get("/_sim/stats").json()
    assert stats["by_path"] == {f"{ZAI}/videos/generations": 2}


@pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")  # openai-python deprecates its video API
def test_sdk_video_api_create_retrieve_and_download(oai: openai.OpenAI) -> None:
    video = oai.videos.create(model="sora-2", prompt="A calico cat playing a piano on stage", seconds="4",
                              size="1280x720", extra_body={"x_sim": '{"video_delay_ms": 0}'})
    assert video.status == "queued" and video.id.startswith("video_") and video.object == "video"
    done = oai.videos.retrieve(video.id)
    assert done.status == "completed" and done.progress == 100 and done.completed_at is not None
    assert done.seconds == "4" and done.size == "1280x720"
    assert oai.videos.download_content(video.id).content == SAMPLE_MP4
    thumbnail = oai.videos.download_content(video.id, variant="thumbnail")
    assert png_size(thumbnail.content) == (160, 90)


def test_openai_video_failure_and_content_before_completion(http: httpx.Client) -> None:
    created = http.post("/v1/videos", json={"prompt": "p", "x_sim": {"video_delay_ms": 0, "fault": "fail"}}).json()
    failed = http.get(f"/v1/videos/{created['id']}").json()
    assert failed["status"] == "failed" and failed["error"]["code"] == "video_generation_failed"
    pending = http.post("/v1/videos", json={"prompt": "p", "x_sim": {"video_delay_ms": 3_600_000}}).json()
    assert http.get(f"/v1/videos/{pending['id']}").json()["status"] == "in_progress"
    content = http.get(f"/v1/videos/{pending['id']}/content")
    assert content.status_code == 404 and "is not ready" in content.json()["error"]["message"]
