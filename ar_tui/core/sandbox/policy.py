"""What a run of the target's code may touch: the policy half of the sandbox.

The training command, the trusted evaluator and a `prepare` that runs an
editable file are code the agent may have written a minute ago. Each runs
under a `SandboxPolicy` (enforced by a backend in `sandbox`): the system,
the interpreter and its packages readable; writable only the slot's worktree
and the run's scratch dir (its temp dir and checkpoint); not readable the run
dir (ledger, events, state, the control socket, other experiments' logs and
checkpoints), the other slots' worktrees, the home dir and credentials; no
network unless the target asks for it in `[sandbox]`.

`Confinement` is the one object that builds those policies and the child's
environment, on whichever machine the run happens: the engine's for the local
executor, a node's for a cluster executor (`Confinement.for_node`, from the
`NodeConfinement` that travels in a trial's plan).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import importlib.util
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ar_tui.core.sandbox.backends import (
    LINUX_SYSTEM_READ,
    MACOS_SYSTEM_READ,
    Sandbox,
    SandboxPolicy,
    path_under,
)

# Credentials never readable, even inside a path the target declares.
CREDENTIAL_PATHS = (
    "~/.ssh", "~/.gnupg", "~/.aws", "~/.azure", "~/.config/gcloud", "~/.kube", "~/.docker", "~/.netrc",
    "~/.git-credentials", "~/.config/gh", "~/.pypirc", "~/.anthropic", "~/.config/anthropic",
    "~/.config/ar-tui", "~/.huggingface", "~/.cache/huggingface/token", "~/.local/share/keyrings",
)
# Secrets of the machine itself (readable to root, and runs may run as root).
SYSTEM_SECRETS = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/ssh", "/etc/sudoers",
                  "/etc/sudoers.d")
GPU_DEVICE_GLOBS = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri")
# Inherited variables with these in their names are credentials: a run could
# print one into its log, which the agent reads. The target's own [target] env
# is passed whatever its names.
SECRET_ENV_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "APIKEY", "ACCESS_KEY", "CREDENTIAL",
                    "PRIVATE_KEY", "AUTH_SOCK")


def _real(path: str | Path) -> str:
    return os.path.realpath(os.path.expanduser(str(path)))


def interpreter_paths() -> list[str]:
    """The interpreter, its standard library and every installed package
    location, the editable installs of ar-tui and nanochat included."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(_real(sys.executable))}
    paths.update(p for p in sys.path if p and os.path.isabs(p))
    for package in ("ar_tui", "nanochat"):
        with contextlib.suppress(ImportError, ValueError):
            spec = importlib.util.find_spec(package)
            for location in (spec.submodule_search_locations or []) if spec else []:
                paths.add(location)
    return sorted({_real(p) for p in paths if os.path.exists(p)})


def target_python_paths(python: object) -> list[str]:
    """What the target's own interpreter needs to read: its environment, the
    interpreter it is made from, and uv with its cache when commands run
    through `uv run`. `python` is an ar_tui.core.interpreter.TargetPython."""
    paths = []
    executable = getattr(python, "executable", None)
    if executable is not None:
        for exe in {Path(executable), Path(_real(executable))}:
            paths.append(str(exe.parent.parent))  # bin/python -> the environment or installation
    for attr in ("project_env",):
        if getattr(python, attr, None) is not None:
            paths.append(str(getattr(python, attr)))
    uv = getattr(python, "uv", None)
    if uv is not None:
        paths.append(str(Path(_real(uv)).parent))
        import platformdirs

        paths.append(os.environ.get("UV_CACHE_DIR") or platformdirs.user_cache_dir("uv"))
    return [_real(p) for p in paths]


def dataset_cache() -> str:
    """Where the bundled target keeps its prepared data (AR_TUI_CACHE overrides)."""
    import platformdirs

    return _real(os.environ.get("AR_TUI_CACHE") or platformdirs.user_cache_dir("ar-tui"))


def gpu_devices() -> list[str]:
    return sorted({path for pattern in GPU_DEVICE_GLOBS for path in glob.glob(pattern)})


def secret_paths() -> list[str]:
    """Credentials and machine secrets: never readable, whatever is declared."""
    return sorted({_real(p) for p in CREDENTIAL_PATHS} | set(SYSTEM_SECRETS))


