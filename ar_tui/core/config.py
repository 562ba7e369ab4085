"""Target configuration: `autoresearch.toml` at the root of a target, or the
defaults that fit an unmodified karpathy/autoresearch checkout; and
`RunOption`, how a part (a strategy, an executor, an agent) declares a
setting of its own."""

from __future__ import annotations

import argparse
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ar_tui.core.decisions import NO_MIN_EFFECT, MinEffect, parse_min_effect
from ar_tui.core.direction import Direction
from ar_tui.core.errors import UserError
from ar_tui.core.sandbox.policy import SandboxSettings

CONFIG_NAME = "autoresearch.toml"


class ConfigError(UserError):
    """Bad input from the user; the message is one line meant for them."""


@dataclass(frozen=True)
class RunOption:
    """A setting a part of a run takes, written once where the part is: the
    command line offers it as `--name-with-dashes`, the run stores its value
    in options.json (`RunOptions.extra[name]`), and a resume that gives
    another value is refused unless it is `adjustable`."""

    name: str  # the key in the stored options, and the flag's argparse dest
    help: str
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    switch: bool = False  # a flag without a value: given means True
    # Stored at a run's first start when not given, so that a resume cannot
    # switch it by a changed default. None: not stored.
    default: Any = None
    adjustable: bool = False  # may change at resume, like a budget
    toml: str | None = None  # where autoresearch.toml sets it ("offline.search"), when it does

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def confidence_level(text: str) -> float:
    value = float(text)
    if not 0.5 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0.5 and 1 (e.g. 0.95), not {text}")
    return value


@dataclass
class TargetConfig:
    root: Path  # the target directory (inside a git repository)
    editable: list[str] = field(default_factory=lambda: ["train.py"])
    protected: list[str] = field(default_factory=lambda: ["prepare.py"])
    run: str = "python train.py"
    prepare: str | None = None  # run once before the baseline, must be idempotent
    # Paths in the user's checkout (usually git-ignored: prepared data, a base
    # checkpoint) every run sees read-only at the same place (core.records.target_data).
    data: list[str] = field(default_factory=list)
    metric: str = "val_bpb"
    direction: str = "min"
    pattern: str | None = None  # regex with one group; default: a `metric: value` line
    memory_pattern: str = r"^(?:peak_vram_mb|peak_memory_mb):\s*([-+0-9.eE]+)"
    evaluate: str | None = None  # trusted evaluation command; `{checkpoint}` is replaced
    min_effect: MinEffect = NO_MIN_EFFECT  # the smallest gain worth keeping (absolute, or "x%")
    time_budget: float = 300.0
    timeout: float | None = None  # hard limit per run; default 2 * budget + 60
    max_file_bytes: int = 512 * 1024
    env: dict[str, str] = field(default_factory=dict)
    # The interpreter `python` means in the commands; None: found from the
    # target (ar_tui.core.interpreter).
    python: str | None = None
    # [prices."model-id"]: $ per million tokens for models the built-in table
    # lacks (ar_tui.core.money.pricing.Price values, keyed by model id).
    prices: dict[str, Any] = field(default_factory=dict)
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)  # the [sandbox] table
    limits: dict = field(default_factory=dict)  # the [limits] table, read by ar_tui.core.executors.limits
    team: dict[str, Any] = field(default_factory=dict)  # [team]: checked by ar_tui.agents.team
    offline: dict[str, Any] = field(default_factory=dict)  # [offline]: checked by ar_tui.agents.offline
    gpu_usd_per_hour: float | None = None  # [cost]: the price of a GPU hour (ar_tui.core.money.gpu_cost)
    notify: dict[str, Any] = field(default_factory=dict)  # [notify]: checked by ar_tui.notify
    track: dict[str, Any] = field(default_factory=dict)  # [track]: checked by ar_tui.track
    source: str = "defaults"  # where this came from, for messages

    @property
    def hard_timeout(self) -> float:
        return self.timeout if self.timeout is not None else 2 * self.time_budget + 60

    @property
    def metric_regex(self) -> re.Pattern[str]:
        pattern = self.pattern or rf"^\s*{re.escape(self.metric)}\s*[:=]\s*(\S+)"
        return re.compile(pattern, re.MULTILINE)

    def better(self, a: float, b: float) -> bool:
        """True when metric `a` is strictly better than `b`."""
        return Direction.parse(self.direction).better(a, b)

    def improvement(self, new: float, old: float) -> float:
        """How much better `new` is than `old`, positive when better."""
        return Direction.parse(self.direction).improvement(new, old)


