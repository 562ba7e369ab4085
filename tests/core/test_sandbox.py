"""The sandbox against a hostile train.py: each attack is a real child process
on a tiny target, run by the real Engine under bubblewrap and under the
no-root fallback (Landlock, seccomp, a reaper). Each attack fails inside the
sandbox, the ledger says so, nothing outside changes and the night goes on.
Where it makes the point, the same attack with `--sandbox off` shows what the
sandbox prevents (so the test can fail)."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from ar_tui.agents.scripted import ScriptedProposer, ScriptStep
from ar_tui.core import events as ev
from ar_tui.core.control.server import control_service
from ar_tui.core.engine import Engine, EngineOptions, UserError
from ar_tui.core.records.ledger import read_events, read_results
from ar_tui.core.sandbox.backends import Bubblewrap, LandlockBackend
from tests.conftest import TINY_TRAIN, make_target
from tests.core.sandbox_attacks import (
    BETTER,
    DAEMON,
    FIND_LEFTOVERS,
    LEAVE_FILES,
    LEFTOVERS_SHARED,
    PLANTED,
    SECRET,
    hostile,
    keep_me,
    make_home,
    phone_home,
    read_secret,
    recording_server,
    start_daemon,
    write_outside,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux backends")

FAST_CONFIG = "[target]\ntime_budget = 1\ntimeout = 20\n"
BACKENDS = {"bubblewrap": Bubblewrap, "landlock": LandlockBackend}


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.system) if name == "bubblewrap" else name
                        for name in sorted(BACKENDS)])
def backend(request: pytest.FixtureRequest):
    """Both backends, never skipped: CI installs bubblewrap and its kernel has
    Landlock; a machine without them fails here with the reason."""
    chosen = BACKENDS[request.param]()
    why = chosen.unavailable()
    assert why is None, f"{chosen.name} is not available here: {why} (without root: pytest -m 'not system')"
    return chosen


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home dir holding a secret, as the engine's user sees it."""
    home = make_home(tmp_path / "user-home")
    monkeypatch.setenv("HOME", str(home))
    return home


async def run_engine(tmp_path: Path, steps: list[ScriptStep], backend, *, sandbox: str = "auto",
                     config: str = FAST_CONFIG, train: str = TINY_TRAIN, **options) -> tuple[Path, list]:
    target = make_target(tmp_path / "target", train=train, config=config)
    run_dir = tmp_path / "run"
    opts = dict(target_dir=target, tag="s", run_dir=run_dir, attended=False, lookahead=0, baseline_runs=1,
                max_experiments=len(steps), sandbox=sandbox, sandbox_backends=[backend] if backend else None)
    opts.update(options)
    # The run's control socket is there, as in a real run: the attacks go for it.
    stopped = await Engine(EngineOptions(**opts), ScriptedProposer(steps), services=[control_service]).run()
    assert not stopped.error, stopped.reason
    _, rows, _ = read_results(run_dir / "results.tsv")
    return run_dir, rows


def statuses(rows) -> list[tuple[int, str]]:
    return [(r.exp, r.status) for r in rows]


def refused(rows, exp: int = 1) -> None:
    """Experiment `exp` crashed with a one-line reason, and the next one still ran and was kept."""
    row = next(r for r in rows if r.exp == exp)
    assert row.status == "crash" and row.metric is None, statuses(rows)
    # One line: the crash's own explanation (the refused call, as Python said it) and its exit code.
    assert row.rule.startswith("crash: ") and "exit code 1" in row.rule and "\n" not in row.rule
    assert statuses(rows)[-1] == (exp + 1, "keep")


# ---------------------------------------------------------------- the attacks


async def test_the_run_cannot_reach_the_control_socket_to_keep_itself(tmp_path, backend, home) -> None:
    attack = keep_me(tmp_path / "run")
    _, rows = await run_engine(tmp_path, [attack, BETTER], backend)
    refused(rows)
    assert not any(r.forced for r in rows)