def hidden_paths(run_dir: Path, data_home: Path | None = None) -> list[str]:
    """What no confined command may read: the run dir, the data home (every
    run dir, the materialised targets), the home dir and the secrets. A
    path the policy allows beneath one of them (the slot's worktree inside the
    run dir, the interpreter inside the home dir) is given back; beneath a
    secret, nothing is."""
    hidden = {_real(run_dir), _real("~"), *secret_paths()}
    if data_home is not None:
        hidden.add(_real(data_home))
    return sorted(hidden)


@dataclass
class SandboxSettings:
    """The target's `[sandbox]` table, paths resolved."""

    network: bool = False
    read: list[str] = field(default_factory=list)
    write: list[str] = field(default_factory=list)
    keep: list[str] = field(default_factory=list)  # worktree paths a clean keeps (caches)


def make_policy(*, write: Sequence[str | Path], read: Sequence[str | Path] = (), hidden: Sequence[str],
                settings: SandboxSettings, write_declared: bool = True) -> SandboxPolicy:
    """The policy of one command: the system and the interpreter readable,
    `read` and the target's `[sandbox] read` readable, `write` and (when
    `write_declared`) the target's `[sandbox] write` writable."""
    system = LINUX_SYSTEM_READ if sys.platform.startswith("linux") else MACOS_SYSTEM_READ
    secrets = secret_paths()
    declared = [_real(p) for p in settings.read]
    # An interpreter path that holds the home dir or the run dir (PYTHONPATH=~)
    # would give them back: only a path the target declares may do that.
    automatic = [p for p in interpreter_paths() if not any(path_under(h, p) for h in hidden)]
    readable = [p for p in system if os.path.lexists(p)] + automatic + [_real(p) for p in read] + declared
    writable = [_real(p) for p in write] + ([_real(p) for p in settings.write] if write_declared else [])

    def allowed(path: str) -> bool:
        return os.path.lexists(path) and not any(path_under(path, s) for s in secrets)

    writable = [p for p in dict.fromkeys(writable) if allowed(p)]
    readable = [p for p in dict.fromkeys(readable) if allowed(p) and p not in writable]
    return SandboxPolicy(read=tuple(readable), write=tuple(writable), hidden=tuple(hidden),
                         network=settings.network, devices=tuple(gpu_devices()))


def confined_env(env: dict[str, str], scratch: "RunScratch", revealing: Sequence[str | Path],
                 tmp: Path | None = None, declared: Sequence[str] = ()) -> dict[str, str]:
    """The child's environment: nothing that names the run dir or the data home
    (`revealing`), no inherited credential (names with SECRET_ENV_WORDS,
    unless `declared` by the target), no relative search path (it would
    resolve in the worktree), and a home and temp dir of its own in the
    scratch dir."""
    marks = [str(p) for p in revealing] + [_real(p) for p in revealing]
    clean: dict[str, str] = {}
    for key, value in env.items():
        # AR_* variables are the user's settings for ar-tui targets (AR_PROMPT_API_KEY): meant for the run.
        if key not in declared and not key.startswith("AR_") and any(word in key.upper() for word in SECRET_ENV_WORDS):
            continue
        if key in ("PATH", "PYTHONPATH"):
            parts = [p for p in value.split(os.pathsep) if os.path.isabs(p) and not any(m in p for m in marks)]
            if parts:
                clean[key] = os.pathsep.join(parts)
        elif not any(m in value for m in marks):
            clean[key] = value
    for key in ("TMPDIR", "TMP", "TEMP"):
        clean[key] = str(tmp or scratch.tmp)
    clean["HOME"] = str(scratch.home)
    clean["XDG_CACHE_HOME"] = str(scratch.home / ".cache")
    # The prepared datasets stay where they are (readable, not writable): a
    # target that finds them through the user's cache dir would look in the
    # run's own HOME instead.
    clean["AR_TUI_CACHE"] = dataset_cache()
    # uv locks its cache even for `uv run --frozen`: a cache of the run's own
    # (the shared one stays read-only, so no run can poison it for the next).
    clean["UV_CACHE_DIR"] = str(scratch.home / ".cache" / "uv")
    # Packages installed with `pip install --user` stay importable (and
    # readable: they are on sys.path) although HOME is elsewhere now.
    import site

    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        clean.setdefault("PYTHONUSERBASE", site.getuserbase())
    for key in ("PWD", "OLDPWD"):
        clean.pop(key, None)
    return clean


