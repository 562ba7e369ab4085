"""Where targets and run dirs live, and the bundled nanochat target.

The bundled target ships inside the package; experiments need it in a git
repository of its own, so on first use it is copied into one under the data
dir. The user's ar-tui checkout is never used as an experiment repository.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import git

from ar_tui.core.git import COMMIT_IDENTITY
from ar_tui.core.rundir import data_home, default_run_dir, runs_root  # noqa: F401  (the run-dir layout owns them)

BUNDLED_FILES = ("prepare.py", "train.py", "autoresearch.toml")


def bundled_source() -> Path:
    import nanochat

    return Path(nanochat.__file__).resolve().parent


def materialize_bundled() -> Path:
    """The git repository holding the bundled nanochat target: made once, and
    brought up to date on its main branch when ar-tui ships a newer version
    (experiment branches are never touched)."""
    repo_dir = data_home() / "targets" / "nanochat"
    if (repo_dir / ".git").exists():
        _update_bundled(repo_dir)
        return repo_dir
    source = bundled_source()
    staging = repo_dir.with_name("nanochat.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in BUNDLED_FILES:
        shutil.copy2(source / name, staging / name)
    (staging / ".gitignore").write_text("__pycache__/\n*.pt\n")
    repo = git.Repo.init(staging, initial_branch="main")
    repo.git.add("--all")
    with repo.git.custom_environment(**COMMIT_IDENTITY):
        repo.git.commit("--quiet", "-m", "nanochat target, as bundled with ar-tui")
    # Renamed into place only when complete, so an interrupted first run
    # never leaves a half-made repository behind.
    os.replace(staging, repo_dir)
    return repo_dir


def _update_bundled(repo_dir: Path) -> None:
    source = bundled_source()
    repo = git.Repo(repo_dir)
    if repo.head.is_detached or repo.active_branch.name != "main" or repo.is_dirty(untracked_files=False):
        return  # the user is working in it: leave it alone
    changed = [name for name in BUNDLED_FILES
               if (source / name).read_bytes() != (repo_dir / name).read_bytes()]
    if not changed:
        return
    for name in changed:
        shutil.copy2(source / name, repo_dir / name)
    repo.git.add(*changed)
    with repo.git.custom_environment(**COMMIT_IDENTITY):
        repo.git.commit("--quiet", "-m", f"nanochat target updated from ar-tui ({', '.join(changed)})")
