"""The single agent: one model, one short conversation per experiment.

It is shown program.md, the files and the results so far (`llm/prompt.py`),
edits the editable files, and ends by calling `run_experiment`. Replies are
streamed, so text and tool calls become engine events as they arrive. The
model is any `ModelClient`: `--agent claude` speaks the Anthropic Messages
API, `--agent openai` OpenAI Chat Completions.
"""

from __future__ import annotations

from ar_tui.agents.llm import make_model_client
from ar_tui.agents.llm.client import AgentConfigError, Call, Meter, ModelClient
from ar_tui.agents.llm.loop import editor_kind, worker_loop
from ar_tui.core.proposer import Emit, Proposal, ProposalContext
from ar_tui.core.workspace import Workspace

# The agent's name (`--agent`, the run's record) for each API.
AGENT_NAMES = {"anthropic": "claude", "openai-chat": "openai"}


class SingleAgent:
    def __init__(
        self,
        *,
        model: str,
        program: str,
        api: str = "anthropic",
        api_key: str | None = None,
        base_url: str | None = None,
        max_tool_calls: int = 30,
        max_tokens: int = 8192,
        prices: dict | None = None,
        retry_base_s: float = 1.0,
        retry_cap_s: float = 60.0,
        editor_tool: str | None = None,
        client: ModelClient | None = None,  # given: used as it is (the other settings are its own)
    ) -> None:
        if max_tool_calls < 1 or max_tokens < 1:
            raise AgentConfigError("max_tool_calls and max_tokens must be at least 1")
        self.client = client or make_model_client(api, model=model, api_key=api_key, base_url=base_url,
                                                  prices=prices, retry_base_s=retry_base_s,
                                                  retry_cap_s=retry_cap_s)
        self.name = AGENT_NAMES.get(self.client.api, self.client.api)
        self.model = self.client.model
        self.program = program
        self.max_tool_calls = max_tool_calls
        self.max_tokens = max_tokens
        self.editor_tool = editor_kind(self.client, editor_tool)

    @property
    def base_url(self) -> str:
        return self.client.base_url

    async def propose(self, ctx: ProposalContext, workspace: Workspace, emit: Emit) -> Proposal:
        call = Call(exp=ctx.exp, role="agent", emit=emit, meter=Meter(ctx.spent_usd, ctx.budget_usd),
                    gate=ctx.gate, prices=dict(getattr(ctx.target, "prices", {})))
        loop = worker_loop(self.client, call, ctx, workspace, self.program, editor=self.editor_tool,
                           max_tool_calls=self.max_tool_calls, max_tokens=self.max_tokens)
        return await loop.run()

