"""`--agent hybrid`: the real SingleAgent against the local Messages API
server with scripted replies, the real Optuna sampler, a tiny target run as a
child process; the bandit that splits experiments between them; the
`proposer` column that says who proposed each."""

from __future__ import annotations

import math
from pathlib import Path

from ar_tui.agents.allocation import UCBBandit
from ar_tui.agents.single import SingleAgent
from ar_tui.agents.hybrid import SAMPLER, SAMPLER_MARK, STRUCTURE, HybridProposer
from ar_tui.agents.offline import OfflineProposer
from ar_tui.core.config import TargetConfig, load_target
from ar_tui.core.records.ledger import Ledger, LedgerRow, read_results
from tests.agents.test_offline import BOWL, drive, make_target, run_child
from tests.fake_messages_api import FakeMessagesAPI, edit, reply, run_experiment, text

KEY = "sk-ant-test-hybrid"

# Knobs that do nothing; every "# idea" line (a structural change) lowers the metric.
IDEAS = '''"""A target only structure improves."""
LEARNING_RATE = 0.01  # learning rate (unused)
WIDTH = 64  # model width (unused)

if __name__ == "__main__":
    ideas = sum(1 for line in open("train.py") if line.startswith("# idea"))
    print(f"val_bpb: {2.0 - 0.05 * ideas:.6f}")
'''


def structural_researcher(request):
    """A scripted Claude: one structural change (an `# idea` line at the top
    of train.py), then run_experiment."""
    if request.tool_results():
        return reply(run_experiment("a structural idea", rationale="structure"))
    count = request.text().count("a structural idea")
    return reply(text("Trying a structural change."),
                 edit("insert", path="train.py", insert_line=0, insert_text=f"# idea {count}\n"))


def test_the_bandit_prefers_improvement_per_cost_and_still_explores():
    bandit = UCBBandit(("a", "b"))
    assert bandit.choose() == "a"  # untried arms first, in order
    bandit.reward("a", 0.0, cost_usd=0.05, train_hours=0.01)
    assert bandit.choose() == "b"
    bandit.reward("b", 0.1, cost_usd=0.0, train_hours=0.01)
    chosen = []
    for _ in range(20):
        arm = bandit.choose()
        chosen.append(arm)
        bandit.reward(arm, 0.1 if arm == "b" else 0.0, cost_usd=0.05 if arm == "a" else 0.0, train_hours=0.01)
    assert chosen.count("b") > 15 and "a" in chosen  # mostly the improving arm; the other is not forgotten
    # The same improvement at a tenth of the cost is worth more.
    cheap = UCBBandit(("dear", "cheap"), exploration=0.0)
    cheap.reward("dear", 0.1, cost_usd=1.0, train_hours=0.0)
    cheap.reward("cheap", 0.1, cost_usd=0.1, train_hours=0.0)
    assert cheap.choose() == "cheap"
    # Training hours are a cost too: priced per hour.
    hours = UCBBandit(("slow", "fast"), usd_per_train_hour=2.0, exploration=0.0)
    hours.reward("slow", 0.1, cost_usd=0.0, train_hours=1.0)
    hours.reward("fast", 0.1, cost_usd=0.0, train_hours=0.1)
    assert hours.choose() == "fast"
    assert math.isclose(hours.stats["slow"].train_hours, 1.0)


async def run_hybrid(tmp_path: Path, source: str, steps: int):
    workspace, config = make_target(tmp_path / "target", source)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with FakeMessagesAPI() as api:
        api.responder = structural_researcher
        claude = SingleAgent(model="claude-sonnet-4-5", program="Improve val_bpb.", api_key=KEY,
                             base_url=api.base_url)
        hybrid = HybridProposer(claude, OfflineProposer(seed=0, search="optuna"))
        loop = await drive(hybrid, workspace, config, steps, run_child, run_dir=run_dir)
        requests = list(api.requests)
    return hybrid, loop, requests


def sides(loop) -> list[str]:
    return [row.proposer for row in loop.history[1:]]


async def test_allocation_shifts_toward_the_sampler_when_the_knobs_are_what_improves(tmp_path):
    hybrid, loop, requests = await run_hybrid(tmp_path, BOWL, 14)
    who = sides(loop)
    assert set(who) == {"offline", "claude"}  # both were tried
    assert who.count("offline") > 2 * who.count("claude")
    assert who[7:].count("offline") > who[7:].count("claude")
    assert loop.best < loop.history[0].metric - 0.1
    # Claude was told what the sampler found: its experiments, marked, with their values.
    last_claude = max(row.exp for row in loop.history if row.proposer == "claude")
    seen = [row for row in loop.history if row.proposer == "offline" and row.exp < last_claude]
    last = requests[-1].text()
    assert seen and all((SAMPLER_MARK + row.description)[:60] in last for row in seen)
    # The bandit rebuilt from the ledger says the same.
    bandit = hybrid.bandit(loop.contexts[-1])
    assert bandit.stats[SAMPLER].improvement > 0 and bandit.stats[STRUCTURE].improvement == 0
    assert bandit.stats[STRUCTURE].cost_usd > 0


async def test_allocation_shifts_toward_claude_when_structure_is_what_improves(tmp_path):
    hybrid, loop, _ = await run_hybrid(tmp_path, IDEAS, 12)
    who = sides(loop)
    assert set(who) == {"offline", "claude"}
    assert who.count("claude") > who.count("offline")
    assert who[6:].count("claude") > who[6:].count("offline")
    assert math.isclose(loop.best, 2.0 - 0.05 * who.count("claude"), abs_tol=1e-9)


