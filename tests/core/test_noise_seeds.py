"""The harness owns the seed: one per run, and a change to the seed alone is refused."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

from ar_tui.agents.offline.knobs import find_knobs
from ar_tui.core.seeds import next_attempt, seed_for, seed_only_refusal

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """\
    import os, random
    import torch
    SEED = int(os.environ.get("AR_SEED", "1337"))  # the fallback seed
    LR = 0.04  # learning rate
    random.seed(SEED)
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    """
)


def test_every_run_of_a_night_has_its_own_reproducible_seed() -> None:
    seeds = {seed_for(exp, attempt) for exp in range(200) for attempt in range(1, 10)}
    assert len(seeds) == 200 * 9
    assert seed_for(12, 3) == seed_for(12, 3) == 12003
    assert all(0 <= s < 2**31 for s in seeds)
    assert next_attempt(0, [seed_for(0, 1), seed_for(0, 2), seed_for(7, 4), None]) == 3
    assert next_attempt(5, []) == 1


def _edit(old: str, new: str) -> str | None:
    return seed_only_refusal({"train.py": SCRIPT}, {"train.py": SCRIPT.replace(old, new)})


def test_a_change_to_the_seed_alone_is_refused_with_a_reason() -> None:
    for old, new in [
        ('SEED = int(os.environ.get("AR_SEED", "1337"))', "SEED = 42"),
        ('SEED = int(os.environ.get("AR_SEED", "1337"))', 'SEED = int(os.environ.get("AR_SEED", "7"))'),
        ("torch.manual_seed(SEED)", "torch.manual_seed(SEED + 1)"),
        ("random.seed(SEED)", "random.seed(1234)"),
        ("torch.Generator().manual_seed(SEED)", "torch.Generator().manual_seed(3)"),
    ]:
        reason = _edit(old, new)
        assert reason is not None and "only alters the random seed in train.py" in reason and "AR_SEED" in reason, new
    layout = _edit("LR = 0.04  # learning rate", "LR = 0.04   # the learning rate")
    assert layout is not None and "comments or layout" in layout


def test_a_real_change_is_allowed_even_beside_a_seed_change() -> None:
    assert _edit("LR = 0.04", "LR = 0.05") is None
    assert seed_only_refusal({"train.py": SCRIPT},
                             {"train.py": SCRIPT.replace("LR = 0.04", "LR = 0.05").replace("random.seed(SEED)",
                                                                                          "random.seed(1)")}) is None
    # Files that are not Python, new files and scripts that do not parse go to training as before.
    assert seed_only_refusal({"a.cfg": "seed=1"}, {"a.cfg": "seed=2"}) is None
    assert seed_only_refusal({"new.py": None}, {"new.py": "SEED = 1"}) is None
    assert seed_only_refusal({"train.py": SCRIPT}, {"train.py": SCRIPT + "def (:\n"}) is None


def test_the_bundled_target_reads_its_seed_from_the_harness() -> None:
    source = (ROOT / "nanochat" / "train.py").read_text()
    seed = next(node for node in ast.parse(source).body if isinstance(node, ast.Assign)
                and getattr(node.targets[0], "id", "") == "SEED")
    assert "AR_SEED" in ast.unparse(seed.value)
    # The seed is not a knob the offline search turns.
    assert "SEED" not in {knob.name for knob in find_knobs("train.py", source)}
