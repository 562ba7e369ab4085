"""The Anthropic Messages API behind the model seam (`client.py`).

Streaming, with Anthropic's prompt caching: the seam's `cache_control` hints
go to the API as they are, and its usage reports cache writes by TTL and
cache reads. Server-side tools (web search) run inside the reply and their
blocks go back as they came. Rate limits, overloads, 5xx and dropped
connections are retried (`RetryingClient`; the SDK's own retries are off so
that every wait is visible); errors that waiting cannot fix (a bad request,
a bad key, a spend limit, a server that speaks another API) stop the run
with one line.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anthropic
import httpx2

from ar_tui.agents.llm.client import (
    FATAL,
    RATE_LIMITED,
    RETRY,
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

# Errors the API reports inside a 200 stream (an SSE `error` event) that no
# later attempt can get past; any other (overloaded_error, api_error, a proxy's
# unreadable error) is an outage to wait out.
FATAL_STREAM_ERRORS = {"invalid_request_error", "authentication_error", "permission_error", "not_found_error",
                       "request_too_large", "billing_error"}
RETRYABLE_STATUS = {408, 409}
# Blocks of the server-side tools that go back to the API as they came.
SERVER_TOOL_BLOCKS = {"server_tool_use", "web_search_tool_result"}


class AnthropicClient(RetryingClient):
    api = "anthropic"
    _label = "the Anthropic API"

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
                         example_model="claude-sonnet-4-5")
        # max_retries=0: RetryingClient retries, so that waits are visible.
        try:
            self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0)
        except anthropic.CredentialsError as exc:
            raise AgentConfigError(f"Anthropic credentials: {one_line(str(exc))}") from None
        if self._client.api_key is None and self._client.auth_token is None and self._client.credentials is None:
            raise AgentConfigError(
                "no Anthropic API key: set ANTHROPIC_API_KEY (a local server accepts any value)"
            )
        self._secrets = [s for s in (self._client.api_key, self._client.auth_token) if s]

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    def params(self, turn: Turn) -> dict[str, Any]:
        """The Messages API request: the seam's blocks are its own."""
        params: dict[str, Any] = {"model": self.model, "max_tokens": turn.max_tokens, "system": turn.system,
                                  "tools": turn.tools, "messages": turn.messages}
        if turn.tool_choice is not None:
            params["tool_choice"] = {"type": "tool", "name": turn.tool_choice}
        return params

    async def attempt(self, call: Call, turn: Turn) -> Reply:
        blocks: dict[int, dict[str, Any]] = {}
        json_parts: dict[int, list[str]] = {}
        usage: TokenUsage | None = None
        searches = 0
        stop_reason: str | None = None
        finished = False
        try:
            stream = await self._client.messages.create(**self.params(turn), stream=True)
            try:
                async for event in stream:
                    kind = event.type
                    if kind == "message_start":
                        usage = usage_from(event.message.usage)
                        self.emit_usage(call, usage, 0, streaming=True)
                    elif kind == "content_block_start":
                        block = event.content_block
                        if block.type in ("tool_use", "server_tool_use"):
                            # Anthropic streams the input as JSON deltas after an empty `input`;
                            # some compatible servers send it whole here instead.
                            blocks[event.index] = {"type": block.type, "id": block.id, "name": block.name,
                                                   "input": getattr(block, "input", None)}
                            json_parts[event.index] = []
                            if block.type == "server_tool_use":
                                call.emit(ev.AgentToolCall(exp=call.exp, name=block.name, summary="(on the server)",
                                                           role=call.role))
                        elif block.type == "text":
                            blocks[event.index] = {"type": "text", "text": block.text or ""}
                        elif block.type in SERVER_TOOL_BLOCKS:
                            # A server tool's result arrives whole; it goes back as it came.
                            blocks[event.index] = block.to_dict()
                        # Other blocks (a local model's `thinking`) are not sent back: no
                        # thinking was asked for, and a partial block would be refused.
                    elif kind == "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta" and event.index in blocks:
                            blocks[event.index]["text"] += delta.text
                            if delta.text:
                                call.emit(ev.AgentText(exp=call.exp, text=delta.text, role=call.role))
                        elif delta.type == "input_json_delta" and event.index in json_parts:
                            json_parts[event.index].append(delta.partial_json)
                    elif kind == "message_delta":
                        stop_reason = event.delta.stop_reason
                        usage = merge_final_usage(usage, event.usage)
                        server = getattr(event.usage, "server_tool_use", None)
                        searches = int(getattr(server, "web_search_requests", None) or 0)
                    elif kind == "message_stop":
                        finished = True
            finally:
                await stream.close()
            if not finished:
                raise StreamIncomplete("the response stream ended before message_stop")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise AttemptFailed(exc, usage) from exc

        content: list[dict[str, Any]] = []
        calls: list[ToolCall] = []
        for index in sorted(blocks):
            block = blocks[index]
            if block["type"] in ("tool_use", "server_tool_use"):
                parsed = parse_tool_input(ToolCall(id=block["id"], name=block["name"], input={}),
                                          "".join(json_parts.get(index, [])), block.get("input"))
                if block["type"] == "tool_use":
                    calls.append(parsed)
                    content.append(parsed.param())
                else:
                    content.append({**parsed.param(), "type": "server_tool_use"})
            elif block["type"] == "text":
                if block["text"]:
                    content.append(block)
            else:
                content.append(block)
        return Reply(content, calls, stop_reason, usage or TokenUsage(), searches)

    def classify(self, exc: BaseException) -> Verdict:
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code
            kind = exc.type or ""
            code = exc.error_code or ""
            detail = self.redact(one_line(exc.api_message or str(exc.body or exc.message)))
            label = f"{status} {kind}".strip() if status != 200 else kind or "error"
            if status == 402 or "spend_limit" in code or kind == "billing_error":
                return Verdict(FATAL, f"spend limit reached ({label}): {detail}; raise the limit, then resume")
            if status == 200:
                # An error event inside an accepted stream.
                if kind in FATAL_STREAM_ERRORS:
                    return Verdict(FATAL, f"API error during the response ({label}): {detail}")
                return Verdict(RETRY, f"{kind or 'an error'} during the response")
            if status == 429:
                return Verdict(RATE_LIMITED, f"{label}: {detail}", retry_after(exc.response.headers))
            if status in RETRYABLE_STATUS or status >= 500:
                return Verdict(RETRY, f"{label}: {detail}", retry_after(exc.response.headers))
            if status == 401:
                return Verdict(FATAL, f"the API rejected the key ({label}): {detail}; fix ANTHROPIC_API_KEY, then resume")
            if status == 403:
                return Verdict(FATAL, f"the key may not use this model ({label}): {detail}")
            if status in (404, 405) and "model" not in detail.lower():
                return Verdict(FATAL, f"{self.base_url.rstrip('/')} does not speak the Anthropic Messages API ({label} on "
                                      f"/v1/messages); for an OpenAI-compatible server use --agent openai "
                                      f"or openai-chat:MODEL@URL")
            return Verdict(FATAL, f"the API refused the request ({label}): {detail}")
        if isinstance(exc, anthropic.APITimeoutError):
            return Verdict(RETRY, "the request timed out")
        if isinstance(exc, (anthropic.APIConnectionError, httpx2.TransportError)):
            return Verdict(RETRY, f"connection error: {self.redact(one_line(str(exc) or type(exc).__name__))}")
        if isinstance(exc, StreamIncomplete):
            return Verdict(RETRY, str(exc))
        if isinstance(exc, anthropic.CredentialsError):
            return Verdict(FATAL, f"Anthropic credentials: {self.redact(one_line(str(exc)))}")
        if isinstance(exc, anthropic.APIResponseValidationError):
            return Verdict(RETRY, "the API sent a response that could not be read")
        # Anything else is a bug or a broken server, not an outage: stop, say what.
        return Verdict(FATAL, f"unexpected error talking to the API: {type(exc).__name__}: "
                              f"{self.redact(one_line(str(exc)))}")


