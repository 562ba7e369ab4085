"""A training script's tunable constants: finding them, naming their kind,
and writing new values back in the script's own style. How a change of them
is described in the ledger, and read back, is `descriptions`'s.

karpathy/autoresearch keeps every knob of `train.py` as a module-level
constant with an inline comment (`MATRIX_LR = 0.04  # learning rate for ...`).
This module reads those with `ast`, recognises what each knob is from its name
(a learning rate moves in log space, a batch size in powers of two, a ratio
stays within [0, 1]) and leaves alone what is not a hyperparameter (seeds, the
time budget, strings, booleans, logging intervals).
"""

from __future__ import annotations

import ast
import io
import math
import re
import tokenize
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

from ar_tui.core.proposer import ProposalFailed
from ar_tui.core.workspace import Workspace, WorkspaceError

# The unit of a move: a knob's value is mapped to a coordinate `u` in which a
# step of the same size means a change of similar consequence.
SCALE_LOG = "log"  # u = ln v: learning rates, weight decay, widths
SCALE_LOG_ONE_MINUS = "log1m"  # u = -ln(1 - v): betas and momenta (0.9 -> 0.95 is one halving of 1 - v)
SCALE_LINEAR = "linear"  # u = v: ratios and fractions, depth
SCALE_LOG2 = "log2"  # u = log2 v, whole numbers only: powers of two


@dataclass(frozen=True)
class Kind:
    label: str  # in words, for the agent pane
    scale: str
    step: float  # the first move, in u units
    resolution: float  # the smallest move worth an experiment, in u units
    max_step: float
    weight: float  # prior importance: the order in which untried knobs are explored
    integer: bool = False
    lower: float | None = None  # bounds on the value itself
    upper: float | None = None
    memory: bool = False  # a larger value needs more memory: a crash going up means "stop going up"
    from_zero: float | None = None  # where a log-scale knob that is 0 goes first
    granular: bool = False  # integer moves keep to multiples of a power of two (see granularity)

    def to_u(self, value: float) -> float:
        if self.scale == SCALE_LOG:
            return math.log(value)
        if self.scale == SCALE_LOG_ONE_MINUS:
            return -math.log(1.0 - value)
        if self.scale == SCALE_LOG2:
            return math.log2(value)
        return float(value)

    def from_u(self, u: float) -> float:
        if self.scale == SCALE_LOG:
            return math.exp(u)
        if self.scale == SCALE_LOG_ONE_MINUS:
            return 1.0 - math.exp(-u)
        if self.scale == SCALE_LOG2:
            return 2.0 ** u
        return u

    def movable(self, value: float) -> bool:
        """Whether `value` has a coordinate at all (log of 0 has none)."""
        if self.scale in (SCALE_LOG, SCALE_LOG2):
            return value > 0
        if self.scale == SCALE_LOG_ONE_MINUS:
            return value < 1
        return True

    def snap(self, value: float, current: float) -> float | int:
        """Round a proposed value to one worth writing: three significant
        digits for floats, whole multiples of the knob's granularity for
        integers, a power of two for powers of two."""
        # Halves round up, not to even, so that a step of 1.5 always means the same move.
        if self.scale == SCALE_LOG2:
            return int(2 ** math.floor(math.log2(max(value, 1.0)) + 0.5))
        if self.integer:
            grain = granularity(current) if self.granular else 1
            return int(max(grain, math.floor(value / grain + 0.5) * grain))
        if self.scale == SCALE_LINEAR:
            return round(value, 3)
        if self.scale == SCALE_LOG_ONE_MINUS:
            return round(1.0 - float(f"{1.0 - value:.2g}"), 6)
        return float(f"{value:.3g}")

    def allows(self, value: float) -> bool:
        if self.lower is not None and value < self.lower:
            return False
        if self.upper is not None and value > self.upper:
            return False
        return self.movable(value)


def granularity(value: float) -> int:
    """Integer widths move in multiples of a power of two about a quarter of
    their size (64 -> 48 or 80, 768 -> 640 or 896), so that products with
    head counts and batch splits stay divisible as often as they can."""
    if value < 4:
        return 1
    return 2 ** (int(math.log2(value)) - 2)


def _is_power_of_two(value: float) -> bool:
    return isinstance(value, int) and value > 0 and value & (value - 1) == 0