class RunScratch:
    """A per-run scratch dir outside the run dir: the run's temp dir, home and
    checkpoint, the evaluator's clean checkout, and the `python` launcher of
    a configured interpreter (`bin`, readable, never writable, by the run).
    Removed after the run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.tmp = root / "tmp"
        self.home = root / "home"
        self.checkpoint_dir = root / "checkpoint"
        self.checkpoint = self.checkpoint_dir / "model.pt"
        self.export = root / "export"
        self.eval_tmp = root / "eval-tmp"
        for path in (self.tmp, self.home, self.checkpoint_dir, self.eval_tmp, self.bin):
            path.mkdir(parents=True, exist_ok=True)

    @classmethod
    def create(cls, label: str) -> "RunScratch":
        return cls(Path(tempfile.mkdtemp(prefix=f"ar-tui-{label}-")).resolve())

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def runs_editable_file(command: str, editable: Sequence[str]) -> bool:
    """Whether a shell command runs one of the target's editable files (as a
    path, or as `-m module`), so that it must be confined like training."""
    try:
        words = shlex.split(command)
    except ValueError:
        return True  # unparseable: assume the worst
    modules = {e[:-3].replace("/", ".") for e in editable if e.endswith(".py")}
    for index, word in enumerate(words):
        for rel in editable:
            if word == rel or word.endswith("/" + rel) or word == "./" + rel:
                return True
        if word == "-m" and index + 1 < len(words) and words[index + 1] in modules:
            return True
    return False


@dataclass(frozen=True)
class NodeConfinement:
    """What a trial's plan carries to another machine so that its runs are
    confined there as the engine confines them here: the `--sandbox` mode,
    the backend the engine chose (preferred on the node too), the target's
    `[sandbox]` settings and `[target] env` names, and which files are
    editable (a prepare that runs one is confined). The paths to hide and
    allow are the node's own, worked out there (`Confinement.for_node`)."""

    mode: str = "auto"
    backend: str | None = None
    settings: SandboxSettings = field(default_factory=SandboxSettings)
    declared_env: tuple[str, ...] = ()
    editable: tuple[str, ...] = ()
    described: str = ""  # the engine's Sandbox.describe(), to compare a node's with


@functools.lru_cache(maxsize=8)
def node_sandbox(mode: str, network: bool, preferred: str | None) -> Sandbox:
    """The sandbox for `mode` on this machine, the backend named `preferred`
    first if it works here. Cached: a node's worker resolves it (a probe run
    of each backend) once, not per trial."""
    from ar_tui.core.sandbox.backends import default_backends, resolve_sandbox

    backends = sorted(default_backends(), key=lambda backend: backend.name != preferred)
    return resolve_sandbox(mode, network, backends)


