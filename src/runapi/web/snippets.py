"""Quick-start code for a model: curl, Python and JavaScript (openai SDKs). Pure functions.

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


def quick_start(root_url: str, model_id: str) -> list[Snippet]:
    """The three quick-start snippets for `model_id` on the gateway at `root_url`."""
    return [
        Snippet("curl", "curl", "shell", curl_snippet(root_url, model_id)),
        Snippet("python", "Python", "python", python_snippet(root_url, model_id)),
        Snippet("javascript", "JavaScript", "javascript", javascript_snippet(root_url, model_id)),
    ]


def skill_install_command(root_url: str, model_id: str) -> str:
    return f"runapi skill install {model_id} --base-url {root_url.rstrip('/')}"
