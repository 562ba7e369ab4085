"""What a repository is made of, read from its files and its git: the
training entry point, the files the agent may edit (full of module-level
constants), the files to protect (data preparation, evaluation), and the
data that git ignores and the script reads.

Every finding carries its reason (one line for `ar-tui init` to print) and
whether it is sure: where it is not, a terminal asks.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from ar_tui.agents.offline.knobs import Knob, find_knobs
from ar_tui.setup.found import Found

# An evaluation harness runs code it imports: the imported file is the one to edit.
_HARNESS = re.compile(r"^(?:bench|benchmark|backtest|score|scoring|eval|evaluate|evaluation|test|harness)\w*\.py$")
_PROTECT = re.compile(r"(?:^|_)(?:prepare|prep|preprocess|download|dataset|data|eval|evaluate|evaluation|score|"
                      r"scoring|metric|metrics|bench|benchmark|backtest|tokenizer)(?:_|\.py$)|^test_|_test\.py$|"
                      r"^conftest\.py$")
_ENTRY_WORDS = ("train", "run", "main", "experiment", "bench", "backtest", "score", "eval")
_NOT_ENTRY = re.compile(r"^(?:prepare|setup|conftest|test_|__init__|noxfile)|_test\.py$")
_DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".txt", ".npy", ".npz", ".parquet", ".bin", ".pkl")
# Environments, caches and editors: untracked, but never data the script reads.
_NOT_DATA = re.compile(r"(?:^|/)(?:\.venv|venv|env|\.env|__pycache__|\.pytest_cache|\.mypy_cache|\.ruff_cache|"
                       r"\.ipynb_checkpoints|node_modules|\.tox|\.nox|\.idea|\.vscode|\.git|build|dist|wandb|"
                       r"[^/]*\.egg-info|\.DS_Store)(?:/|$)|\.py[co]$|^autoresearch\.toml$")
CONFIG_FILES = ("autoresearch.toml",)


@dataclass
class Repository:
    root: Path
    tracked: list[str]
    entry: Found[str]  # the command
    entry_file: str | None  # the file it runs, when it is a Python file of the repository
    editable: Found[list[str]]
    protected: Found[list[str]]
    data: Found[list[str]]
    knobs: dict[str, list[Knob]] = field(default_factory=dict)


def git_lines(root: Path, *args: str) -> list[str]:
    result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60)
    return [line for line in result.stdout.splitlines() if line.strip()]


def _read(root: Path, rel: str) -> str:
    try:
        return (root / rel).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def parse_module(root: Path, rel: str) -> ast.Module | None:
    try:
        return ast.parse(_read(root, rel))
    except (SyntaxError, ValueError):
        return None


def knobs_of(root: Path, rel: str) -> list[Knob]:
    try:
        return find_knobs(rel, _read(root, rel))
    except (SyntaxError, ValueError):
        return []


def _has_main(tree: ast.Module | None) -> bool:
    return tree is not None and any(
        isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body)


def _module_command(spec: str) -> tuple[str, str]:
    """`pkg.train:main` -> the command that calls it, and the module."""
    module, _, func = spec.partition(":")
    module = module.strip()
    if not func:
        return f"python -m {module}", module
    return f"python -c 'import sys; from {module} import {func.strip()}; sys.exit({func.strip()}())'", module


def _module_file(tracked: list[str], module: str) -> str | None:
    base = module.replace(".", "/")
    for candidate in (f"{base}.py", f"src/{base}.py", f"{base}/__main__.py", f"src/{base}/__main__.py"):
        if candidate in tracked:
            return candidate
    return None


def find_entry(root: Path, tracked: list[str]) -> tuple[Found[str], str | None]:
    """The training command, and the Python file it runs."""
    if "train.py" in tracked:
        return Found("python train.py", "train.py is at the top of the repository"), "train.py"
    scripts = sorted(f for f in tracked if re.fullmatch(r"scripts/train[\w-]*\.py", f))
    if scripts:
        others = f" (also {', '.join(scripts[1:])})" if len(scripts) > 1 else ""
        return Found(f"python {scripts[0]}", f"{scripts[0]} is the training script in scripts/{others}",
                     sure=len(scripts) == 1), scripts[0]
    if "pyproject.toml" in tracked:
        try:
            project_scripts = tomllib.loads(_read(root, "pyproject.toml")).get("project", {}).get("scripts", {})
        except tomllib.TOMLDecodeError:
            project_scripts = {}
        if project_scripts:
            name = next((n for n in project_scripts if "train" in n), next(iter(project_scripts)))
            command, module = _module_command(str(project_scripts[name]))
            return (Found(command, f"[project.scripts] {name} = {project_scripts[name]!r} in pyproject.toml",
                          sure="train" in name or len(project_scripts) == 1),
                    _module_file(tracked, module))
    if "Makefile" in tracked:
        targets = re.findall(r"^([\w.-]+)\s*:(?!=)", _read(root, "Makefile"), re.MULTILINE)
        train = [t for t in targets if "train" in t]
        if train:
            return Found(f"make {train[0]}", f"the Makefile has a `{train[0]}` target"), None
    candidates = []
    for rel in tracked:
        name = os.path.basename(rel)
        if "/" in rel or not name.endswith(".py") or _NOT_ENTRY.search(name):
            continue
        words = [i for i, word in enumerate(_ENTRY_WORDS) if word in name]
        if words or _has_main(parse_module(root, rel)):
            candidates.append((min(words) if words else len(_ENTRY_WORDS), rel))
    if candidates:
        candidates.sort()
        rel = candidates[0][1]
        others = [c for _, c in candidates[1:]]
        return Found(f"python {rel}", f"{rel} is the top-level script most like an entry point"
                     + (f" (others: {', '.join(others)})" if others else ""), sure=not others), rel
    return Found("python train.py", "no entry point found; edit [target] run", sure=False), None


def local_imports(root: Path, rel: str, tracked: list[str]) -> list[str]:
    """The repository's own Python files that `rel` imports."""
    tree = parse_module(root, rel)
    if tree is None:
        return []
    here = os.path.dirname(rel)
    found: list[str] = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            base = name.replace(".", "/")
            for candidate in (f"{base}.py", f"{here}/{base}.py" if here else "", f"src/{base}.py",
                              f"{base}/__init__.py"):
                if candidate and candidate in tracked and candidate != rel and candidate not in found:
                    found.append(candidate)
    return found


