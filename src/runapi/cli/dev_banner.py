"""What `runapi dev` prints before it serves: base URLs, the demo key and ready-to-paste lines.

`dev_snippets` is pure (URLs and key in, text out); `print_banner` lays it out with rich. Code is
printed with soft wrapping, so a long line stays one line when copied from the terminal.
"""

from __future__ import annotations

import msgspec
from rich.console import Console
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

CHAT_MODEL = "glm-4.5-air"
AGENT_MODEL = "glm-4.6"
PAGES = (("Models", "/models"), ("Pricing", "/pricing"), ("API reference", "/docs"), ("Dashboard", "/dashboard"))


class Snippet(msgspec.Struct, frozen=True):
    title: str
    language: str  # for highlighting: bash, python, toml
    code: str


class DevBanner(msgspec.Struct, frozen=True):
    root: str  # http://127.0.0.1:8787, the Anthropic base URL
    simulator: str
    secret: str
    key_file: str
    key_minted: bool
    credit: str  # the demo account's balance, e.g. "$10.00"

    @property
    def openai_base(self) -> str:
        return f"{self.root}/v1"


def dev_snippets(root: str, secret: str) -> list[Snippet]:
    """curl, the openai and anthropic SDKs, Claude Code and Codex, pointed at this gateway."""
    base = f"{root}/v1"
    return [
        Snippet("curl", "bash",
                f"curl {base}/chat/completions -H \"Authorization: Bearer {secret}\" "
                f"-H \"Content-Type: application/json\" "
                f"-d '{{\"model\": \"{CHAT_MODEL}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'"),
        Snippet("Python, openai SDK (base URL ends in /v1)", "python",
                "from openai import OpenAI\n"
                f"client = OpenAI(base_url=\"{base}\", api_key=\"{secret}\")\n"
                f"reply = client.chat.completions.create(model=\"{CHAT_MODEL}\", "
                "messages=[{\"role\": \"user\", \"content\": \"Hello\"}])\n"
                "print(reply.choices[0].message.content, reply.usage.model_extra[\"cost\"])"),
        Snippet("Python, anthropic SDK (base URL is the root, no /v1)", "python",
                "from anthropic import Anthropic\n"
                f"client = Anthropic(base_url=\"{root}\", api_key=\"{secret}\")\n"
                f"reply = client.messages.create(model=\"{CHAT_MODEL}\", max_tokens=256, "
                "messages=[{\"role\": \"user\", \"content\": \"Hello\"}])\n"
                "print(reply.content[0].text)"),
        Snippet("Claude Code", "bash",
                f"ANTHROPIC_BASE_URL={root} ANTHROPIC_AUTH_TOKEN={secret} claude --model {AGENT_MODEL}"),
        Snippet("Codex: add to ~/.codex/config.toml (root keys before the table), then run "
                f"RUNAPI_API_KEY={secret} codex", "toml",
                f"model = \"{AGENT_MODEL}\"\n"
                "model_provider = \"runapi\"\n\n"
                "[model_providers.runapi]\n"
                "name = \"RunAPI\"\n"
                f"base_url = \"{base}\"\n"
                "env_key = \"RUNAPI_API_KEY\"\n"
                "wire_api = \"responses\""),
    ]


def print_banner(console: Console, banner: DevBanner) -> None:
    console.print()
    console.print(Text.assemble(("RunAPI dev", "bold"), " — the gateway in front of the local upstream simulator "
                                f"({banner.simulator}): every provider points there, replies are made up, "
                                "no provider key is needed."))
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    facts.add_row("OpenAI base URL", Text(banner.openai_base, style="cyan"))
    facts.add_row("Anthropic base URL", Text.assemble((banner.root, "cyan"), " (the root: clients add /v1/messages)"))
    kept = "a new key" if banner.key_minted else "the same key as last run"
    facts.add_row("Demo key", Text(banner.secret, style="bold green"))
    facts.add_row("", Text(f"{kept}; kept in {banner.key_file} (mode 600); `runapi dev --new-key` rotates it",
                           style="dim"))
    facts.add_row("Demo account", f"\"demo\", {banner.credit} of credit")
    for label, page in PAGES:
        url = f"{banner.root}{page}"
        facts.add_row(label, Text(url, style=f"cyan link {url}"))
    console.print(facts, soft_wrap=True)
    for snippet in dev_snippets(banner.root, banner.secret):
        console.print()
        console.print(Text(snippet.title, style="bold"), soft_wrap=True)
        code = Syntax(snippet.code, snippet.language, theme="ansi_dark").highlight(snippet.code)
        code.rstrip()
        console.print(code, soft_wrap=True)
    console.print()
    console.print(Text("Requests are logged below, one line each. Ctrl+C stops.", style="dim"))