# --- helpers -------------------------------------------------------------------


def usage_from(api_usage: Any) -> TokenUsage:
    """The usage in `message_start`: input-side counts are final, output is a placeholder."""
    total_write = getattr(api_usage, "cache_creation_input_tokens", None) or 0
    split = getattr(api_usage, "cache_creation", None)
    write_1h = _split_value(split, "ephemeral_1h_input_tokens")
    write_5m = _split_value(split, "ephemeral_5m_input_tokens")
    if split is None:
        # No TTL split reported: the API's default TTL is five minutes.
        write_5m, write_1h = total_write, 0
    elif write_5m + write_1h != total_write:
        write_5m = max(0, total_write - write_1h)
    return TokenUsage(
        input_tokens=getattr(api_usage, "input_tokens", None) or 0,
        output_tokens=getattr(api_usage, "output_tokens", None) or 0,
        cache_write_5m_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
        cache_read_tokens=getattr(api_usage, "cache_read_input_tokens", None) or 0,
    )


def _split_value(split: Any, name: str) -> int:
    if split is None:
        return 0
    value = split.get(name) if isinstance(split, dict) else getattr(split, name, None)
    return int(value or 0)


def merge_final_usage(start: TokenUsage | None, delta_usage: Any) -> TokenUsage:
    """`message_delta` usage is cumulative: its counts replace those of
    `message_start`, never add to them; a count it omits keeps the start's value."""
    merged = TokenUsage() if start is None else TokenUsage(**vars(start))
    merged.output_tokens = getattr(delta_usage, "output_tokens", None) or 0
    if getattr(delta_usage, "input_tokens", None) is not None:
        merged.input_tokens = delta_usage.input_tokens
    if getattr(delta_usage, "cache_read_input_tokens", None) is not None:
        merged.cache_read_tokens = delta_usage.cache_read_input_tokens
    total_write = getattr(delta_usage, "cache_creation_input_tokens", None)
    if total_write is not None and total_write != merged.cache_write_5m_tokens + merged.cache_write_1h_tokens:
        split = getattr(delta_usage, "cache_creation", None)
        if split is not None:
            merged.cache_write_1h_tokens = _split_value(split, "ephemeral_1h_input_tokens")
        merged.cache_write_5m_tokens = max(0, total_write - merged.cache_write_1h_tokens)
    return merged