async def test_a_resumed_hybrid_allocates_as_this_one_would(tmp_path):
    """The bandit holds nothing the ledger cannot give back."""
    hybrid, loop, _ = await run_hybrid(tmp_path, IDEAS, 6)
    fresh = HybridProposer(hybrid.structural, OfflineProposer(seed=0, search="optuna"))
    for ctx in loop.contexts:
        assert fresh.bandit(ctx).choose() == hybrid.bandit(ctx).choose()
    chosen = [hybrid.bandit(ctx).choose() for ctx in loop.contexts]
    assert [SAMPLER if p == "offline" else STRUCTURE for p in sides(loop)] == chosen


def test_the_ledger_records_who_proposed_each_experiment_and_reads_old_files(tmp_path: Path):
    ledger = Ledger(tmp_path, "val_bpb")
    ledger.append(LedgerRow(commit="abc1234", metric=1.0, memory_gb=None, status="keep", description="baseline",
                            exp=0))
    ledger.append(LedgerRow(commit="abc1235", metric=0.9, memory_gb=None, status="keep",
                            description="LR 0.1 -> 0.2", exp=1, proposer="offline"))
    header = (tmp_path / "results.tsv").read_text().splitlines()[0].split("\t")
    assert "proposer" in header  # (the last column then; gpu_usd came after it)
    _, rows, _ = read_results(tmp_path / "results.tsv")
    assert [row.proposer for row in rows] == ["", "offline"]
    # A results.tsv from before the column (and the original's five columns) still reads.
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.tsv").write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
                                     "abc1234\t1.000000\t0.0\tkeep\tbaseline\n")
    _, rows, torn = read_results(old / "results.tsv")
    assert not torn and rows[0].proposer == "" and rows[0].description == "baseline"


def test_agent_hybrid_is_registered_and_its_sampler_options_are_stored(monkeypatch):
    from ar_tui.agents.registry import ProposerSettings, make_proposer
    from ar_tui.cli import build_parser, given_options

    args = build_parser().parse_args(["run", "--agent", "hybrid", "--offline-search", "optuna", "--sampler", "cmaes",
                                      "--seed", "7"])
    given = given_options(args)
    assert given["agent"] == "hybrid" and given["extra"] == {"offline_search": "optuna", "sampler": "cmaes"}
    settings = ProposerSettings(model="claude-sonnet-4-5", program="Improve val_bpb.", base_url="http://127.0.0.1:9",
                                seed=7, extra=given["extra"])
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    proposer = make_proposer("hybrid", settings)
    assert isinstance(proposer, HybridProposer) and isinstance(proposer.structural, SingleAgent)
    sampler = proposer.sampler
    assert (sampler.search, sampler.sampler, sampler.seed) == ("optuna", "cmaes", 7)
    default = make_proposer("offline", ProposerSettings(model="m"))
    assert isinstance(default, OfflineProposer) and default.search is None  # the target's, else the default
    assert default.search_for(TargetConfig(root=Path("."))) == ("classic", "tpe")


def test_the_default_search_is_the_targets_own_and_a_given_one_wins(tmp_path):
    """`[offline] search` in autoresearch.toml is the default for that target
    (the measured winner there); --offline-search overrides it; a target
    without the table gets DEFAULT_SEARCH; a bad value is one clear line."""
    import asyncio

    import pytest

    from ar_tui.agents.offline import DEFAULT_SEARCH
    from ar_tui.core.config import ConfigError
    from ar_tui.core.proposer import ProposalContext, ProposalFailed, ResultRow

    root = tmp_path / "t"
    workspace, _ = make_target(root, BOWL)
    (root / "autoresearch.toml").write_text('[offline]\nsearch = "optuna"\nsampler = "cmaes"\n')
    config = load_target(root)
    assert OfflineProposer().search_for(config) == ("optuna", "cmaes")
    assert OfflineProposer(search="classic").search_for(config) == ("classic", "cmaes")
    assert OfflineProposer(sampler="tpe").search_for(config) == ("optuna", "tpe")
    assert OfflineProposer().search_for(TargetConfig(root=root)) == (DEFAULT_SEARCH, "tpe")

    # A proposal really goes through the search the target names: Optuna's
    # study journal appears in the run dir, and none with classic.
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ctx = ProposalContext(exp=1, target=config, best_metric=1.0, baseline_metric=1.0,
                          history=[ResultRow(0, "0" * 7, 1.0, "keep", "baseline")], run_dir=run_dir)
    asyncio.run(OfflineProposer().propose(ctx, workspace, lambda event: None))
    assert (run_dir / "offline-study.journal").is_file()

    (root / "autoresearch.toml").write_text('[offline]\nsearch = "bayes"\n')
    with pytest.raises(ProposalFailed, match=r"\[offline\].*unknown offline search 'bayes'"):
        OfflineProposer().search_for(load_target(root))
    (root / "autoresearch.toml").write_text('[offline]\nsearhc = "optuna"\n')
    with pytest.raises(ConfigError, match="searhc"):
        load_target(root)


def test_the_forecast_example_names_the_search_that_won_there():
    examples = Path(__file__).resolve().parents[2] / "examples"
    assert load_target(examples / "forecast").offline == {"search": "optuna"}
    assert load_target(examples.parent / "nanochat").offline == {}
