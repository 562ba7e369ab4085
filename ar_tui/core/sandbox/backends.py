"""How a run of the target's code is confined, per platform: the backends.

A `SandboxPolicy` says what one command may touch (`run_policy` decides it
for each kind of run: training, the trusted evaluator, a confined prepare);
a backend turns it into the argv that enforces it. The first that works wins
under `--sandbox auto`:
- `bubblewrap` (Linux, `bwrap` installed): a new mount namespace holding only
  the policy's paths, private /tmp and /dev/shm, pid, ipc and (unless the
  network is on) network namespaces, `--die-with-parent`.
- `landlock` (Linux, no root, the `landlock` package): Landlock, seccomp and
  a reaper in `launch.py`, which says what it can and cannot do.
- `sandbox-exec` (macOS): a Seatbelt profile, `seatbelt_profile`.

`--sandbox require` refuses to start without one; `off` is the user's
explicit choice. Every mode is named in one line (`Sandbox.describe`) that
the startup line, the status line, `ar-tui status` and the report show.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

from ar_tui.core.errors import UserError

SANDBOX_MODES = ("auto", "require", "off")
LAUNCHER = Path(__file__).with_name("launch.py")
# What every confined run reads (the launcher's probe confines `true` with it too).
LINUX_SYSTEM_READ = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/sys",
                     "/run/systemd/resolve", "/run/resolvconf", "/nix/store")
MACOS_SYSTEM_READ = ("/usr", "/bin", "/sbin", "/System", "/Library", "/opt", "/private/etc", "/private/var/db/timezone",
                     "/Applications/Xcode.app", "/Library/Developer")


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


def path_under(path: str, root: str) -> bool:
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
            if not any(path_under(path, root) and path != root for root in roots):
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
        # A read path beneath a hidden one is the policy giving it back (the
        # target's data in a checkout inside the home dir): bound after the
        # hiding, as the writable paths are.
        given_back = [p for p in policy.read if any(path_under(p, h) and p != h for h in policy.hidden)]
        for path in policy.read:
            if path in given_back:
                continue
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
        for path in given_back:
            args += ["--ro-bind-try", path, path]
        args += self._hide(policy.hidden, given_back, remounts)
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
    """No root needed; see launch.py for what it enforces."""

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
        inside = [h for h in hidden if path_under(h, path) and h != path]
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
        inner = [p for p in policy.write if any(path_under(p, h) for h in policy.hidden)]
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