def find_editable(root: Path, tracked: list[str], entry_file: str | None) -> tuple[Found[list[str]], bool]:
    """The files the agent edits, and whether the entry point is an
    evaluation harness (then it is protected, not edited)."""
    python_files = [f for f in tracked if f.endswith(".py")]
    if entry_file is not None:
        imported = [f for f in local_imports(root, entry_file, tracked)
                    if knobs_of(root, f) and not _PROTECT.search(os.path.basename(f))]
        if _HARNESS.match(os.path.basename(entry_file)) and imported:
            return Found(imported, f"{entry_file} is a harness: it runs {', '.join(imported)}, whose constants "
                                   "are the knobs"), True
        entry_knobs = knobs_of(root, entry_file)
        configs = [f for f in imported if re.search(r"config|hparam|param|setting", os.path.basename(f))]
        if entry_knobs:
            files = [entry_file] + configs
            return Found(files, f"{entry_file} holds {len(entry_knobs)} module-level constants"
                         + (f"; {', '.join(configs)} its settings" if configs else "")), False
        if configs or imported:
            files = configs or imported[:1]
            return Found(files, f"{entry_file} takes its constants from {', '.join(files)}"), False
    ranked = sorted(((len(knobs_of(root, f)), f) for f in python_files
                     if not _PROTECT.search(os.path.basename(f))), reverse=True)
    if ranked and ranked[0][0] > 0:
        return Found([ranked[0][1]], f"{ranked[0][1]} holds the most module-level constants ({ranked[0][0]})",
                     sure=False), False
    fallback = [entry_file] if entry_file else ["train.py"]
    return Found(fallback, "no file of constants found; the agent edits the entry point", sure=False), False


def string_literals(root: Path, files: list[str]) -> set[str]:
    literals: set[str] = set()
    for rel in files:
        tree = parse_module(root, rel)
        if tree is None:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and 0 < len(node.value) < 300:
                literals.add(os.path.normpath(node.value.strip()).lstrip("./") if node.value.strip() else "")
    literals.discard("")
    return literals


def find_protected(root: Path, tracked: list[str], entry_file: str | None, editable: list[str],
                   harness: bool) -> Found[list[str]]:
    """Data preparation and evaluation files near the entry point, the
    harness itself, and tracked data files they name."""
    places = {"", os.path.dirname(entry_file or "")}
    files = [f for f in tracked if f.endswith(".py") and f not in editable
             and (os.path.dirname(f) in places or f.split("/")[0].startswith("data"))
             and _PROTECT.search(os.path.basename(f))]
    if harness and entry_file and entry_file not in files:
        files.insert(0, entry_file)
    literals = string_literals(root, files + ([entry_file] if entry_file else []))
    named = {os.path.basename(lit) for lit in literals}
    files += [f for f in tracked if f.endswith(_DATA_SUFFIXES) and f not in files
              and (f in literals or os.path.basename(f) in named) and f not in editable]
    if not files:
        return Found([], "no data preparation or evaluation file found", sure=False)
    return Found(files, "data preparation and evaluation: a run must not change how it is scored")


def find_data(root: Path, tracked: list[str], read_by: list[str]) -> Found[list[str]]:
    """Untracked paths (git-ignored or not) that the script's own files name."""
    untracked = git_lines(root, "ls-files", "--others", "--directory", "--no-empty-directory", "--exclude-standard")
    ignored = git_lines(root, "ls-files", "--others", "--ignored", "--directory", "--no-empty-directory",
                        "--exclude-standard")
    candidates = [p.rstrip("/") for p in dict.fromkeys(ignored + untracked) if not _NOT_DATA.search(p.rstrip("/"))]
    literals = string_literals(root, read_by)
    names = {os.path.basename(lit) for lit in literals}

    def named(path: str) -> bool:
        return any(lit == path or lit.startswith(path + "/") or path.startswith(lit + "/") for lit in literals) \
            or os.path.basename(path) in names

    chosen = [p for p in candidates if named(p)]
    if not chosen:
        return Found([], "no untracked data that the script names")
    return Found(chosen, f"{', '.join(chosen)}: in the checkout, not in git, and named in {', '.join(read_by)}")


def discover(root: Path) -> Repository:
    root = Path(root).resolve()
    tracked = git_lines(root, "ls-files")
    entry, entry_file = find_entry(root, tracked)
    editable, harness = find_editable(root, tracked, entry_file)
    protected = find_protected(root, tracked, entry_file, editable.value, harness)
    read_by = list(dict.fromkeys(([entry_file] if entry_file else []) + editable.value + (
        local_imports(root, entry_file, tracked) if entry_file else [])))
    data = find_data(root, tracked, [f for f in read_by if f.endswith(".py")])
    knobs = {rel: knobs_of(root, rel) for rel in editable.value if rel.endswith(".py")}
    return Repository(root, tracked, entry, entry_file, editable, protected, data, knobs)
