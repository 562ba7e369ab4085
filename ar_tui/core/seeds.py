"""The harness owns the seed.

Every run of a training script gets its seed from ar-tui in `AR_SEED`, so the
engine's repeats (the baseline's runs, re-runs of a candidate, re-measures of
the best) are seed-varied and measure the noise a code change re-draws. The
seed of a run is a pure function of its experiment number and attempt: a
resumed run reproduces it, and no two runs of one night share one.

An agent that "improves" the metric by changing the seed has found luck, not a
better recipe (karpathy/autoresearch #131, #278). Such a change is refused
before it costs training time: `seed_only_refusal` compares the edited files
before and after with `ast`, seed values normalised, and says why.
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

SEED_ENV = "AR_SEED"
# Attempts of one experiment stay below this, so (exp, attempt) -> seed is one-to-one.
ATTEMPTS_PER_EXPERIMENT = 1000
SEED_MODULUS = 2**31 - 1  # torch, numpy and random all take seeds below 2**31


def seed_for(exp: int, attempt: int) -> int:
    """The seed of run `attempt` (1, 2, ...) of experiment `exp` (0 is the
    baseline): readable (exp 12, run 3 -> 12003) and distinct for every run."""
    if attempt < 1:
        raise ValueError(f"attempts count from 1, not {attempt}")
    if attempt >= ATTEMPTS_PER_EXPERIMENT:
        # Never reached by the engine's own limits; still a distinct, reproducible seed.
        digest = hashlib.sha256(f"ar-tui seed {exp} {attempt}".encode()).digest()
        return int.from_bytes(digest[:4], "big") % SEED_MODULUS
    return (exp * ATTEMPTS_PER_EXPERIMENT + attempt) % SEED_MODULUS


def _is_seed_name(name: str) -> bool:
    """`SEED`, `data_seed`, `manual_seed`, `seed_everything`, `randomSeed`."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return "seed" in re.split(r"[^a-z0-9]+", spaced.lower())


_SEED_PLACEHOLDER = "<seed>"


class _NormaliseSeeds(ast.NodeTransformer):
    """Replace every seed value with one placeholder: what is assigned to a
    seed-named variable, the arguments of a seed-named call, a seed-named
    keyword's value."""

    def _placeholder(self, node: ast.AST) -> ast.Constant:
        return ast.copy_location(ast.Constant(_SEED_PLACEHOLDER), node)

    def _assigns_seed(self, targets: list[ast.expr]) -> bool:
        for target in targets:
            for node in ast.walk(target):
                if isinstance(node, ast.Name) and _is_seed_name(node.id):
                    return True
                if isinstance(node, ast.Attribute) and _is_seed_name(node.attr):
                    return True
        return False

    def visit_Assign(self, node: ast.Assign) -> ast.AST:
        if self._assigns_seed(node.targets):
            node.value = self._placeholder(node.value)
            return node
        return self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None and self._assigns_seed([node.target]):
            node.value = self._placeholder(node.value)
            return node
        return self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.AST:
        if self._assigns_seed([node.target]):
            node.value = self._placeholder(node.value)
            return node
        return self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        node.func = self.visit(node.func)
        if _is_seed_name(name):
            node.args = [self._placeholder(arg) for arg in node.args]
            for keyword in node.keywords:
                keyword.value = self._placeholder(keyword.value)
            return node
        node.args = [self.visit(arg) for arg in node.args]
        for keyword in node.keywords:
            keyword.value = self._placeholder(keyword.value) if keyword.arg and _is_seed_name(keyword.arg) \
                else self.visit(keyword.value)
        return node


def _shape(source: str, normalise: bool) -> str | None:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    if normalise:
        tree = _NormaliseSeeds().visit(tree)
    return ast.dump(tree, annotate_fields=False)


def seed_only_refusal(before: dict[str, str | None], after: dict[str, str | None]) -> str | None:
    """Why a change must not be run, or None when it may.

    `before` and `after` map each file the change touches to its text (None
    when absent). A change is refused when every touched file is Python whose
    syntax tree is unchanged once seed values are normalised, and at least
    one of them differs only in a seed. A change to comments or layout alone
    is refused too: the only thing its run would measure is the new seed."""
    if not after:
        return None
    seed_files: list[str] = []
    for path in sorted(set(before) | set(after)):
        old, new = before.get(path), after.get(path)
        if old is None or new is None or not path.endswith(".py"):
            return None
        plain_old, plain_new = _shape(old, False), _shape(new, False)
        if plain_old is None or plain_new is None:
            return None
        if plain_old == plain_new:
            continue
        if _shape(old, True) != _shape(new, True):
            return None
        seed_files.append(path)
    if seed_files:
        return (f"the change only alters the random seed in {', '.join(seed_files)}: a new seed re-draws luck, "
                f"not a better recipe, and ar-tui already runs every experiment with its own seed ({SEED_ENV}); "
                "change the training itself")
    return "the change alters only comments or layout: its run would measure nothing but a new seed"


def read_texts(root: Path, paths: list[str]) -> dict[str, str | None]:
    """The text of each of `paths` under `root` (None when missing or not text)."""
    texts: dict[str, str | None] = {}
    for rel in paths:
        try:
            texts[rel] = (Path(root) / rel).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            texts[rel] = None
    return texts


def next_attempt(exp: int, used_seeds: list[int | None]) -> int:
    """The first attempt of experiment `exp` whose seed is not among `used_seeds`
    (a resumed confirmation continues where the last one stopped)."""
    attempts = [s % ATTEMPTS_PER_EXPERIMENT for s in used_seeds
                if s is not None and s // ATTEMPTS_PER_EXPERIMENT == exp]
    return max(attempts, default=0) + 1