class Confinement:
    """The one object for confining the runs of the target's code on a
    machine: which paths each kind of run may read and write, and the
    environment it gets."""

    def __init__(self, sandbox: Sandbox, run_dir: Path, settings: SandboxSettings | None = None,
                 data_home: Path | None = None, extra_read: Sequence[str | Path] = (),
                 declared_env: Sequence[str] = (), extra_hidden: Sequence[str | Path] = (),
                 data: Sequence[str | Path] = ()) -> None:
        self.sandbox = sandbox
        # The target's [target] data in the user's checkout: read-only to
        # every run (under bubblewrap a read-only bind mount, under Landlock a
        # read rule and no write rule), writable to the prepare alone.
        self.data = [str(p) for p in data]
        self.declared_env = list(declared_env)  # the target's [target] env: passed whatever its names
        self.settings = settings or SandboxSettings(network=sandbox.network)
        self.hidden = sorted(set(hidden_paths(run_dir, data_home)) | {_real(p) for p in extra_hidden})
        self.revealing = [Path(run_dir)] + ([Path(data_home)] if data_home is not None else []) + \
            [Path(p) for p in extra_hidden]
        # The target's own interpreter and its packages (resolved elsewhere).
        self.extra_read = [str(p) for p in extra_read]

    def portable(self, editable: Sequence[str]) -> NodeConfinement:
        """This confinement as a cluster node needs it (see NodeConfinement)."""
        return NodeConfinement(mode=self.sandbox.mode,
                               backend=self.sandbox.backend.name if self.sandbox.backend is not None else None,
                               settings=self.settings, declared_env=tuple(self.declared_env),
                               editable=tuple(editable), described=self.sandbox.describe())

    @classmethod
    def for_node(cls, wanted: NodeConfinement, node_run_dir: Path, python: object,
                 engine_run_dir: str | Path | None = None) -> "Confinement":
        """On a cluster node: the sandbox that `wanted` asks for, resolved
        here (the engine's backend first, else this machine's best; under
        `require` a node without one raises SandboxError), hiding this run's
        dir on the node (other trials' checkouts, the prepare's log), the
        node's home, data home and credentials, and the engine's run dir
        (the node may be the engine's machine). `python`: the node's
        TargetPython, whose environment the runs read."""
        from ar_tui.core.targets import data_home

        sandbox = node_sandbox(wanted.mode, wanted.settings.network, wanted.backend)
        return cls(sandbox, node_run_dir, wanted.settings, data_home(), extra_read=target_python_paths(python),
                   declared_env=wanted.declared_env, extra_hidden=[engine_run_dir] if engine_run_dir else ())

    def _env(self, env: dict[str, str], scratch: RunScratch, tmp: Path) -> dict[str, str]:
        if not self.sandbox.confined:
            return dict(env)  # unconfined (off, or none to be had): the user's environment as it is
        return confined_env(env, scratch, self.revealing, tmp=tmp, declared=self.declared_env)

    def training(self, env: dict[str, str], worktree: Path, scratch: RunScratch) -> tuple[dict[str, str], SandboxPolicy]:
        """The training command: writes its worktree and scratch dir, reads the dataset."""
        policy = make_policy(write=[worktree, scratch.tmp, scratch.home, scratch.checkpoint_dir],
                             read=[dataset_cache(), scratch.bin, *self.extra_read, *self.data], hidden=self.hidden,
                             settings=self.settings)
        return self._env(env, scratch, scratch.tmp), policy

    def preparation(self, env: dict[str, str], worktree: Path, scratch: RunScratch) -> tuple[dict[str, str], SandboxPolicy]:
        """`prepare` from an editable file: as training, and it fills the dataset cache and the data."""
        cache = dataset_cache()
        Path(cache).mkdir(parents=True, exist_ok=True)
        policy = make_policy(write=[worktree, scratch.tmp, scratch.home, cache, *self.data],
                             read=[scratch.bin, *self.extra_read],
                             hidden=self.hidden, settings=self.settings)
        return self._env(env, scratch, scratch.tmp), policy

    def evaluation(self, env: dict[str, str], export: Path, scratch: RunScratch) -> tuple[dict[str, str], SandboxPolicy]:
        """The trusted evaluator: reads the clean checkout, the checkpoint and the
        dataset; writes only a temp dir of its own. Nothing the training run
        wrote elsewhere (its worktree, its temp dir) is visible, and Python
        puts neither the working directory nor a relative path on sys.path."""
        policy = make_policy(write=[scratch.eval_tmp], read=[export, scratch.checkpoint_dir, dataset_cache(),
                                                              scratch.bin, *self.extra_read, *self.data],
                             hidden=self.hidden, settings=self.settings, write_declared=False)
        clean = self._env(env, scratch, scratch.eval_tmp)
        if self.sandbox.confined:
            clean["HOME"] = str(scratch.eval_tmp)
            clean["XDG_CACHE_HOME"] = str(scratch.eval_tmp / ".cache")
        clean["PYTHONSAFEPATH"] = "1"  # python -P: `python -m nanochat.evaluate` does not import from the cwd
        if "PYTHONPATH" in clean:
            clean["PYTHONPATH"] = os.pathsep.join(p for p in clean["PYTHONPATH"].split(os.pathsep) if os.path.isabs(p))
        clean["PYTHONDONTWRITEBYTECODE"] = "1"
        return clean, policy
