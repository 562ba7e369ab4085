"""How a run of the target's code is confined, per platform.

The training command, the trusted evaluator and a `prepare` that runs an
editable file are code the agent may have written a minute ago. Each runs
under a `SandboxPolicy`: the system, the interpreter and its packages
readable; writable only the slot's worktree and the run's scratch dir (its
temp dir and checkpoint); not readable the run dir (ledger, events, state,
the control socket, other experiments' logs and checkpoints), the other
slots' worktrees, the home dir and credentials; no network unless the target
asks for it in `[sandbox]`.

Backends, the first that works wins under `--sandbox auto`:
- `bubblewrap` (Linux, `bwrap` installed): a new mount namespace holding only
  the policy's paths, private /tmp and /dev/shm, pid, ipc and (unless the
  network is on) network namespaces, `--die-with-parent`.
- `landlock` (Linux, no root, the `landlock` package): Landlock, seccomp and
  a reaper in `sandbox_launch.py`, which says what it can and cannot do.
- `sandbox-exec` (macOS): a Seatbelt profile, `seatbelt_profile`.

`--sandbox require` refuses to start without one; `off` is the user's
explicit choice. Every mode is named in one line (`Sandbox.describe`) that
the startup line, the status line, `ar-tui status` and the report show.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

from ar_tui.core.errors import UserError

SANDBOX_MODES = ("auto", "require", "off")
LAUNCHER = Path(__file__).with_name("sandbox_launch.py")

# Credentials never readable, even inside a path the target declares.
CREDENTIAL_PATHS = (
    "~/.ssh", "~/.gnupg", "~/.aws", "~/.azure", "~/.config/gcloud", "~/.kube", "~/.docker", "~/.netrc",
    "~/.git-credentials", "~/.config/gh", "~/.pypirc", "~/.anthropic", "~/.config/anthropic",
    "~/.config/ar-tui", "~/.huggingface", "~/.cache/huggingface/token", "~/.local/share/keyrings",
)
# Secrets of the machine itself (readable to root, and runs may run as root).
SYSTEM_SECRETS = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/ssh", "/etc/sudoers",
                  "/etc/sudoers.d")
LINUX_SYSTEM_READ = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/sys",
                     "/run/systemd/resolve", "/run/resolvconf", "/nix/store")
MACOS_SYSTEM_READ = ("/usr", "/bin", "/sbin", "/System", "/Library", "/opt", "/private/etc", "/private/var/db/timezone",
                     "/Applications/Xcode.app", "/Library/Developer")
GPU_DEVICE_GLOBS = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri")
# Inherited variables with these in their names are credentials: a run could
# print one into its log, which the agent reads. The target's own [target] env
# is passed whatever its names.
SECRET_ENV_WORDS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "APIKEY", "ACCESS_KEY", "CREDENTIAL",
                    "PRIVATE_KEY", "AUTH_SOCK")


class SandboxError(UserError):
    """No sandbox where one is required, or a `[sandbox]` setting that cannot be honoured."""


@dataclass(frozen=True)
class SandboxPolicy:
    """What one confined command may touch. Paths are absolute and resolved."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()  # never readable, even beneath a read or write path
    network: bool = False
    devices: tuple[str, ...] = ()  # device nodes used read-write (GPUs)


class Backend(Protocol):
    name: str

    def unavailable(self) -> str | None:
        """None when this backend works here, else why not (one line)."""
        ...

    def argv(self, policy: SandboxPolicy, command: Sequence[str], cwd: Path) -> list[str]:
        """The argv that runs `command` in `cwd` under `policy`."""
        ...


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# ---------------------------------------------------------------- bubblewrap