async def test_without_the_sandbox_the_same_run_keeps_itself(tmp_path, home) -> None:
    attack = keep_me(tmp_path / "run")
    _, rows = await run_engine(tmp_path, [attack], None, sandbox="off")
    assert rows[1].status == "keep" and rows[1].forced


async def test_writes_outside_the_worktree_fail_and_change_nothing(tmp_path, backend, home) -> None:
    run_dir = tmp_path / "run"
    targets = [home / "pwned.txt", run_dir / "results.tsv", run_dir / "worktrees" / "slot-1" / "train.py",
               run_dir / "worktrees" / "propose" / "train.py"]
    steps = [write_outside(path) for path in targets]
    _, rows = await run_engine(tmp_path, [*steps, BETTER], backend, devices=["cpu", "cpu"])
    # Two slots: the run that lands on slot-1 writes its own worktree, which
    # is allowed; every other write is refused.
    crashed = [r for r in rows if r.status == "crash"]
    assert len(crashed) >= len(targets) - 1, statuses(rows)
    assert all(r.rule.startswith("crash: ") and "exit code 1" in r.rule for r in crashed)
    assert (len(targets) + 1, "keep") in statuses(rows)
    assert not (home / "pwned.txt").exists()
    # The written line, not the attack's source (which a worktree may hold).
    assert PLANTED not in (run_dir / "results.tsv").read_text()
    for worktree in ("slot-0", "slot-1", "propose"):
        assert PLANTED not in (run_dir / "worktrees" / worktree / "train.py").read_text()


async def test_the_run_cannot_read_a_secret_in_the_home_dir(tmp_path, backend, home) -> None:
    run_dir, rows = await run_engine(tmp_path, [read_secret(home), BETTER], backend)
    refused(rows)
    assert SECRET not in (run_dir / "logs" / "1.log").read_text()
    assert SECRET not in (run_dir / "events.jsonl").read_text()


async def test_the_run_cannot_connect_to_a_server_on_localhost(tmp_path, backend, home) -> None:
    server, port, connections = await recording_server()
    async with server:
        _, rows = await run_engine(tmp_path, [phone_home(port), BETTER], backend)
    refused(rows)
    assert connections == []


async def test_the_network_is_open_when_the_target_says_so(tmp_path, backend, home) -> None:
    server, port, connections = await recording_server()
    fetch = hostile("download", f"""
        import socket
        socket.create_connection(("127.0.0.1", {port}), timeout=5).sendall(b"hello")
    """, lr="0.4")
    config = FAST_CONFIG + "[sandbox]\nnetwork = true\n"
    async with server:
        run_dir, rows = await run_engine(tmp_path, [fetch], backend, config=config)
    assert statuses(rows) == [(0, "keep"), (1, "keep")]
    assert connections == [b"hello"]
    started = next(e for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.RunStarted))
    assert started.sandbox == f"sandbox: {backend.name}, network on"


async def test_nothing_a_run_leaves_behind_reaches_the_next_one(tmp_path, backend, home) -> None:
    _, rows = await run_engine(tmp_path, [LEAVE_FILES, FIND_LEFTOVERS], backend)
    assert statuses(rows) == [(0, "keep"), (1, "discard"), (2, "keep")], [r.rule for r in rows]
    assert not any(Path(shared).exists() for shared in LEFTOVERS_SHARED)