_KNOWN = {
    "target": {"editable", "protected", "data", "run", "prepare", "time_budget", "timeout", "max_file_bytes", "env", "python"},
    "metric": {"name", "direction", "pattern", "memory_pattern", "evaluate", "min_effect"},
    "prices": None,  # any model id; checked by ar_tui.core.money.pricing
    "sandbox": {"network", "read", "write", "keep"},
    "team": {"planner", "worker", "reviewer", "plan_every", "web_search"},
    "offline": {"search", "sampler"},  # the offline proposer's default search for this target
    "cost": {"gpu_usd_per_hour"},
    "notify": {"urls", "crash_streak", "stall_after"},  # ar_tui.notify.settings
    "track": {"to", "uri", "project"},  # ar_tui.track.settings
    "limits": {"memory", "processes", "writes"},  # per run (ar_tui.core.executors.limits)
}


def _line_of(text: str, key: str) -> int | None:
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf"\s*{re.escape(key)}\s*=", line):
            return number
    return None


def load_target(root: Path) -> TargetConfig:
    """Read `autoresearch.toml` in `root`, or return the defaults."""
    root = Path(root).resolve()
    config = TargetConfig(root=root)
    path = root / CONFIG_NAME
    if not path.exists():
        return config
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None

    def fail(key: str, message: str) -> ConfigError:
        line = _line_of(text, key.split(".")[-1])
        where = f"{path}:{line}" if line else str(path)
        return ConfigError(f"{where}: {key}: {message}")

    for section, values in data.items():
        if section not in _KNOWN:
            raise fail(section, f"unknown section [{section}]; expected [target], [metric], [prices], [sandbox], "
                                "[team], [offline], [cost], [notify], [track] and [limits]")
        if not isinstance(values, dict):
            raise fail(section, "must be a table")
        for key in values:
            if _KNOWN[section] is not None and key not in _KNOWN[section]:
                raise fail(f"{section}.{key}", f"unknown key; known: {', '.join(sorted(_KNOWN[section]))}")

    target = data.get("target", {})
    metric = data.get("metric", {})

    def string_list(key: str) -> list[str]:
        value = target[key]
        if not isinstance(value, list) or not value and key == "editable" or not all(
            isinstance(v, str) and v for v in value
        ):
            raise fail(f"target.{key}", "must be a non-empty list of file paths")
        for v in value:
            if Path(v).is_absolute() or ".." in Path(v).parts:
                raise fail(f"target.{key}", f"{v!r} must be a path inside the target")
        return list(value)

    def string(section: dict, name: str, key: str) -> str:
        value = section[key]
        if not isinstance(value, str) or not value.strip():
            raise fail(f"{name}.{key}", "must be a non-empty string")
        return value

    def number(key: str) -> float:
        value = target[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise fail(f"target.{key}", "must be a positive number of seconds")
        return float(value)

    if "editable" in target:
        config.editable = string_list("editable")
    if "protected" in target:
        config.protected = string_list("protected")
    if "data" in target:
        config.data = _data_paths(target["data"], config.editable + config.protected, fail)
    if "run" in target:
        config.run = string(target, "target", "run")
    if "prepare" in target:
        config.prepare = string(target, "target", "prepare")
    if "python" in target:
        config.python = string(target, "target", "python")
    if "time_budget" in target:
        config.time_budget = number("time_budget")
    if "timeout" in target:
        config.timeout = number("timeout")
    if "max_file_bytes" in target:
        config.max_file_bytes = int(number("max_file_bytes"))
    if "env" in target:
        env = target["env"]
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise fail("target.env", "must be a table of string values")
        config.env = dict(env)
    if "name" in metric:
        config.metric = string(metric, "metric", "name")
    if "direction" in metric:
        direction = metric["direction"]
        if direction not in {d.value for d in Direction}:
            raise fail("metric.direction", f"must be \"min\" or \"max\", not {direction!r}")
        config.direction = direction
    for key in ("pattern", "memory_pattern"):
        if key in metric:
            value = string(metric, "metric", key)
            try:
                compiled = re.compile(value)
            except re.error as exc:
                raise fail(f"metric.{key}", f"not a valid regular expression: {exc}") from None
            if compiled.groups < 1:
                raise fail(f"metric.{key}", "needs one group that captures the number")
            setattr(config, key, value)
    if "evaluate" in metric:
        config.evaluate = string(metric, "metric", "evaluate")
    if "min_effect" in metric:
        try:
            config.min_effect = parse_min_effect(metric["min_effect"])
        except ValueError as exc:
            raise fail("metric.min_effect", str(exc)) from None
    if "prices" in data:
        from ar_tui.core.money.pricing import PriceError, parse_price_overrides

        try:
            config.prices = parse_price_overrides(data["prices"])
        except PriceError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    if "sandbox" in data:
        config.sandbox = _sandbox_settings(data["sandbox"], root, fail)
    config.limits = dict(data.get("limits", {}))
    config.team = dict(data.get("team", {}))
    config.offline = dict(data.get("offline", {}))
    config.notify = dict(data.get("notify", {}))
    config.track = dict(data.get("track", {}))
    if "gpu_usd_per_hour" in data.get("cost", {}):
        rate = data["cost"]["gpu_usd_per_hour"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate < 0:
            raise fail("cost.gpu_usd_per_hour", "must be a price in dollars of 0 or more, e.g. 2.49")
        config.gpu_usd_per_hour = float(rate)
    overlap = set(config.editable) & set(config.protected)
    if overlap:
        raise fail("target.protected", f"{', '.join(sorted(overlap))} cannot be both editable and protected")
    config.source = str(path)
    return config


def _data_paths(value: Any, files: list[str], fail: Any) -> list[str]:
    """[target] data: paths inside the target, none inside another, none an
    editable or protected file."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise fail("target.data", "must be a list of paths in the target, e.g. [\"data/shakespeare\"]")
    paths: list[str] = []
    for v in value:
        path = Path(v)
        if path.is_absolute() or ".." in path.parts or path.as_posix() in (".", ""):
            raise fail("target.data", f"{v!r} must be a path inside the target")
        paths.append(path.as_posix())
    for a in paths:
        for b in paths:
            if a != b and b.startswith(a + "/"):
                raise fail("target.data", f"{b} is inside {a}; name one of them")
        for rel in files:
            if rel == a or rel.startswith(a + "/"):
                raise fail("target.data", f"{a} holds {rel}, which the agent edits or ar-tui protects")
    return list(dict.fromkeys(paths))


def _sandbox_settings(table: dict, root: Path, fail: Any) -> SandboxSettings:
    """[sandbox]: `network` (bool), `read` and `write` (paths, `~` and relative
    to the target allowed), `keep` (worktree paths that survive the clean
    before each run, e.g. a cache)."""
    settings = SandboxSettings()
    if "network" in table:
        if not isinstance(table["network"], bool):
            raise fail("sandbox.network", "must be true or false")
        settings.network = table["network"]
    for key in ("read", "write", "keep"):
        if key not in table:
            continue
        value = table[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise fail(f"sandbox.{key}", "must be a list of paths")
        if key == "keep":
            if any(Path(v).is_absolute() or ".." in Path(v).parts for v in value):
                raise fail("sandbox.keep", "paths must be inside the target")
            settings.keep = list(value)
        else:
            setattr(settings, key, [str((root / Path(v).expanduser()).resolve()) for v in value])
    return settings


def validate_files(config: TargetConfig) -> None:
    """Refuse a target whose editable or protected files are missing."""
    for rel in config.editable + config.protected:
        if not (config.root / rel).is_file() and config.source == "defaults":
            # Without a config the defaults are karpathy/autoresearch's; this repository is another kind.
            raise ConfigError(f"{config.root}: no {CONFIG_NAME} here and karpathy/autoresearch's defaults do not fit "
                              f"(no {rel}); run `ar-tui init {config.root}` to write one")
        if not (config.root / rel).is_file():
            kind = "editable" if rel in config.editable else "protected"
            raise ConfigError(f"{config.root}: {kind} file {rel} does not exist")