LN2 = math.log(2.0)

LEARNING_RATE = Kind("learning rate", SCALE_LOG, LN2, math.log(1.1), math.log(8.0), weight=1.0)
WEIGHT_DECAY = Kind(
    "weight decay", SCALE_LOG, LN2, math.log(1.2), math.log(8.0), weight=0.6, from_zero=0.01
)
BETA = Kind(
    "beta / momentum", SCALE_LOG_ONE_MINUS, LN2, math.log(1.25), math.log(4.0), weight=0.5,
    lower=0.5, upper=0.999,
)
EPSILON = Kind("epsilon", SCALE_LOG, math.log(10.0), math.log(3.0), math.log(100.0), weight=0.1)
FRACTION = Kind("ratio / fraction", SCALE_LINEAR, 0.1, 0.025, 0.3, weight=0.7, lower=0.0, upper=1.0)
POWER_OF_TWO_BATCH = Kind(
    "batch size (powers of two)", SCALE_LOG2, 1.0, 1.0, 2.0, weight=0.9, integer=True, lower=1, memory=True
)
INTEGER_BATCH = Kind(
    "batch size", SCALE_LOG, LN2, math.log(1.25), math.log(4.0), weight=0.9, integer=True, lower=1,
    memory=True, granular=True,
)
POWER_OF_TWO_LENGTH = Kind(
    "sequence length (powers of two)", SCALE_LOG2, 1.0, 1.0, 2.0, weight=0.5, integer=True, lower=8,
    memory=True,
)
DEPTH = Kind("depth", SCALE_LINEAR, 1.0, 1.0, 4.0, weight=0.8, integer=True, lower=1, memory=True)
WIDTH = Kind(
    "width", SCALE_LOG, math.log(1.5), math.log(1.1), math.log(4.0), weight=0.8, integer=True, lower=1,
    memory=True, granular=True,
)
POWER_OF_TWO_HEADS = Kind(
    "heads / head size (powers of two)", SCALE_LOG2, 1.0, 1.0, 2.0, weight=0.4, integer=True, lower=1,
    memory=True,
)
INTEGER_HEADS = Kind("heads", SCALE_LINEAR, 2.0, 1.0, 4.0, weight=0.4, integer=True, lower=1, memory=True)
SCHEDULE_LENGTH = Kind(
    "warmup / warmdown length", SCALE_LOG, LN2, math.log(1.25), math.log(8.0), weight=0.5, integer=True,
    lower=1, granular=True,
)
GENERIC_SCALE = Kind("positive scale", SCALE_LOG, LN2, math.log(1.2), math.log(8.0), weight=0.3)

# Name words that mark a constant as something other than a hyperparameter.
_NOT_HYPERPARAMETERS = {
    "seed", "time", "budget", "eval", "evaluation", "log", "logging", "interval", "print", "save",
    "checkpoint", "ckpt", "verbose", "debug", "vocab", "port", "rank", "world", "workers", "profile",
    "compile", "iters", "iter", "iterations", "steps", "step", "epochs", "epoch", "patience",
    "threads", "loss",
}
_SCHEDULE_WORDS = {"warmup", "warmdown", "cooldown"}
_FRACTION_WORDS = {"ratio", "frac", "fraction", "dropout", "pct", "percent", "share", "prob", "probability"}
_LR_WORDS = {"lr", "learning"}
_DECAY_WORDS = {"decay", "wd"}
_EPS_WORDS = {"eps", "epsilon"}
_BATCH_WORDS = {"batch", "tokens", "accumulation", "accum", "micro"}
_LENGTH_WORDS = {"seq", "block", "context", "ctx", "len", "length"}
_DEPTH_WORDS = {"depth", "layer", "layers", "nlayer", "blocks"}
_HEAD_WORDS = {"head", "heads", "kv", "nhead"}
_WIDTH_WORDS = {
    "width", "dim", "embd", "emb", "embed", "embedding", "hidden", "dmodel", "channels", "aspect",
    "mlp", "ffn", "nembd",
}