def daemons(mark: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if mark in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


async def test_a_daemon_does_not_outlive_its_run(tmp_path, backend, home) -> None:
    mark = f"ar-tui-daemon-{os.getpid()}-{backend.name}"
    _, rows = await run_engine(tmp_path, [start_daemon(mark), BETTER], backend)
    assert statuses(rows)[-1] == (2, "keep")
    assert daemons(mark) == []


async def test_without_the_sandbox_the_daemon_survives(tmp_path, home) -> None:
    mark = f"ar-tui-daemon-{os.getpid()}-off"
    try:
        await run_engine(tmp_path, [start_daemon(mark)], None, sandbox="off")
        assert daemons(mark), "the test's daemon should outlive an unconfined run"
    finally:
        for proc in daemons(mark):
            proc.kill()


# ---------------------------------------------------------------- the evaluator

TRUSTED_EVAL = '''\
"""A trusted evaluator for the tiny target: the metric from the checkpoint's knobs."""
import json, sys
knobs = json.load(open(sys.argv[1]))
print(f"val_bpb: {(knobs['LR'] - 0.3) ** 2 + 1.0:.6f}")
'''
SAVES_CHECKPOINT = "import json\n" + TINY_TRAIN + 'json.dump({"LR": LR}, open(os.environ["AR_CHECKPOINT"], "w"))\n'


async def test_a_planted_module_cannot_stand_in_for_the_evaluator(tmp_path, backend, home, monkeypatch) -> None:
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    (trusted / "tiny_eval.py").write_text(TRUSTED_EVAL)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(trusted), os.environ.get("PYTHONPATH", "")]))
    config = FAST_CONFIG + f'[metric]\nevaluate = "python -m tiny_eval {{checkpoint}}"\n[sandbox]\nread = ["{trusted}"]\n'
    planted = 'import sys\nprint("val_bpb: 0.000001")\n'
    attack = hostile("plant an evaluator", f"""
        import pathlib
        pathlib.Path("tiny_eval.py").write_text({planted!r})
        pathlib.Path("json.py").write_text({planted!r})
    """, lr="0.9")
    run_dir, rows = await run_engine(tmp_path, [attack, BETTER], backend, config=config, train=SAVES_CHECKPOINT)
    # The trusted evaluator scored it, in a clean checkout: worse than the baseline, discarded.
    assert statuses(rows) == [(0, "keep"), (1, "discard"), (2, "keep")]
    assert rows[1].metric == pytest.approx((0.9 - 0.3) ** 2 + 1.0)
    assert "0.000001" not in (run_dir / "logs" / "1.eval.log").read_text()


async def test_a_configured_interpreter_runs_through_its_launcher_inside_the_sandbox(tmp_path, backend, home) -> None:
    # `[target] python` names an interpreter whose directory's `python` is
    # another one (/usr/bin/python3.12 beside a python 3.10): `python` in the
    # commands is then a launcher the engine writes. It lives in the run's
    # scratch dir, which the sandbox lets the run read (not in the hidden run dir).
    interpreters = tmp_path / "interpreters"
    interpreters.mkdir()
    chosen = interpreters / "python3.99"
    chosen.symlink_to(os.path.realpath(sys.executable))
    (interpreters / "python").write_text("#!/bin/sh\necho the wrong python; exit 3\n")
    (interpreters / "python").chmod(0o755)
    train = SAVES_CHECKPOINT + 'print("executable:", sys.executable)\n'
    evaluator = TRUSTED_EVAL + 'print("executable:", sys.executable)\n'
    config = (f'[target]\ntime_budget = 1\ntimeout = 20\npython = "{chosen}"\nprotected = ["prepare.py", "tiny_eval.py"]\n'
              '[metric]\nevaluate = "python tiny_eval.py {checkpoint}"\n')
    target = make_target(tmp_path / "target", train=train, config=config, extra={"tiny_eval.py": evaluator})
    run_dir = tmp_path / "run"
    options = EngineOptions(target_dir=target, tag="s", run_dir=run_dir, attended=False, lookahead=0, baseline_runs=1,
                            max_experiments=1, sandbox="require", sandbox_backends=[backend])
    stopped = await Engine(options, ScriptedProposer([BETTER])).run()
    assert not stopped.error, stopped.reason
    _, rows, _ = read_results(run_dir / "results.tsv")
    assert statuses(rows) == [(0, "keep"), (1, "keep")]
    assert rows[1].metric == pytest.approx((0.4 - 0.3) ** 2 + 1.0)  # the evaluator's, through the launcher too
    for log in ("0.log", "0.eval.log", "1.log", "1.eval.log"):
        text = (run_dir / "logs" / log).read_text()
        assert f"executable: {chosen}" in text and "the wrong python" not in text, (log, text[-500:])


