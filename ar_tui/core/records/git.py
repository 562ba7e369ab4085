"""Everything ar-tui does with git, behind one small class.

Experiments live on branch `autoresearch/<tag>` and run in worktrees under the
run dir, so the user's checked-out tree and other branches are never touched.
The branch tip is the best kept state at every moment.

GitPython blocks, so the engine calls these methods through
`asyncio.to_thread`.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
from pathlib import Path

import git

from ar_tui.core.errors import UserError
from ar_tui.core.records.target_data import link_data

GIT_ERRORS = (git.exc.GitError, git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError, OSError, ValueError)

# Commits made by ar-tui need an identity even on a machine with no git config.
COMMIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "ar-tui",
    "GIT_AUTHOR_EMAIL": "ar-tui@localhost",
    "GIT_COMMITTER_NAME": "ar-tui",
    "GIT_COMMITTER_EMAIL": "ar-tui@localhost",
}


class GitError(UserError):
    """A git problem the user must fix; the message is one line."""


def git_failure(exc: BaseException) -> str | None:
    """A failed git command as one line (the command and git's first line
    of complaint: GitPython's own text spans many); None when `exc` is not
    git's."""
    if isinstance(exc, git.exc.GitCommandError):
        stderr = str(exc.stderr or "").strip().removeprefix("stderr:").strip().strip("'")
        complaint = next((line.strip() for line in stderr.splitlines() if line.strip()), f"exit code {exc.status}")
        command = exc.command if isinstance(exc.command, (list, tuple)) else str(exc.command).split()
        verb = next((str(part) for part in command[1:] if not str(part).startswith("-")), "")
        return f"git {verb} failed: {complaint}"[:300]
    if isinstance(exc, git.exc.GitError):
        return f"git failed: {next(iter(str(exc).splitlines()), type(exc).__name__)}"[:300]
    return None


class GitRepo:
    def __init__(self, target_dir: Path, tag: str) -> None:
        target_dir = Path(target_dir).resolve()
        if not target_dir.is_dir():
            raise GitError(f"{target_dir}: target directory does not exist")
        try:
            self.repo = git.Repo(target_dir, search_parent_directories=True)
        except (git.exc.InvalidGitRepositoryError, git.exc.NoSuchPathError):
            raise GitError(f"{target_dir}: not a git repository (run `git init` and commit the target first)") from None
        if self.repo.bare or self.repo.working_tree_dir is None:
            raise GitError(f"{target_dir}: a bare repository has no files to experiment on")
        self.toplevel = Path(self.repo.working_tree_dir).resolve()
        # The target may be a folder inside a larger repository.
        self.subdir = target_dir.relative_to(self.toplevel).as_posix()
        if self.subdir == ".":
            self.subdir = ""
        self.tag = tag
        # Target-relative paths a reset keeps (caches the target declares).
        self.keep: list[str] = []
        # The target's [target] data: linked into every worktree and export
        # from `data_root` (the user's checkout), never added, never cleaned.
        self.data: list[str] = []
        self.data_root: Path | None = None
        self.branch = f"autoresearch/{tag}"
        try:
            self.repo.git.check_ref_format("--branch", self.branch)
        except git.exc.GitCommandError:
            raise GitError(f"{tag!r} is not a valid tag for a git branch name") from None

    def _pathspec(self) -> list[str]:
        return ["--", self.subdir or "."]

    def _prefixed(self, path: str) -> str:
        return f"{self.subdir}/{path}" if self.subdir else path

    def _add_all(self, wt: git.Repo, *flags: str) -> None:
        """`git add --all` on the target, its data links taken back out of
        the index (an exclude pathspec would not do: git refuses one that
        names an ignored path, and a `data/x/` ignore rule does not cover a
        link named `data/x`)."""
        wt.git.add(*flags, "--all", *self._pathspec())
        if self.data:
            wt.git.rm("--cached", "-r", "-q", "--ignore-unmatch", "--", *(self._prefixed(rel) for rel in self.data))

    def _link_data(self, target_dir: Path) -> None:
        if self.data and self.data_root is not None:
            link_data(target_dir, self.data_root, self.data)

    def head_commit(self) -> str:
        try:
            return self.repo.head.commit.hexsha
        except ValueError:
            raise GitError(f"{self.toplevel}: the repository has no commits yet; commit the target first") from None

    def check_clean(self) -> None:
        """Refuse a target with uncommitted changes to tracked files."""
        status = self.repo.git.status("--porcelain", "--untracked-files=no", *self._pathspec())
        if status.strip():
            first = status.strip().splitlines()[0]
            raise GitError(
                f"{self.toplevel}: uncommitted changes in the target ({first.strip()} ...); commit or stash them first"
            )

    def branch_exists(self) -> bool:
        return f"refs/heads/{self.branch}" in {ref.path for ref in self.repo.references}

    def branch_tip(self) -> str:
        return self.repo.git.rev_parse(f"refs/heads/{self.branch}")

    def create_branch(self, commit: str) -> None:
        self.repo.git.branch(self.branch, commit)

    def advance_branch(self, new: str, old: str) -> None:
        """Move the branch from `old` to `new`, refusing if someone else moved it."""
        self.repo.git.update_ref(f"refs/heads/{self.branch}", new, old)

    def set_branch(self, new: str) -> None:
        self.repo.git.update_ref(f"refs/heads/{self.branch}", new)

    # Several tips: a population strategy keeps every node that may still be
    # chosen as a parent as a ref outside refs/heads, so `git branch` stays
    # readable and git never collects the commit while it may be built on.

    @property
    def nodes_prefix(self) -> str:
        return f"refs/ar-tui/{self.tag}/nodes/"

    def set_node(self, exp: int, commit: str) -> None:
        self.repo.git.update_ref(f"{self.nodes_prefix}{exp}", commit)

    def drop_node(self, exp: int) -> None:
        with contextlib.suppress(git.exc.GitCommandError):
            self.repo.git.update_ref("-d", f"{self.nodes_prefix}{exp}")

    def nodes(self) -> dict[int, str]:
        """Experiment number -> commit, for every node ref of this run."""
        out = self.repo.git.for_each_ref("--format=%(refname) %(objectname)", self.nodes_prefix)
        found: dict[int, str] = {}
        for line in out.splitlines():
            name, _, commit = line.partition(" ")
            tail = name[len(self.nodes_prefix):]
            if tail.isdigit():
                found[int(tail)] = commit
        return found

    def resolve(self, rev: str) -> str:
        return self.repo.git.rev_parse("--verify", f"{rev}^{{commit}}")

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        try:
            self.repo.git.merge_base("--is-ancestor", ancestor, descendant)
            return True
        except git.exc.GitCommandError:
            return False

    def ensure_worktree(self, path: Path, commit: str) -> Path:
        """A detached worktree at `commit`; reused when it already exists.
        Returns the target directory inside it."""
        path = Path(path)
        if path.exists():
            try:
                wt = git.Repo(path)
                if Path(wt.git.rev_parse("--show-toplevel")).resolve() == path.resolve():
                    self.reset(path, commit)
                    return self.target_in(path)
            except GIT_ERRORS:
                pass
            shutil.rmtree(path, ignore_errors=True)
        self.repo.git.worktree("prune")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.repo.git.worktree("add", "--detach", "--force", str(path), commit)
        self._link_data(self.target_in(path))
        return self.target_in(path)

    def target_in(self, worktree: Path) -> Path:
        return Path(worktree) / self.subdir if self.subdir else Path(worktree)

    def remove_worktree(self, path: Path) -> None:
        try:
            self.repo.git.worktree("remove", "--force", str(path))
        except git.exc.GitCommandError:
            shutil.rmtree(path, ignore_errors=True)
            self.repo.git.worktree("prune")

    def reset(self, worktree: Path, commit: str) -> None:
        wt = git.Repo(worktree)
        wt.git.reset("--hard", "--quiet", commit)
        self.clean(worktree)

    def clean(self, worktree: Path) -> None:
        """Remove what a run created in `worktree`, ignored files included,
        apart from the caches the target declares. Writes nothing, so it
        works on a full disk and gives a crashed run's space back."""
        wt = git.Repo(worktree)
        prefix = f"{self.subdir}/" if self.subdir else ""
        wt.git.clean("-ffdx", "--quiet", *(f"--exclude=/{prefix}{path}" for path in self.keep + self.data),
                     *self._pathspec())
        # Whatever the run did to the data links, the next run finds them as they were.
        self._link_data(self.target_in(worktree))

    def export(self, commit: str, dest: Path) -> Path:
        """The target's files exactly as committed at `commit`, in the new dir
        `dest` (no worktree metadata, nothing untracked); returns the target
        dir inside it."""
        archive = io.BytesIO()
        self.repo.archive(archive, commit, format="tar", path=self.subdir or ".")
        archive.seek(0)
        Path(dest).mkdir(parents=True)
        with tarfile.open(fileobj=archive) as tar:
            # The "data" filter refuses links and paths that leave `dest`.
            tar.extractall(dest, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        self._link_data(self.target_in(dest))
        return self.target_in(dest)

    def diff(self, worktree: Path, base: str) -> str:
        """The worktree's changes to the target against `base`, new files included."""
        wt = git.Repo(worktree)
        self._add_all(wt, "--intent-to-add")
        return wt.git.diff(base, "--no-color", "--no-ext-diff", *self._pathspec()) + "\n"

    def changed_files(self, diff: str) -> list[str]:
        """Target-relative paths a diff touches."""
        files: list[str] = []
        prefix = f"{self.subdir}/" if self.subdir else ""
        for line in diff.splitlines():
            if line.startswith("diff --git "):
                parts = line.split(" b/", 1)
                if len(parts) == 2:
                    path = parts[1]
                    files.append(path[len(prefix):] if prefix and path.startswith(prefix) else path)
        return files

    def apply(self, worktree: Path, diff: str) -> str | None:
        """Apply `diff` to the worktree; returns None on success, else git's complaint."""
        if not diff.strip():
            return None
        wt = git.Repo(worktree)
        patch_file = Path(wt.git.rev_parse("--absolute-git-dir")) / "ar-tui.patch"
        patch_file.write_text(diff, encoding="utf-8")
        try:
            wt.git.apply("--check", "--whitespace=nowarn", str(patch_file))
            wt.git.apply("--whitespace=nowarn", str(patch_file))
            return None
        except git.exc.GitCommandError as exc:
            return (exc.stderr or str(exc)).strip().replace("stderr: ", "")[:2000]
        finally:
            patch_file.unlink(missing_ok=True)

    def commit(self, worktree: Path, message: str) -> str:
        wt = git.Repo(worktree)
        self._add_all(wt)
        with wt.git.custom_environment(**{k: os.environ.get(k, v) for k, v in COMMIT_IDENTITY.items()}):
            wt.git.commit("--quiet", "--no-verify", "--allow-empty", "-m", message)
        return wt.head.commit.hexsha

    # ------------------------------------------------------------------ a finished night's changes

    def change_of(self, commit: str) -> tuple[str, str]:
        """The parent of `commit` and the target's diff from it: the change the
        commit made to the code it was built on."""
        parent = self.repo.git.rev_parse(f"{commit}^")
        return parent, self.repo.git.diff(parent, commit, "--no-color", "--no-ext-diff", *self._pathspec()) + "\n"

    def apply_3way(self, worktree: Path, diff: str) -> str | None:
        """Apply `diff`, merging on the blobs it was made against when its
        context has moved (a change taken out from under it); None on success,
        else git's complaint, with the worktree put back as it was."""
        failure = self.apply(worktree, diff)
        if failure is None:
            return None
        wt = git.Repo(worktree)
        patch_file = Path(wt.git.rev_parse("--absolute-git-dir")) / "ar-tui-3way.patch"
        patch_file.write_text(diff, encoding="utf-8")
        try:
            wt.git.apply("--3way", "--whitespace=nowarn", str(patch_file))
            if wt.git.diff("--name-only", "--diff-filter=U").strip():
                raise git.exc.GitCommandError("apply", 1, b"conflicts")
            return None
        except git.exc.GitCommandError as exc:
            wt.git.reset("--hard", "--quiet")
            return (exc.stderr or str(exc)).strip().replace("stderr: ", "")[:2000] or failure
        finally:
            patch_file.unlink(missing_ok=True)

    def set_named_branch(self, name: str, commit: str) -> None:
        self.repo.git.update_ref(f"refs/heads/{name}", commit)

    def named_branch_tip(self, name: str) -> str | None:
        try:
            return self.repo.git.rev_parse("--verify", f"refs/heads/{name}")
        except git.exc.GitCommandError:
            return None

    def same_target(self, a: str, b: str) -> bool:
        """Whether two commits hold the same target files."""
        return not self.repo.git.diff("--name-only", a, b, *self._pathspec()).strip()

    def commit_message(self, commit: str) -> str:
        return self.repo.git.log("-1", "--format=%B", commit)
