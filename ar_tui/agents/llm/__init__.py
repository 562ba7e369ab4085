"""Model clients by the API they speak: the model seam's registry.

- `client.py`: the `ModelClient` protocol, the seam's message shape, and
  what every client shares (retries, money, usage events);
- `anthropic.py`: the Anthropic Messages API;
- `openai.py`: OpenAI Chat Completions (OpenAI, vLLM, llama.cpp, Ollama,
  LM Studio, OpenRouter ...);
- `loop.py`: the tool loop any role runs on any client;
- `tools.py`, `prompt.py`: what the model is given.

A role names its model as `[API:]MODEL[@URL]` (`model_spec`); the API's
factory builds the client. A new API is one module and one line in
`MODEL_CLIENTS`, and a test may add one from its own file. The factories
import their SDK when called, so a run on one API never loads the other's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ar_tui.agents.llm.client import AgentConfigError, ModelClient


def _anthropic(**settings: Any) -> ModelClient:
    from ar_tui.agents.llm.anthropic import AnthropicClient

    return AnthropicClient(**settings)


def _openai_chat(**settings: Any) -> ModelClient:
    from ar_tui.agents.llm.openai import OpenAIChatClient

    return OpenAIChatClient(**settings)


# Each factory takes model, base_url, api_key (None: the API's own variable),
# prices, retry_base_s and retry_cap_s, as keywords.
MODEL_CLIENTS: dict[str, Callable[..., ModelClient]] = {
    "anthropic": _anthropic,
    "openai-chat": _openai_chat,
}
# Other names people write for an API.
API_ALIASES = {"openai": "openai-chat"}


@dataclass(frozen=True)
class ModelSpec:
    api: str | None  # None: the default of whoever builds it
    model: str
    base_url: str | None = None

    def __str__(self) -> str:
        return (f"{self.api}:" if self.api else "") + self.model + (f"@{self.base_url}" if self.base_url else "")


def api_name(name: str) -> str | None:
    """The registered API `name` stands for, or None."""
    name = API_ALIASES.get(name, name)
    return name if name in MODEL_CLIENTS else None


def model_spec(text: str, where: str = "--model") -> ModelSpec:
    """`[API:]MODEL[@URL]`. The API prefix counts only when it names a
    registered API: `qwen2.5-coder:7b` is an Ollama model, not an API."""
    value, _, url = text.strip().partition("@")
    api, sep, rest = value.partition(":")
    resolved = api_name(api.strip()) if sep else None
    model = rest if resolved else value
    model, url = model.strip(), url.strip()
    if not model:
        raise AgentConfigError(f"{where}: {text.strip()!r} names no model, e.g. openai-chat:gpt-4.1-mini@URL")
    if url and not url.startswith(("http://", "https://")):
        raise AgentConfigError(f"{where}: the server must be an http:// or https:// URL, not {url!r}")
    return ModelSpec(resolved, model, url or None)


def make_model_client(api: str, **settings: Any) -> ModelClient:
    resolved = api_name(api)
    if resolved is None:
        raise AgentConfigError(f"unknown model API {api!r}; known: {', '.join(MODEL_CLIENTS)}")
    return MODEL_CLIENTS[resolved](**settings)