# ---------------------------------------------------------------- choosing a sandbox


async def test_require_without_a_sandbox_refuses_to_start_in_one_line(tmp_path, home) -> None:
    target = make_target(tmp_path / "target", config=FAST_CONFIG)
    options = EngineOptions(target_dir=target, tag="s", run_dir=tmp_path / "run", sandbox="require",
                            sandbox_backends=[])
    with pytest.raises(UserError) as refusal:
        await Engine(options, ScriptedProposer([BETTER])).run()
    message = str(refusal.value)
    assert message.startswith("--sandbox require: no sandbox is available") and "\n" not in message
    assert not (tmp_path / "run" / "results.tsv").exists()


async def test_auto_without_a_sandbox_runs_and_says_so(tmp_path, home) -> None:
    run_dir, rows = await run_engine(tmp_path, [BETTER], None, sandbox_backends=[])
    assert statuses(rows) == [(0, "keep"), (1, "keep")]
    events = list(read_events(run_dir / "events.jsonl"))
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    assert started.sandbox.startswith("sandbox: NONE, runs are not confined")
    assert any(isinstance(e, ev.Notice) and e.level == "warning" and e.message == started.sandbox for e in events)
    # ... and everywhere else a person looks: `ar-tui status`, the app's status line, the report.
    from ar_tui.core.control.view import RunView
    from ar_tui.headless import describe_status
    from ar_tui.report.build import build_report
    from ar_tui.report.markdown import render_markdown

    view = RunView()
    for event in events:
        view.apply(event)
    assert view.unconfined and view.summary()["unconfined"]
    assert f"WARNING {started.sandbox}" in describe_status(view.summary())
    report = build_report(run_dir)
    assert "NONE, runs are not confined" in render_markdown(report, chart=False)


async def test_the_startup_line_names_the_sandbox_in_force(tmp_path, backend, home) -> None:
    run_dir, _ = await run_engine(tmp_path, [], backend)
    started = next(e for e in read_events(run_dir / "events.jsonl") if isinstance(e, ev.RunStarted))
    assert started.sandbox == f"sandbox: {backend.name}, network off"


async def test_a_run_ended_at_its_timeout_leaves_no_process(tmp_path, backend, home) -> None:
    mark = f"ar-tui-hang-{os.getpid()}-{backend.name}"
    hang = hostile("hang", DAEMON.format(mark=mark) + "\n    time.sleep(60)\n")
    started = time.monotonic()
    _, rows = await run_engine(tmp_path, [hang], backend, config="[target]\ntime_budget = 1\ntimeout = 3\n")
    assert rows[1].status == "crash" and "timeout" in rows[1].rule
    assert time.monotonic() - started < 30
    assert daemons(mark) == []


# ---------------------------------------------------------------- the parts, one by one


def test_the_macos_profile_denies_by_default_and_hides_after_it_allows(tmp_path) -> None:
    from ar_tui.core.sandbox.backends import SandboxPolicy, seatbelt_profile

    run_dir = str(tmp_path / "run")
    worktree = f"{run_dir}/worktrees/slot-0"
    policy = SandboxPolicy(read=("/usr", '/odd "quoted" path'), write=(worktree, "/private/tmp/scratch"),
                           hidden=(run_dir, "/Users/me/.ssh"))
    profile = seatbelt_profile(policy)
    lines = profile.splitlines()
    assert lines[:2] == ["(version 1)", "(deny default)"]
    assert '(subpath "/odd \\"quoted\\" path")' in profile
    assert "(allow network*)" not in profile and "system-socket" not in profile
    read = next(i for i, line in enumerate(lines) if line.startswith("(allow file-read* (subpath"))
    deny = next(i for i, line in enumerate(lines) if line.startswith("(deny file-read* file-write*"))
    # In SBPL the later rule wins: the hidden paths come after what is allowed,
    # and the worktree inside the hidden run dir comes back after that.
    assert read < deny and f'(subpath "{run_dir}")' in lines[deny] and '(subpath "/Users/me/.ssh")' in lines[deny]
    assert lines[deny + 1] == f'(allow file-read* file-write* (subpath "{worktree}"))'
    assert "(allow signal (target same-sandbox))" in lines
    assert "(allow network*)" in seatbelt_profile(SandboxPolicy(network=True))


