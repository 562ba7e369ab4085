"""Who is on a research team: `--team planner=M,worker=M,...,reviewer=M` or
autoresearch.toml's `[team]` table, parsed into a `TeamSpec`.

Each role names its model as `[API:]MODEL[@URL]` (`ar_tui.agents.llm.model_spec`);
a worker may instead be an agent CLI that does the work in a session of its
own: `worker=claude-code:MODEL`, `worker=codex:MODEL[@URL]`. A bad spec is
one line (`AgentConfigError`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ar_tui.agents.llm import model_spec
from ar_tui.agents.llm.client import AgentConfigError

ROLES = ("planner", "worker", "reviewer")
# A worker may be an agent CLI instead of a model: worker=claude-code:MODEL, worker=codex:MODEL@URL.
RUNTIMES = ("claude-code", "codex")


@dataclass(frozen=True)
class RoleModel:
    role: str
    model: str
    base_url: str | None = None  # None: --base-url, else the API's own default (ANTHROPIC_BASE_URL ...)
    api: str | None = None  # None: the Anthropic Messages API
    runtime: str | None = None  # an agent CLI that does the role's work (RUNTIMES); None: ar-tui's own loop

    def __str__(self) -> str:
        prefix = self.runtime or self.api
        return (f"{self.role}=" + (f"{prefix}:" if prefix else "") + self.model
                + (f"@{self.base_url}" if self.base_url else ""))


@dataclass
class TeamSpec:
    workers: list[RoleModel]
    planner: RoleModel | None = None
    reviewer: RoleModel | None = None

    def __str__(self) -> str:
        return ",".join(str(r) for r in [*([self.planner] if self.planner else []), *self.workers,
                                          *([self.reviewer] if self.reviewer else [])])


def _role_model(role: str, value: str, where: str) -> RoleModel:
    if not value.strip():
        raise AgentConfigError(f"{where}: {role} needs a model, e.g. {role}=claude-haiku-4-5")
    spec = model_spec(value, f"{where}: {role}")
    # An agent CLI is not a model API, so model_spec leaves its prefix in the model.
    runtime, colon, rest = spec.model.partition(":")
    if spec.api is None and colon and runtime in RUNTIMES:
        if role != "worker":
            raise AgentConfigError(f"{where}: only a worker can be an agent CLI ({runtime}), not the {role}")
        if not rest.strip():
            raise AgentConfigError(f"{where}: {role}={runtime}: needs a model, e.g. {role}={runtime}:MODEL")
        return RoleModel(role, rest.strip(), spec.base_url, runtime=runtime)
    return RoleModel(role, spec.model, spec.base_url, spec.api)


def parse_team(text: str) -> TeamSpec:
    """`planner=MODEL,worker=[API:]MODEL[@URL],worker=...,reviewer=MODEL`, API
    one of `ar_tui.agents.llm.MODEL_CLIENTS` (default anthropic), or a worker
    as `RUNTIME:MODEL[@URL]` (RUNTIMES); one line on error."""
    where = "--team"
    found: dict[str, list[RoleModel]] = {role: [] for role in ROLES}
    for part in (p for p in text.split(",") if p.strip()):
        role, sep, value = part.partition("=")
        role = role.strip()
        if not sep or role not in ROLES:
            raise AgentConfigError(f"{where}: {part.strip()!r} must be ROLE=MODEL with ROLE one of {', '.join(ROLES)}")
        found[role].append(_role_model(role, value, where))
    return _spec(found, where)


def team_from_table(table: dict[str, Any], where: str = "[team]") -> TeamSpec:
    """The `[team]` table of autoresearch.toml: planner = "m", worker = "m" or
    ["m1", "m2@http://host:port"], reviewer = "m"."""
    found: dict[str, list[RoleModel]] = {role: [] for role in ROLES}
    for role in ROLES:
        value = table.get(role)
        values = value if isinstance(value, list) else [value] if value is not None else []
        for item in values:
            if not isinstance(item, str):
                raise AgentConfigError(f"{where}: {role} must be a model name (or a list of them for worker)")
            found[role].append(_role_model(role, item, where))
    return _spec(found, where)


def _spec(found: dict[str, list[RoleModel]], where: str) -> TeamSpec:
    if not found["worker"]:
        raise AgentConfigError(f"{where}: name at least one worker, e.g. worker=claude-haiku-4-5")
    for role in ("planner", "reviewer"):
        if len(found[role]) > 1:
            raise AgentConfigError(f"{where}: one {role} only (worker may be given more than once)")
    return TeamSpec(workers=found["worker"], planner=(found["planner"] or [None])[0],
                    reviewer=(found["reviewer"] or [None])[0])
