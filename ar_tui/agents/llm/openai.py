"""OpenAI Chat Completions behind the model seam (`client.py`).

One client for OpenAI itself and every server that copies its API: vLLM,
llama.cpp's server, Ollama, LM Studio, OpenRouter. It streams
`/chat/completions` with tools through the official SDK (AsyncOpenAI at the
base URL; the key from OPENAI_API_KEY unless given), translating the seam's
blocks: the system blocks become one system message, tool calls go out as
`tool_calls` and come back as `tool` messages, text streams as it arrives.

Usage comes from the stream's last chunk (`stream_options.include_usage`):
`prompt_tokens` includes the cached ones, which `prompt_tokens_details`
reports as `cached_tokens`; a count the server leaves out is unknown, not 0.
The caching itself is the server's: OpenAI caches a prompt's prefix by
itself (vLLM with prefix caching and llama.cpp do likewise), so the seam's
`cache_control` hints are dropped, and the prompt's layout (what changes
least first) is what makes the prefix hit.

Failures are sorted as for Anthropic: 429 waits as long as `retry-after`
says, 5xx, timeouts and dropped streams are retried, a bad key, an unknown
model, a spent quota or a server that does not speak this API stop the run
with one line.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai

from ar_tui.agents.llm.client import (
    END_TURN,
    FATAL,
    MAX_TOKENS,
    RATE_LIMITED,
    REFUSAL,
    RETRY,
    TOOL_USE,
    AgentConfigError,
    AttemptFailed,
    Call,
    Reply,
    RetryingClient,
    StreamIncomplete,
    ToolCall,
    Turn,
    Verdict,
    one_line,
    parse_tool_input,
    retry_after,
)
from ar_tui.core import events as ev
from ar_tui.core.proposer import TokenUsage

STOP_REASONS = {"stop": END_TURN, "tool_calls": TOOL_USE, "function_call": TOOL_USE, "length": MAX_TOKENS,
                "content_filter": REFUSAL}
QUOTA_CODES = {"insufficient_quota", "billing_hard_limit_reached", "billing_not_active"}
# OpenAI's own API wants max_completion_tokens (its reasoning models refuse
# max_tokens); the servers that copy the API know max_tokens best.
OPENAI_HOSTS = {"api.openai.com"}


class NotChatCompletions(Exception):
    """The server answered 200 with something other than a completion stream."""


class OpenAIChatClient(RetryingClient):
    api = "openai-chat"
    _label = "the OpenAI-compatible server"

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        prices: dict | None = None,
        retry_base_s: float = 1.0,
        retry_cap_s: float = 60.0,
    ) -> None:
        super().__init__(model=model, prices=prices, retry_base_s=retry_base_s, retry_cap_s=retry_cap_s,
                         example_model="gpt-4.1-mini")
        # max_retries=0: RetryingClient retries, so that waits are visible.
        try:
            self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0)
        except openai.OpenAIError:
            raise AgentConfigError("no OpenAI API key: set OPENAI_API_KEY (a local server accepts any value)") from None
        key = self._client.api_key
        self._secrets = [key] if isinstance(key, str) and key else []
        host = urlsplit(self.base_url).hostname or ""
        self._limit_param = "max_completion_tokens" if host in OPENAI_HOSTS else "max_tokens"

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    def params(self, turn: Turn) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "messages": chat_messages(turn.system, turn.messages),
            self._limit_param: turn.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        tools = [chat_tool(t) for t in turn.tools]
        if tools:
            params["tools"] = tools
        if turn.tool_choice is not None:
            params["tool_choice"] = {"type": "function", "function": {"name": turn.tool_choice}}
        return params

    async def attempt(self, call: Call, turn: Turn) -> Reply:
        text: list[str] = []
        slots: dict[int, dict[str, Any]] = {}  # tool calls by their index in the stream
        usage: TokenUsage | None = None
        finish: str | None = None
        chunks = 0
        try:
            stream = await self._client.chat.completions.create(**self.params(turn))
            try:
                async for chunk in stream:
                    chunks += 1
                    if chunk.usage is not None:
                        usage = usage_from(chunk.usage)
                    for choice in chunk.choices or []:
                        delta = choice.delta
                        if delta is not None and delta.content:
                            text.append(delta.content)
                            call.emit(ev.AgentText(exp=call.exp, text=delta.content, role=call.role))
                        for part in (delta.tool_calls or []) if delta is not None else []:
                            index = part.index if part.index is not None else len(slots)
                            slot = slots.setdefault(index, {"id": None, "name": "", "arguments": []})
                            if part.id:
                                slot["id"] = part.id
                            if part.function is not None:
                                if part.function.name and not slot["name"]:
                                    slot["name"] = part.function.name
                                if part.function.arguments:
                                    slot["arguments"].append(part.function.arguments)
                        if choice.finish_reason:
                            finish = choice.finish_reason
            finally:
                await stream.close()
            if chunks == 0:
                raise NotChatCompletions("the answer was not a Chat Completions stream")
            if finish is None:
                raise StreamIncomplete("the response stream ended before a finish_reason")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise AttemptFailed(exc, usage) from exc

        calls = [parse_tool_input(ToolCall(id=slot["id"] or f"call_{uuid.uuid4().hex[:20]}", name=slot["name"],
                                           input={}), "".join(slot["arguments"]))
                 for _, slot in sorted(slots.items())]
        content: list[dict[str, Any]] = [{"type": "text", "text": "".join(text)}] if "".join(text) else []
        content += [c.param() for c in calls]
        # A server that ignores include_usage reports nothing: every count unknown.
        reported = usage or TokenUsage(None, None, None, None, None)
        return Reply(content, calls, STOP_REASONS.get(finish, finish), reported)

    def classify(self, exc: BaseException) -> Verdict:
        if isinstance(exc, AgentConfigError):
            return Verdict(FATAL, str(exc))
        if isinstance(exc, NotChatCompletions):
            return Verdict(FATAL, self._wrong_api("200, not an event stream"))
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            code = exc.code or ""
            detail = self.redact(one_line(_message(exc)))
            label = f"{status} {code or exc.type or ''}".strip()
            if status == 402 or code in QUOTA_CODES:
                return Verdict(FATAL, f"quota or spend limit reached ({label}): {detail}; raise it, then resume")
            if status == 429:
                return Verdict(RATE_LIMITED, f"rate limited ({label}): {detail}", retry_after(exc.response.headers))
            if status in (408, 409) or status >= 500:
                return Verdict(RETRY, f"{label}: {detail}", retry_after(exc.response.headers))
            if status == 401:
                return Verdict(FATAL, f"the server rejected the key ({label}): {detail}; fix OPENAI_API_KEY, "
                                      f"then resume")
            if status == 403:
                return Verdict(FATAL, f"the key may not use this model ({label}): {detail}")
            if status in (404, 405):
                if "model" in detail.lower():
                    return Verdict(FATAL, f"{self.base_url} has no model {self.model} ({label}): {detail}")
                return Verdict(FATAL, self._wrong_api(label))
            return Verdict(FATAL, f"the server refused the request ({label}): {detail}")
        if isinstance(exc, openai.APITimeoutError):
            return Verdict(RETRY, "the request timed out")
        if isinstance(exc, (openai.APIConnectionError, httpx2.TransportError)):
            return Verdict(RETRY, f"connection error: {self.redact(one_line(str(exc) or type(exc).__name__))}")
        if isinstance(exc, StreamIncomplete):
            return Verdict(RETRY, str(exc))
        if isinstance(exc, openai.APIResponseValidationError):
            return Verdict(RETRY, "the server sent a response that could not be read")
        if isinstance(exc, openai.APIError):
            # An error event inside an accepted stream: an outage, unless the request itself is bad.
            detail = self.redact(one_line(_message(exc)))
            if exc.type == "invalid_request_error":
                return Verdict(FATAL, f"error during the response ({exc.type}): {detail}")
            return Verdict(RETRY, f"an error during the response: {detail}")
        # Anything else is a bug or a broken server, not an outage: stop, say what.
        return Verdict(FATAL, f"unexpected error talking to the server: {type(exc).__name__}: "
                              f"{self.redact(one_line(str(exc)))}")

    def _wrong_api(self, label: str) -> str:
        url = self.base_url.rstrip("/")
        hint = "" if url.endswith("/v1") else f"; most servers serve it under /v1 (try {url}/v1)"
        return (f"{url} does not speak the OpenAI Chat Completions API ({label} on {url}/chat/completions)"
                f"{hint}; for an Anthropic Messages API server use --agent claude or anthropic:MODEL@URL")


# --- the seam's blocks in Chat Completions' words ------------------------------


def chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    if "input_schema" not in tool:
        # A built-in tool of another API (Anthropic's text editor or web search).
        raise AgentConfigError(f"the {tool.get('name', '?')} tool ({tool.get('type', 'built in')}) is built into "
                               f"the Anthropic API; Chat Completions has no such tool (use the custom editor, "
                               f"and no --web-search)")
    function = {"name": tool["name"], "parameters": tool["input_schema"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n\n".join(b.get("text", "") for b in content if b.get("type") == "text")


def chat_messages(system: list[dict[str, Any]], messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    system_text = _text(system)
    if system_text:
        out.append({"role": "system", "content": system_text})
    for message in messages:
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if message["role"] == "assistant":
            turn: dict[str, Any] = {"role": "assistant", "content": _text(blocks) or None}
            calls = [{"id": b["id"], "type": "function",
                      "function": {"name": b["name"], "arguments": json.dumps(b.get("input") or {})}}
                     for b in blocks if b.get("type") == "tool_use"]
            if calls:
                turn["tool_calls"] = calls
            out.append(turn)
            continue
        # Tool results answer the assistant's calls first; any text the user adds follows.
        for block in blocks:
            if block.get("type") == "tool_result":
                result = _text(block.get("content", ""))
                out.append({"role": "tool", "tool_call_id": block["tool_use_id"],
                            "content": f"error: {result}" if block.get("is_error") else result})
        text = _text(blocks)
        if text:
            out.append({"role": "user", "content": text})
    return out


def usage_from(api_usage: Any) -> TokenUsage:
    """`prompt_tokens` counts the cached tokens too: the uncached input is the rest."""
    prompt = getattr(api_usage, "prompt_tokens", None)
    details = getattr(api_usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    return TokenUsage(
        input_tokens=None if prompt is None else max(0, prompt - (cached or 0)),
        output_tokens=getattr(api_usage, "completion_tokens", None),
        # Chat Completions reports no cache writes (OpenAI does not bill them apart).
        cache_write_5m_tokens=None,
        cache_write_1h_tokens=None,
        cache_read_tokens=cached,
    )


def _message(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if body.get("message"):
            return str(body["message"])
    return exc.message or str(body or "")