def test_resolution_of_auto_require_and_off() -> None:
    from ar_tui.core.sandbox.backends import SandboxError, resolve_sandbox

    class Missing:
        name = "missing"

        def unavailable(self):
            return "not installed"

    class Present:
        name = "present"

        def unavailable(self):
            return None

    assert resolve_sandbox("auto", backends=[Missing(), Present()]).describe() == "sandbox: present, network off"
    assert resolve_sandbox("require", True, [Present()]).describe() == "sandbox: present, network on"
    none = resolve_sandbox("auto", backends=[Missing()])
    assert not none.confined
    assert none.describe() == "sandbox: NONE, runs are not confined (missing: not installed)"
    assert resolve_sandbox("off", backends=[Present()]).describe() == "sandbox: off (--sandbox off): runs are not confined"
    with pytest.raises(SandboxError, match=r"^--sandbox require: no sandbox is available \(missing: not installed\)$"):
        resolve_sandbox("require", backends=[Missing()])
    with pytest.raises(SandboxError, match="expected one of auto, require, off"):
        resolve_sandbox("strict")


def test_a_prepare_that_runs_an_editable_file_is_confined() -> None:
    from ar_tui.core.sandbox.policy import runs_editable_file

    editable = ["train.py", "lib/model.py"]
    assert runs_editable_file("python train.py --prepare", editable)
    assert runs_editable_file("python ./train.py", editable)
    assert runs_editable_file("python -m lib.model", editable)
    assert runs_editable_file("cd x && python 'unbalanced", editable)  # unreadable: assume the worst
    assert not runs_editable_file("python prepare.py", editable)
    assert not runs_editable_file("python -m nanochat.prepare", editable)


def test_landlock_rules_never_allow_a_hidden_path_inside_an_allowed_one(tmp_path) -> None:
    from ar_tui.core.sandbox.backends import _allow_except

    for name in ("a/keep", "a/run/worktrees/slot-0", "a/run/worktrees/slot-1", "b"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "a" / "run" / "results.tsv").write_text("")
    root, run = str(tmp_path / "a"), str(tmp_path / "a" / "run")
    allowed = _allow_except([root, str(tmp_path / "b")], [run])
    assert allowed == [f"{root}/keep", str(tmp_path / "b")]
    # A path beneath a hidden one that the policy gives back stays.
    assert _allow_except([f"{run}/worktrees/slot-0"], [run]) == [f"{run}/worktrees/slot-0"]


def test_the_bubblewrap_command_hides_then_gives_the_worktree_back(tmp_path, home) -> None:
    from ar_tui.core.sandbox.policy import SandboxSettings, hidden_paths, make_policy

    run_dir = tmp_path / "run"
    worktree = run_dir / "worktrees" / "slot-0"
    worktree.mkdir(parents=True)
    (home / ".config" / "gcloud").mkdir(parents=True)
    settings = SandboxSettings(read=[str(home)], write=[str(home / ".ssh")])  # a credential is never allowed
    policy = make_policy(write=[worktree], hidden=hidden_paths(run_dir), settings=settings)
    assert str(home) in policy.read and str(home / ".ssh") not in policy.write
    args = Bubblewrap("bwrap").argv(policy, ["true"], worktree)
    assert "--unshare-net" in args and "--die-with-parent" in args and "--unshare-pid" in args
    ssh = args.index(str(home / ".ssh"))
    assert args[ssh - 1] == "--tmpfs" and args.index("--bind") > ssh
    assert args[args.index("--bind") + 1] == str(worktree)
    assert args[-4:] == ["--chdir", str(worktree), "--", "true"]