def name_words(name: str) -> list[str]:
    """`MATRIX_LR` -> [matrix, lr]; `nEmbd` -> [n, embd]; `ADAM_BETAS` -> [adam, betas]."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return [word for word in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if word]


def classify(name: str, value: float | int) -> Kind | None:
    """The kind of a constant named `name` holding `value`, or None when it is
    not a hyperparameter this search should touch."""
    if isinstance(value, bool) or name.startswith("_"):
        return None
    words = set(name_words(name))
    schedule = bool(words & _SCHEDULE_WORDS)
    batching = bool(words & {"accumulation", "accum"})
    if words & _NOT_HYPERPARAMETERS and not (schedule or batching):
        return None
    is_int = isinstance(value, int)
    # A whole-number 1 is a multiple (MLP_RATIO = 1 after a keep took 4 down
    # to it), not a fraction: a fraction of one is written 1.0. Otherwise the
    # knob's kind, and the values it may take, would flip with its value.
    if words & _FRACTION_WORDS and 0 <= value <= 1 and not (is_int and value == 1):
        return FRACTION
    if any(word.startswith(("beta", "momentum")) for word in words) and 0 < value < 1:
        return BETA
    if words & _LR_WORDS and not is_int:
        return LEARNING_RATE if value > 0 else None
    if words & _DECAY_WORDS and not is_int and value >= 0:
        return WEIGHT_DECAY
    if words & _EPS_WORDS and not is_int and value > 0:
        return EPSILON
    if not is_int:
        return GENERIC_SCALE if value > 0 and not words & (_BATCH_WORDS | _DEPTH_WORDS) else None
    if value <= 0:
        return None
    if schedule:
        return SCHEDULE_LENGTH
    if words & _BATCH_WORDS:
        return POWER_OF_TWO_BATCH if _is_power_of_two(value) else INTEGER_BATCH
    if words & _LENGTH_WORDS:
        return POWER_OF_TWO_LENGTH if _is_power_of_two(value) else None
    if words & _DEPTH_WORDS or words == {"n", "layer"}:
        return DEPTH
    if words & _HEAD_WORDS and words & {"dim", "size"}:
        # A head's width: moves like a width, and the search keeps it a
        # divisor of the model width when the script makes it one.
        return WIDTH
    if words & _HEAD_WORDS:
        return POWER_OF_TWO_HEADS if _is_power_of_two(value) else INTEGER_HEADS
    if words & _WIDTH_WORDS:
        return WIDTH
    return None


class NotAConstant(ValueError):
    pass


_MAX_EXPONENT = 256


def evaluate_constant(node: ast.AST) -> float | int:
    """The value of a numeric literal or of simple arithmetic on literals
    (`2**19`, `3e-4`, `-1`, `1/3`); anything else raises NotAConstant."""
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise NotAConstant("not a number")
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
        operand = evaluate_constant(node.operand)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp):
        left, right = evaluate_constant(node.left), evaluate_constant(node.right)
        op = node.op
        try:
            if isinstance(op, ast.Add):
                return left + right
            if isinstance(op, ast.Sub):
                return left - right
            if isinstance(op, ast.Mult):
                return left * right
            if isinstance(op, ast.Div):
                return left / right
            if isinstance(op, ast.FloorDiv):
                return left // right
            if isinstance(op, ast.Pow) and abs(right) <= _MAX_EXPONENT:
                return left**right
        except (ZeroDivisionError, OverflowError):
            raise NotAConstant("arithmetic error") from None
    raise NotAConstant(type(node).__name__)


def parse_value(text: str) -> float | int:
    """A value as written in a description or a script (`0.04`, `2**19`)."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise NotAConstant(f"not a number: {text!r}") from None
    return evaluate_constant(tree.body)


def format_value(value: float | int, like: str, integer: bool) -> str:
    """Write `value` the way the script wrote the old one: `2**18` stays a
    power expression, `3e-4` stays in e-notation, a float stays a float."""
    if integer:
        value = int(value)
        power = re.fullmatch(r"\s*(\d+)\s*\*\*\s*(\d+)\s*", like)
        if power and value > 0:
            base = int(power.group(1))
            exponent = round(math.log(value, base)) if base > 1 else 0
            if base > 1 and base**exponent == value:
                return f"{base}**{exponent}"
        return str(value)
    value = float(value)
    if "e" in like.lower() and value != 0:
        mantissa, exponent = f"{value:.2e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    text = f"{value:.6g}"
    if "e" in text:
        return text
    return text if "." in text else text + ".0"


