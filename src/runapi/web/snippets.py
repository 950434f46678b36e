"""Quick-start code for a model: curl, Python and JavaScript (openai SDKs), fitting its mode (chat,
embeddings, images, videos). Pure functions.

The snippets read the key from the `RUNAPI_API_KEY` environment variable, so a copied snippet
never holds a secret and runs as is once the variable is set.
"""

from __future__ import annotations

import json

import msgspec

API_KEY_ENV = "RUNAPI_API_KEY"
PROMPT = "Say hello in one short sentence."


class Snippet(msgspec.Struct, frozen=True):
    id: str  # "curl", "python", "javascript"
    label: str
    language: str  # for the code block's class
    code: str


def api_base(root_url: str) -> str:
    """The OpenAI-style base URL (`…/v1`) of a gateway root URL."""
    return f"{root_url.rstrip('/')}/v1"


def curl_snippet(root_url: str, model_id: str) -> str:
    message = json.dumps({"role": "user", "content": PROMPT})
    body = f'{{\n    "model": {json.dumps(model_id)},\n    "messages": [{message}]\n  }}'
    body = body.replace("'", "'\\''")  # inside a single-quoted shell string
    return (f"curl {api_base(root_url)}/chat/completions \\\n"
            f'  -H "Authorization: Bearer ${API_KEY_ENV}" \\\n'
            f'  -H "Content-Type: application/json" \\\n'
            f"  -d '{body}'\n")


def python_snippet(root_url: str, model_id: str) -> str:
    return f"""import os

from openai import OpenAI

client = OpenAI(
    base_url={json.dumps(api_base(root_url))},
    api_key=os.environ[{json.dumps(API_KEY_ENV)}],
)

response = client.chat.completions.create(
    model={json.dumps(model_id)},
    messages=[{{"role": "user", "content": {json.dumps(PROMPT)}}}],
)
print(response.choices[0].message.content)
print("cost (USD):", getattr(response.usage, "cost", None))
"""


def javascript_snippet(root_url: str, model_id: str) -> str:
    return f"""import OpenAI from "openai";

const client = new OpenAI({{
  baseURL: {json.dumps(api_base(root_url))},
  apiKey: process.env.{API_KEY_ENV},
}});

const response = await client.chat.completions.create({{
  model: {json.dumps(model_id)},
  messages: [{{ role: "user", content: {json.dumps(PROMPT)} }}],
}});
console.log(response.choices[0].message.content);
console.log("cost (USD):", response.usage.cost);
"""


EMBED_TEXT = "RunAPI bills every call exactly."
IMAGE_PROMPT = "A lighthouse on a rocky coast at dawn, watercolour."
VIDEO_PROMPT = "A paper boat drifting down a rainy street, cinematic."
_CLIENT_PY = """import os

from openai import OpenAI

client = OpenAI(
    base_url={base},
    api_key=os.environ[{env}],
)
"""
_CLIENT_JS = """import OpenAI from "openai";

const client = new OpenAI({{
  baseURL: {base},
  apiKey: process.env.{env},
}});
"""


def _curl(root_url: str, path: str, body: dict[str, object]) -> str:
    text = json.dumps(body, indent=2).replace("\n", "\n  ").replace("'", "'\\''")
    return (f"curl {api_base(root_url)}{path} \\\n"
            f'  -H "Authorization: Bearer ${API_KEY_ENV}" \\\n'
            f'  -H "Content-Type: application/json" \\\n'
            f"  -d '{text}'\n")


def _py(root_url: str, body: str) -> str:
    return _CLIENT_PY.format(base=json.dumps(api_base(root_url)), env=json.dumps(API_KEY_ENV)) + "\n" + body


def _js(root_url: str, body: str) -> str:
    return _CLIENT_JS.format(base=json.dumps(api_base(root_url)), env=API_KEY_ENV) + "\n" + body


def embedding_snippets(root_url: str, model_id: str) -> tuple[str, str, str]:
    m, t = json.dumps(model_id), json.dumps(EMBED_TEXT)
    return (
        _curl(root_url, "/embeddings", {"model": model_id, "input": [EMBED_TEXT], "encoding_format": "float"}),
        _py(root_url, f"response = client.embeddings.create(model={m}, input=[{t}])\n"
                      "vector = response.data[0].embedding\n"
                      "print(len(vector), \"dimensions;\", response.usage.prompt_tokens, \"tokens\")\n"),
        _js(root_url, f"const response = await client.embeddings.create({{ model: {m}, input: [{t}] }});\n"
                      "console.log(response.data[0].embedding.length, \"dimensions\");\n"),
    )


def image_snippets(root_url: str, model_id: str) -> tuple[str, str, str]:
    m, p = json.dumps(model_id), json.dumps(IMAGE_PROMPT)
    return (
        _curl(root_url, "/images/generations", {"model": model_id, "prompt": IMAGE_PROMPT, "response_format": "url"}),
        _py(root_url, f"image = client.images.generate(model={m}, prompt={p})\n"
                      "print(image.data[0].url)  # a signed URL of this gateway; it expires\n"),
        _js(root_url, f"const image = await client.images.generate({{ model: {m}, prompt: {p} }});\n"
                      "console.log(image.data[0].url);\n"),
    )


def video_snippets(root_url: str, model_id: str) -> tuple[str, str, str]:
    m, p = json.dumps(model_id), json.dumps(VIDEO_PROMPT)
    return (
        _curl(root_url, "/videos", {"model": model_id, "prompt": VIDEO_PROMPT})
        + f"# then: curl -H \"Authorization: Bearer ${API_KEY_ENV}\" {api_base(root_url)}/videos/VIDEO_ID\n",
        _py(root_url, f"video = client.videos.create_and_poll(model={m}, prompt={p})\n"
                      "if video.status == \"completed\":\n"
                      "    client.videos.download_content(video.id).write_to_file(\"video.mp4\")\n"),
        _js(root_url, f"const video = await client.videos.createAndPoll({{ model: {m}, prompt: {p} }});\n"
                      "console.log(video.status, video.id);\n"),
    )


def quick_start(root_url: str, model_id: str, mode: str = "text") -> list[Snippet]:
    """The three quick-start snippets for `model_id` (a model of `mode`) on the gateway at `root_url`."""
    if mode == "text":
        codes = (curl_snippet(root_url, model_id), python_snippet(root_url, model_id),
                 javascript_snippet(root_url, model_id))
    else:
        codes = {"embedding": embedding_snippets, "image": image_snippets, "video": video_snippets}[mode](
            root_url, model_id)
    return [
        Snippet("curl", "curl", "shell", codes[0]),
        Snippet("python", "Python", "python", codes[1]),
        Snippet("javascript", "JavaScript", "javascript", codes[2]),
    ]


def skill_install_command(root_url: str, model_id: str) -> str:
    return f"runapi skill install {model_id} --base-url {root_url.rstrip('/')}"
