"""Who is speaking: the agent pane labels a team's roles as they take turns."""

from __future__ import annotations

from ar_tui.core import events as ev
from ar_tui.ui.agent_pane import AgentPane


def test_the_agent_pane_names_each_role_when_the_speaker_changes():
    pane = AgentPane()
    pane.begin(ev.ProposalStarted(exp=1, base_commit="abc1234"))
    pane.add_text(ev.AgentText(exp=1, text="Ranking hypo", role="planner"))
    pane.add_text(ev.AgentText(exp=1, text="theses.", role="planner"))
    pane.add_tool_call(ev.AgentToolCall(exp=1, name="str_replace_based_edit_tool", summary="create notes.md",
                                        result="wrote notes.md", role="planner"))
    pane.add_text(ev.AgentText(exp=1, text="Lowering LR.", role="worker"))
    pane.add_tool_call(ev.AgentToolCall(exp=1, name="review", summary="review: approve", role="reviewer"))
    lines = pane._text.plain.splitlines()
    assert lines[1:] == ["[planner]", "Ranking hypotheses.",
                         "▸ str_replace_based_edit_tool create notes.md  → wrote notes.md",
                         "[worker]", "Lowering LR.", "[reviewer]", "▸ review review: approve"]


def test_the_single_agent_is_not_labelled():
    pane = AgentPane()
    pane.add_text(ev.AgentText(exp=1, text="Lowering LR."))
    assert pane._text.plain == "Lowering LR."