@dataclass(frozen=True)
class Part:
    """One literal of a knob: `0.04` in `MATRIX_LR = 0.04`, or `4` and `12`
    in `DEPTH = per_device(4, 12)`."""

    value: float | int
    text: str  # as written
    line: int  # 1-based
    start: int  # byte offsets within the line
    end: int


@dataclass(frozen=True)
class Knob:
    """A tunable constant. Most have one part. A call of literals such as
    `per_device(4, 12)` (one value per device class) has several, and they
    move together: the first is the one the search reasons about, the others
    take the same step in the knob's scale."""

    name: str  # "MATRIX_LR", or "ADAM_BETAS[1]" for an element of a tuple
    path: str  # the editable file it lives in
    kind: Kind
    parts: tuple[Part, ...]
    comment: str = ""
    statement: tuple[int, int] = (0, 0)  # first and last line of the assignment

    @property
    def value(self) -> float | int:
        return self.parts[0].value

    @property
    def text(self) -> str:
        """The value(s) as written, `|`-separated for several parts."""
        return "|".join(part.text for part in self.parts)

    @cached_property
    def words(self) -> frozenset[str]:
        return frozenset(name_words(self.name.split("[")[0]))


def _inline_comments(source: str) -> dict[int, str]:
    comments: dict[int, str] = {}
    try:
        for token in tokenize.generate_tokens(io.StringIO(source).readline):
            if token.type == tokenize.COMMENT:
                comments[token.start[0]] = token.string.lstrip("#").strip()
    except (tokenize.TokenError, SyntaxError):
        pass
    return comments


_POWER_OF_TWO_FALLBACK = {
    POWER_OF_TWO_BATCH: INTEGER_BATCH,
    POWER_OF_TWO_HEADS: INTEGER_HEADS,
    POWER_OF_TWO_LENGTH: None,
}


def _kind_of_parts(name: str, values: list[float | int]) -> Kind | None:
    """One kind for all parts of a knob; powers of two only when every part is one."""
    kinds = {classify(name, value) for value in values}
    if len(kinds) > 1:
        kinds = {_POWER_OF_TWO_FALLBACK.get(kind, kind) for kind in kinds}
    if len(kinds) != 1 or None in kinds:
        return None
    (kind,) = kinds
    if not all(kind.movable(v) or kind.from_zero is not None for v in values):
        return None
    return kind


def find_knobs(path: str, source: str) -> list[Knob]:
    """The tunable constants assigned at module level in `source`, in order.

    Raises SyntaxError when the script does not parse."""
    tree = ast.parse(source)
    comments = _inline_comments(source)
    lines = source.split("\n")
    knobs: list[Knob] = []
    seen: set[str] = set()

    def part_of(node: ast.AST) -> Part | None:
        try:
            value = evaluate_constant(node)
        except NotAConstant:
            return None
        if isinstance(value, float) and not math.isfinite(value) or node.lineno != node.end_lineno:
            return None
        line_bytes = lines[node.lineno - 1].encode("utf-8")
        text = line_bytes[node.col_offset : node.end_col_offset].decode("utf-8")
        return Part(value, text, node.lineno, node.col_offset, node.end_col_offset)

    def add(name: str, nodes: list[ast.AST], statement: ast.stmt) -> None:
        parts = [part_of(node) for node in nodes]
        if not parts or any(part is None for part in parts):
            return
        kind = _kind_of_parts(name, [part.value for part in parts])
        if kind is None:
            return
        end_line = statement.end_lineno or statement.lineno
        knobs.append(
            Knob(
                name=name,
                path=path,
                kind=kind,
                parts=tuple(parts),
                comment=comments.get(end_line, ""),
                statement=(statement.lineno, end_line),
            )
        )

    for statement in tree.body:
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        name = target.id
        # A name assigned twice is computed, not a knob: editing the first
        # assignment alone would do nothing.
        if name in seen:
            knobs = [k for k in knobs if k.name.split("[")[0] != name]
            continue
        seen.add(name)
        if isinstance(value, ast.Tuple):
            for index, element in enumerate(value.elts):
                add(f"{name}[{index}]", [element], statement)
        elif isinstance(value, ast.Call) and value.args and not value.keywords:
            # `per_device(cpu_value, gpu_value)`: a choice among literals.
            add(name, list(value.args), statement)
        else:
            add(name, [value], statement)
    return knobs