def test_nothing_in_the_childs_environment_names_the_run_dir(tmp_path) -> None:
    from ar_tui.core.sandbox.policy import RunScratch, confined_env

    run_dir, data = tmp_path / "home" / "runs" / "night", tmp_path / "home"
    scratch = RunScratch(tmp_path / "scratch")
    env = {"AR_TUI_HOME": str(data), "LOG": f"--run-dir={run_dir}", "PATH": f"{run_dir}/bin:/usr/bin:.",
           "PYTHONPATH": f":{tmp_path}/lib:relative", "LANG": "C.UTF-8", "PWD": str(run_dir),
           "GITHUB_TOKEN": "ghp_x", "AWS_SECRET_ACCESS_KEY": "x", "SSH_AUTH_SOCK": "/tmp/agent", "WANDB_API_KEY": "w"}
    clean = confined_env(env, scratch, [run_dir, data], declared=["WANDB_API_KEY"])
    assert all(str(data) not in value for value in clean.values())
    assert not {"GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "SSH_AUTH_SOCK"} & clean.keys()
    assert clean["WANDB_API_KEY"] == "w"  # the target declared it in [target] env
    assert clean["PATH"] == "/usr/bin" and clean["PYTHONPATH"] == f"{tmp_path}/lib"
    assert clean["LANG"] == "C.UTF-8" and clean["HOME"] == str(scratch.home) and clean["TMPDIR"] == str(scratch.tmp)


def test_orphans_are_found_by_an_opaque_marker(tmp_path) -> None:
    import subprocess

    from ar_tui.core.executors.process import RUN_MARKER_ENV, kill_orphans, run_marker

    run_dir = tmp_path / "run"
    marker = run_marker(run_dir)
    assert str(tmp_path) not in marker and marker == run_marker(tmp_path / "run" / ".." / "run")
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                              env=dict(os.environ, **{RUN_MARKER_ENV: marker}))
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                 env=dict(os.environ, **{RUN_MARKER_ENV: run_marker(tmp_path / "other")}))
    try:
        deadline = time.monotonic() + 10
        while psutil.Process(orphan.pid).environ().get(RUN_MARKER_ENV) != marker and time.monotonic() < deadline:
            time.sleep(0.05)  # until the child has exec'd
        assert kill_orphans(run_dir) == 1
        assert orphan.wait(10) != 0 and bystander.poll() is None
    finally:
        bystander.kill()
        orphan.kill()


async def test_a_prepare_that_runs_the_editable_file_is_confined(tmp_path, backend, home) -> None:
    attack = textwrap.dedent(f"""\
        import sys
        if "--prepare" in sys.argv:
            open({str(home / "pwned.txt")!r}, "w").write("planted by prepare")
    """) + TINY_TRAIN
    config = FAST_CONFIG.replace("[target]\n", '[target]\nprepare = "python train.py --prepare"\n')
    target = make_target(tmp_path / "target", train=attack, config=config)
    options = EngineOptions(target_dir=target, tag="s", run_dir=tmp_path / "run", attended=False, lookahead=0,
                            baseline_runs=1, max_experiments=0, sandbox_backends=[backend])
    stopped = await Engine(options, ScriptedProposer([])).run()
    assert stopped.error and stopped.reason.startswith("prepare command failed") and "exit code 1" in stopped.reason
    assert not (home / "pwned.txt").exists()


def test_a_reset_removes_untracked_and_ignored_files_but_keeps_declared_caches(tmp_path) -> None:
    from ar_tui.core.records.git import GitRepo

    repo = make_target(tmp_path / "repo" / "target", extra={".gitignore": "*.pt\n__pycache__/\n"})
    git_repo = GitRepo(repo, "t")
    git_repo.keep = [".cache"]
    worktree = tmp_path / "wt"
    target = git_repo.ensure_worktree(worktree, git_repo.head_commit())
    for name in ("planted.py", "model.pt", "__pycache__/x.pyc", ".cache/compiled.bin", "sub/.cache/other"):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text("x")
    git_repo.reset(worktree, git_repo.head_commit())
    left = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file() and ".git" not in p.parts)
    assert left == [".cache/compiled.bin", ".gitignore", "prepare.py", "train.py"]