class Bubblewrap:
    name = "bubblewrap"

    def __init__(self, executable: str | None = None) -> None:
        self.executable = executable or shutil.which("bwrap") or "bwrap"

    def unavailable(self) -> str | None:
        if not sys.platform.startswith("linux"):
            return "bubblewrap runs on Linux only"
        if shutil.which(self.executable) is None:
            return "bwrap is not installed (apt-get install bubblewrap)"
        # Installed is not enough: a kernel or container may refuse namespaces.
        try:
            probe = subprocess.run([self.executable, "--ro-bind", "/", "/", "--unshare-pid", "--unshare-net",
                                    "--die-with-parent", "true"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bwrap does not start: {exc}"
        if probe.returncode != 0:
            last = probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else f"exit {probe.returncode}"
            return f"bwrap cannot create namespaces here: {last}"
        return None

    @staticmethod
    def _hide(hidden: Sequence[str], roots: Sequence[str], remounts: list[str]) -> list[str]:
        """Mounts that cover each hidden path strictly inside one of `roots`
        (elsewhere it is not visible anyway: bubblewrap's root holds only
        what is bound). A covering tmpfs is made read-only only at the end
        (`remounts`), after the writable paths inside it are bound."""
        args: list[str] = []
        for path in hidden:
            if not any(_under(path, root) and path != root for root in roots):
                continue
            if os.path.isdir(path):
                args += ["--tmpfs", path]
                remounts += ["--remount-ro", path]
            elif os.path.lexists(path):
                args += ["--ro-bind", "/dev/null", path]
        return args

    def argv(self, policy: SandboxPolicy, command: Sequence[str], cwd: Path) -> list[str]:
        args = [self.executable, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc",
                "--unshare-uts", "--unshare-cgroup-try"]
        if not policy.network:
            args.append("--unshare-net")
        # /tmp and /dev/shm are private: nothing a run leaves there outlives it.
        private = ["/tmp", "/dev/shm"]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm"]
        bound: list[str] = []
        for path in policy.read:
            if os.path.islink(path):
                # /bin -> usr/bin on merged-usr systems: keep it a link.
                args += ["--symlink", os.readlink(path), path]
            else:
                args += ["--ro-bind-try", path, path]
                bound.append(path)
        # Mounts apply in order: hide what a read path (or the private /tmp,
        # where the mount points of the writable paths are made) would show,
        # then give back the writable paths (a worktree inside the hidden run
        # dir), then hide what a writable path holds.
        remounts: list[str] = []
        args += self._hide(policy.hidden, bound + private, remounts)
        for path in policy.write:
            args += ["--bind", path, path]
        args += self._hide(policy.hidden, policy.write, remounts)
        for path in policy.devices:
            args += ["--dev-bind-try", path, path]
        # Anything else the mounts above created (their parent dirs) stays read-only.
        args += [*remounts, "--remount-ro", "/", "--chdir", str(cwd), "--", *command]
        return args


# ---------------------------------------------------------------- Landlock


class LandlockBackend:
    """No root needed; see sandbox_launch.py for what it enforces."""

    name = "landlock"
    MIN_ABI = 1

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    def abi(self) -> int:
        import landlock

        return int(landlock.landlock_abi_version())

    def unavailable(self) -> str | None:
        if not sys.platform.startswith("linux"):
            return "Landlock is Linux only"
        try:
            abi = self.abi()
        except ImportError:
            return "the landlock package is not installed"
        except Exception as exc:  # ENOSYS or EOPNOTSUPP: the kernel has it off
            return f"the kernel refuses Landlock ({str(exc).splitlines()[0]})"
        if abi < self.MIN_ABI:
            return f"Landlock ABI {abi} is too old"
        # The ABI is not the whole story (seccomp, prctl): confine `true` once.
        probe = self.argv(SandboxPolicy(read=tuple(p for p in LINUX_SYSTEM_READ if os.path.exists(p))), ["true"], Path("/"))
        try:
            result = subprocess.run(probe, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"the launcher does not start: {exc}"
        if result.returncode != 0:
            return (result.stderr.strip().splitlines() or [f"the launcher exited {result.returncode}"])[-1]
        return None

    def argv(self, policy: SandboxPolicy, command: Sequence[str], cwd: Path) -> list[str]:
        import landlock

        # Landlock allows by path and cannot carve a hidden path out of an
        # allowed one: an allowed dir that holds a hidden path is replaced by
        # its other entries.
        read = _allow_except(policy.read, policy.hidden)
        write = _allow_except(policy.write, policy.hidden)
        devices = list(policy.devices)
        # Not /dev as a whole: a run as root could read a disk device (and
        # every file on it) through it. Only the harmless character devices.
        write += [d for d in ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty")
                  if os.path.exists(d)]
        read.append("/proc")
        # -S: no site-packages processing (a third of the launcher's start-up
        # with an editable install); the launcher imports landlock from here.
        packages = str(Path(landlock.__file__).resolve().parent.parent)
        encoded = json.dumps({"read": read, "write": write, "devices": devices, "network": policy.network,
                              "packages": packages})
        return [self.python, "-I", "-S", str(LAUNCHER), encoded, "--", *command]


def _allow_except(roots: Sequence[str], hidden: Sequence[str]) -> list[str]:
    """`roots`, each root that holds a hidden path replaced by its other
    entries, recursively: Landlock allows by path and cannot carve a hidden
    path out of an allowed one. A root beneath a hidden path is the policy
    giving it back, and stays."""
    allowed: list[str] = []

    def add(path: str) -> None:
        inside = [h for h in hidden if _under(h, path) and h != path]
        if not inside:
            allowed.append(path)
            return
        with contextlib.suppress(OSError):
            for entry in sorted(os.listdir(path)):
                child = os.path.join(path, entry)
                if child not in hidden:
                    add(child)

    for root in roots:
        if os.path.lexists(root):
            add(root)
    return allowed


# ---------------------------------------------------------------- macOS


def _sbpl_string(path: str) -> str:
    return '"' + path.replace("\\", "\\\\").replace('"', '\\"') + '"'


def seatbelt_profile(policy: SandboxPolicy) -> str:
    """A Seatbelt (SBPL) profile for `sandbox-exec -p`: deny by default, allow
    the policy's paths, then deny the hidden ones (in SBPL a later rule takes
    precedence over an earlier one it overlaps)."""
    lines = [
        "(version 1)",
        "(deny default)",
        "; processes: the command and what it starts, signals only inside this sandbox",
        "(allow process-fork)",
        "(allow process-exec)",
        "(allow signal (target same-sandbox))",
        "(allow sysctl-read)",
        "; Python, Metal (MPS) and the system libraries look up these services",
        "(allow mach-lookup)",
        "(allow iokit-open)",
        "(allow ipc-posix-shm* ipc-posix-sem)",
        "(allow file-read-metadata)",
        "(allow file-read* file-write-data file-ioctl (literal \"/dev/null\") (literal \"/dev/zero\")"
        " (literal \"/dev/urandom\") (literal \"/dev/random\") (literal \"/dev/tty\"))",
    ]
    if policy.read:
        lines.append("(allow file-read* " + " ".join(f"(subpath {_sbpl_string(p)})" for p in policy.read) + ")")
    if policy.write:
        lines.append("(allow file-read* file-write* " + " ".join(f"(subpath {_sbpl_string(p)})" for p in policy.write) + ")")
    if policy.hidden:
        lines.append("; hidden paths: not even readable, wherever they sit")
        lines.append("(deny file-read* file-write* " + " ".join(f"(subpath {_sbpl_string(p)})" for p in policy.hidden) + ")")
        # Writable paths inside a hidden one (the worktree inside the run dir) come back last.
        inner = [p for p in policy.write if any(_under(p, h) for h in policy.hidden)]
        if inner:
            lines.append("(allow file-read* file-write* " + " ".join(f"(subpath {_sbpl_string(p)})" for p in inner) + ")")
    if policy.network:
        lines.append("(allow network*)")
        lines.append("(allow system-socket)")
    else:
        lines.append("; no network: outbound, inbound and local sockets all stay denied")
    return "\n".join(lines) + "\n"


class SandboxExec:
    name = "sandbox-exec"

    def unavailable(self) -> str | None:
        if sys.platform != "darwin":
            return "sandbox-exec is macOS only"
        if shutil.which("sandbox-exec") is None:
            return "sandbox-exec is not on PATH"
        return None

    def argv(self, policy: SandboxPolicy, command: Sequence[str], cwd: Path) -> list[str]:
        # sandbox-exec has no chdir: the executor starts it in `cwd`.
        return ["sandbox-exec", "-p", seatbelt_profile(policy), *command]


# ---------------------------------------------------------------- choosing one


def default_backends() -> list[Backend]:
    if sys.platform == "darwin":
        return [SandboxExec()]
    return [Bubblewrap(), LandlockBackend()]


@dataclass(frozen=True)
class Sandbox:
    """The sandbox in force for a run: a backend, or none and why."""

    mode: str
    backend: Backend | None
    network: bool = False
    why_none: str = ""

    def describe(self) -> str:
        """One line for the startup line, the status line, `ar-tui status` and the report."""
        if self.backend is not None:
            return f"sandbox: {self.backend.name}, network {'on' if self.network else 'off'}"
        if self.mode == "off":
            return "sandbox: off (--sandbox off): runs are not confined"
        return f"sandbox: NONE, runs are not confined ({self.why_none})"

    @property
    def confined(self) -> bool:
        return self.backend is not None

    def wrap(self, command: str, cwd: Path, policy: SandboxPolicy) -> list[str]:
        """The argv that runs the shell command `command` in `cwd` under `policy`."""
        shell = ["/bin/sh", "-c", command]
        if self.backend is None:
            return shell
        return self.backend.argv(policy, shell, cwd)


def resolve_sandbox(mode: str, network: bool = False, backends: Sequence[Backend] | None = None) -> Sandbox:
    """The sandbox for `--sandbox MODE`; raises SandboxError (one line) when
    `require` finds none."""
    if mode not in SANDBOX_MODES:
        raise SandboxError(f"--sandbox {mode!r}: expected one of {', '.join(SANDBOX_MODES)}")
    if mode == "off":
        return Sandbox(mode, None, network)
    reasons = []
    for backend in default_backends() if backends is None else backends:
        why = backend.unavailable()
        if why is None:
            return Sandbox(mode, backend, network)
        reasons.append(f"{backend.name}: {why}")
    why_none = "; ".join(reasons) or "no sandbox backend for this platform"
    if mode == "require":
        raise SandboxError(f"--sandbox require: no sandbox is available ({why_none})")
    return Sandbox(mode, None, network, why_none)


# ---------------------------------------------------------------- what a run may touch


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
    automatic = [p for p in interpreter_paths() if not any(_under(h, p) for h in hidden)]
    readable = [p for p in system if os.path.lexists(p)] + automatic + [_real(p) for p in read] + declared
    writable = [_real(p) for p in write] + ([_real(p) for p in settings.write] if write_declared else [])

    def allowed(path: str) -> bool:
        return os.path.lexists(path) and not any(_under(path, s) for s in secrets)

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
    checkpoint, and the evaluator's clean checkout. Removed after the run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.home = root / "home"
        self.checkpoint_dir = root / "checkpoint"
        self.checkpoint = self.checkpoint_dir / "model.pt"
        self.export = root / "export"
        self.eval_tmp = root / "eval-tmp"
        for path in (self.tmp, self.home, self.checkpoint_dir, self.eval_tmp):
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


class Confinement:
    """The engine's one object for confining its runs: which paths each kind
    of run may read and write, and the environment it gets."""

    def __init__(self, sandbox: Sandbox, run_dir: Path, settings: SandboxSettings | None = None,
                 data_home: Path | None = None, extra_read: Sequence[str | Path] = (),
                 declared_env: Sequence[str] = ()) -> None:
        self.sandbox = sandbox
        self.declared_env = list(declared_env)  # the target's [target] env: passed whatever its names
        self.settings = settings or SandboxSettings(network=sandbox.network)
        self.hidden = hidden_paths(run_dir, data_home)
        self.revealing = [Path(run_dir)] + ([Path(data_home)] if data_home is not None else [])
        # The target's own interpreter and its packages (resolved elsewhere).
        self.extra_read = [str(p) for p in extra_read]

    def _env(self, env: dict[str, str], scratch: RunScratch, tmp: Path) -> dict[str, str]:
        if not self.sandbox.confined:
            return dict(env)  # unconfined (off, or none to be had): the user's environment as it is
        return confined_env(env, scratch, self.revealing, tmp=tmp, declared=self.declared_env)

    def training(self, env: dict[str, str], worktree: Path, scratch: RunScratch) -> tuple[dict[str, str], SandboxPolicy]:
        """The training command: writes its worktree and scratch dir, reads the dataset."""
        policy = make_policy(write=[worktree, scratch.tmp, scratch.home, scratch.checkpoint_dir],
                             read=[dataset_cache(), *self.extra_read], hidden=self.hidden, settings=self.settings)
        return self._env(env, scratch, scratch.tmp), policy

    def preparation(self, env: dict[str, str], worktree: Path, scratch: RunScratch) -> tuple[dict[str, str], SandboxPolicy]:
        """`prepare` from an editable file: as training, and it fills the dataset cache."""
        cache = dataset_cache()
        Path(cache).mkdir(parents=True, exist_ok=True)
        policy = make_policy(write=[worktree, scratch.tmp, scratch.home, cache], read=self.extra_read,
                             hidden=self.hidden, settings=self.settings)
        return self._env(env, scratch, scratch.tmp), policy

    def evaluation(self, env: dict[str, str], export: Path, scratch: RunScratch) -> tuple[dict[str, str], SandboxPolicy]:
        """The trusted evaluator: reads the clean checkout, the checkpoint and the
        dataset; writes only a temp dir of its own. Nothing the training run
        wrote elsewhere (its worktree, its temp dir) is visible, and Python
        puts neither the working directory nor a relative path on sys.path."""
        policy = make_policy(write=[scratch.eval_tmp], read=[export, scratch.checkpoint_dir, dataset_cache(),
                                                              *self.extra_read],
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