def edit_for(source: str, knob: Knob, new_texts: list[str]) -> tuple[str, str]:
    """The (old_str, new_str) pair that writes `new_texts` over the knob's
    parts through a text editor's str_replace: the assignment's whole
    line(s), grown with neighbouring lines until the old text occurs once."""
    lines = source.split("\n")
    edited = lines[:]
    # Right to left, so that earlier offsets on the same line stay valid.
    for part, text in sorted(zip(knob.parts, new_texts), key=lambda pair: (pair[0].line, pair[0].start), reverse=True):
        line_bytes = edited[part.line - 1].encode("utf-8")
        edited[part.line - 1] = (line_bytes[: part.start] + text.encode("utf-8") + line_bytes[part.end :]).decode("utf-8")
    first, last = knob.statement
    while True:
        old = "\n".join(lines[first - 1 : last])
        if source.count(old) == 1 or (first == 1 and last == len(lines)):
            return old, "\n".join(edited[first - 1 : last])
        first = max(1, first - 1)
        last = min(len(lines), last + 1)


_MODEL_WIDTH_WORDS = {"width", "embd", "nembd", "dmodel", "hidden", "dim", "embedding"}


def is_head_size(knob: Knob) -> bool:
    return bool(knob.words & _HEAD_WORDS and knob.words & {"dim", "size"})


def is_model_width(knob: Knob) -> bool:
    words = knob.words
    return knob.kind is WIDTH and bool(words & _MODEL_WIDTH_WORDS) and not words & (_HEAD_WORDS | {"aspect", "mlp", "ffn", "ratio"})


def snap_part(knob: Knob, index: int, value: float, knobs: list[Knob],
              moved: Mapping[str, Values] | None = None) -> float | int:
    """Round a proposed value for part `index` of `knob`, keeping the
    divisibility the script already has: a model width that is a multiple of
    the head size stays one, and a head size that divides the width keeps
    dividing it (attention reshapes the width into heads). `moved` holds the
    new values of knobs that change in the same proposal: a width is rounded
    to a multiple of the head size it will run with, not the one it had."""
    current = knob.parts[index].value
    if knob.kind.integer:
        for other in knobs:
            if other is knob or len(other.parts) != len(knob.parts):
                continue
            other_now = other.parts[index].value
            other_value = moved[other.name][index] if moved and other.name in moved else other_now
            if is_model_width(knob) and is_head_size(other) and other_now > 0 and current % other_now == 0:
                head = int(other_value)
                return int(max(head, math.floor(value / head + 0.5) * head))
            if is_head_size(knob) and is_model_width(other) and current > 0 and other_now % current == 0:
                width = int(other_value)
                divisors = [d for d in range(2, width + 1, 2) if width % d == 0] or [width]
                return min(divisors, key=lambda d: abs(math.log(d) - math.log(max(value, 1.0))))
    return knob.kind.snap(value, current)


Values = tuple[float | int, ...]


@dataclass
class Move:
    knob: Knob
    new: Values
    mode: str  # a Candidate's mode, or pair / adapt
    why: str
    score: float = 0.0


@dataclass
class Plan:
    moves: list[Move]
    reasoning: list[str] = field(default_factory=list)


def load_knobs(workspace: Workspace) -> list[Knob]:
    """The knobs of every editable file; a name that two files share is
    prefixed with its file (`model.py:DEPTH`)."""
    knobs: list[Knob] = []
    for path in workspace.editable:
        if not path.endswith(".py"):
            continue
        try:
            source = workspace.read(path)
        except WorkspaceError:
            continue
        try:
            knobs.extend(find_knobs(path, source))
        except SyntaxError as exc:
            raise ProposalFailed(f"{path} does not parse (line {exc.lineno}): {exc.msg}") from None
    counts: dict[str, int] = {}
    for knob in knobs:
        counts[knob.name] = counts.get(knob.name, 0) + 1
    return [knob if counts[knob.name] == 1 else replace(knob, name=f"{knob.path}:{knob.name}") for knob in knobs]


