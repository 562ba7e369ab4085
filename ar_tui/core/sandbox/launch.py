"""The no-root sandbox on Linux: Landlock, seccomp and a reaper, in front of a command.

    python -I -S launch.py POLICY_JSON -- ARGV...

Run as a script by path (never imported from the run's working directory;
`-I` keeps the run's environment and cwd off `sys.path`, `-S` skips the
site-packages start-up, and the policy names where `landlock` is installed). This process stays
outside the sandbox, as the reaper; its one child confines itself and then
becomes ARGV:

- Landlock (through the `landlock` package) allows reading the policy's `read`
  paths and writing its `write` paths, nothing else; on ABI >= 4 it refuses
  every TCP connect and bind when the network is off; on ABI >= 6 it scopes
  signals and abstract Unix sockets, so the run cannot signal the engine or
  reach anything listening outside.
- seccomp refuses `socket()` for Unix sockets always (Landlock does not cover
  connecting to a socket file such as the run's `control.sock`, whose path the
  run can guess), and for every address family when the network is off
  (Landlock covers TCP only, not UDP or raw sockets); `io_uring_setup` is
  refused because io_uring can open sockets without the `socket()` call.
  `socketpair()` and pipes keep working.
- Run as root, the child drops every capability (the bounding set, so exec
  grants none): with them, root could still read the engine's
  /proc/PID/environ, its API key included, through Landlock.
- This process is a child subreaper: anything the command starts that tries
  to outlive it (a double fork, `setsid`) is re-parented here and killed when
  the command ends, and the executor kills this process's whole tree on a
  timeout or a stop.

What it cannot do without root: a private /tmp or /dev/shm (TMPDIR points at
the run's scratch dir instead, and /dev/shm is not writable, so Python's
multiprocessing locks and torch DataLoader workers fail there), a pid
namespace (other processes are visible in /proc, but Landlock refuses to
ptrace them or read their environment), and hiding paths by name (a path that
is not allowed is unreadable, not absent). If the engine itself is killed with
SIGKILL, this reaper dies with it and a daemon that left the process group
survives until the next engine's orphan sweep (`kill_orphans`), which finds it
by the marker in its environment unless it re-executed itself without it.

This file imports nothing from ar_tui: it runs with the interpreter's
packages only.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import struct
import sys

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
SECCOMP_MODE_FILTER = 2

# Landlock network and scope flags the `landlock` package does not define.
LANDLOCK_ACCESS_NET_BIND_TCP = 1 << 0
LANDLOCK_ACCESS_NET_CONNECT_TCP = 1 << 1
LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
LANDLOCK_SCOPE_SIGNAL = 1 << 1
LANDLOCK_RULE_PATH_BENEATH = 1

# Per architecture: the audit arch value seccomp reports, and socket()'s number.
_ARCHES = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}
_NR_IO_URING_SETUP = 425  # the same on every architecture since 5.1
_X32_SYSCALL_BIT = 0x40000000
AF_UNIX = 1

EXIT_SANDBOX_FAILED = 125  # as env(1) does for its own failures


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, arg: int | ctypes.c_void_p = 0) -> None:
    libc = _libc()
    libc.prctl.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


# --- Landlock


def _apply_landlock(policy: dict) -> int:
    import landlock
    from landlock.plumbing import FSAccess, PathBeneathAttr, RulesetAttr, get_add_rule, get_create_ruleset, get_restrict_self

    class RulesetAttrV6(RulesetAttr):  # the kernel reads only as much as `size` says
        _fields_ = [("handled_access_net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    # The package's error check reads errno even after a call that succeeded:
    # clear it before each call, or an earlier failed prctl reads as a failure.
    ctypes.set_errno(0)
    abi = landlock.landlock_abi_version()
    attr = RulesetAttrV6(int(FSAccess.all()), 0, 0)
    size = ctypes.sizeof(RulesetAttr)
    if abi >= 4:
        size = ctypes.sizeof(RulesetAttr) + 8
        if not policy["network"]:
            attr.handled_access_net = LANDLOCK_ACCESS_NET_BIND_TCP | LANDLOCK_ACCESS_NET_CONNECT_TCP
    if abi >= 6:
        size = ctypes.sizeof(RulesetAttrV6)
        attr.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL
    ctypes.set_errno(0)
    ruleset = get_create_ruleset()(ctypes.byref(attr), size, 0)

    read = FSAccess.READ_FILE | FSAccess.READ_DIR | FSAccess.EXECUTE
    file_read = FSAccess.READ_FILE | FSAccess.EXECUTE
    everything = FSAccess.all()
    file_everything = FSAccess.all_file()

    def allow(path: str, access: FSAccess, file_access: FSAccess) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return  # gone since the policy was made: nothing to allow
        try:
            rights = access if os.path.isdir(path) else file_access
            ctypes.set_errno(0)
            get_add_rule()(ruleset, LANDLOCK_RULE_PATH_BENEATH, ctypes.byref(PathBeneathAttr(int(rights), fd)), 0)
        finally:
            os.close(fd)

    for path in policy["read"]:
        allow(path, read, file_read)
    for path in policy["write"] + policy["devices"]:
        allow(path, everything, file_everything)
    ctypes.set_errno(0)
    get_restrict_self()(ruleset, 0)
    os.close(ruleset)
    return abi


# --- seccomp


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def _apply_seccomp(network: bool) -> None:
    machine = os.uname().machine
    if machine not in _ARCHES:
        raise OSError(f"no seccomp filter for architecture {machine}")
    audit_arch, nr_socket = _ARCHES[machine]
    LD_W_ABS, JEQ_K, JGE_K, RET_K = 0x20, 0x15, 0x35, 0x06
    ALLOW, DENY = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ERRNO | EPERM
    program = [
        _bpf(LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        # A foreign ABI (i386 through int 0x80 offers socketcall) gets nothing.
        _bpf(JEQ_K, 1, 0, audit_arch),
        _bpf(RET_K, 0, 0, DENY),
        _bpf(LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
        _bpf(JGE_K, 0, 1, _X32_SYSCALL_BIT),
        _bpf(RET_K, 0, 0, DENY),
        _bpf(JEQ_K, 0, 1, _NR_IO_URING_SETUP),
        _bpf(RET_K, 0, 0, DENY),
        _bpf(JEQ_K, 1, 0, nr_socket),
        _bpf(RET_K, 0, 0, ALLOW),
    ]
    if network:
        program += [
            _bpf(LD_W_ABS, 0, 0, 16),  # the low word of args[0], the address family
            _bpf(JEQ_K, 0, 1, AF_UNIX),
            _bpf(RET_K, 0, 0, DENY),
            _bpf(RET_K, 0, 0, ALLOW),
        ]
    else:
        program += [_bpf(RET_K, 0, 0, DENY)]
    filters = ctypes.create_string_buffer(b"".join(program))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = SockFprog(len(program), ctypes.cast(filters, ctypes.c_void_p))
    libc = _libc()
    libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")


# --- the reaper


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry))
    return found


def _reap_everything() -> None:
    """Kill every process left in this tree, orphans re-parented here included."""
    me = os.getpid()
    while True:
        for child in _children(me):
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _drop_capabilities() -> None:
    """Root keeps no capability across exec: as root, Landlock alone would
    still let the run read the engine's /proc/PID/environ (its API key)."""
    PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4
    libc = _libc()
    libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:  # EINVAL: no such cap
            err = ctypes.get_errno()
            raise OSError(err, f"cannot drop capability {cap}: {os.strerror(err)}")


def _confine_and_exec(policy: dict, command: list[str]) -> None:
    """In the child: confine this process, then become the command."""
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        if os.geteuid() == 0:
            _drop_capabilities()
        _apply_landlock(policy)
        _apply_seccomp(policy["network"])
    except Exception as exc:  # a sandbox that did not apply must not run the command
        print(f"sandbox: could not confine the run: {exc}", file=sys.stderr, flush=True)
        os._exit(EXIT_SANDBOX_FAILED)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"sandbox: cannot run {command[0]}: {exc.strerror}", file=sys.stderr, flush=True)
    os._exit(127)


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("sandbox launch: usage: launch.py POLICY_JSON -- ARGV...", file=sys.stderr)
        return EXIT_SANDBOX_FAILED
    policy = json.loads(argv[0])
    command = argv[2:]
    sys.path.append(policy["packages"])
    import landlock  # noqa: F401  (imported once here, not after the fork)

    # This process stays outside the sandbox: the reaper must see /proc and
    # survive what the command does. The engine ends a run by signalling its
    # process group, this process included: it stays alive through that to
    # reap what the command leaves.
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pid = os.fork()
    if pid == 0:
        _confine_and_exec(policy, command)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    _reap_everything()
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
