"""The hand-written search ("classic"): coordinate steps and parabola fits
over a training script's knobs, learning from every result.

Each call rebuilds everything it knows from `ctx.history`, so a resumed run or
a fresh instance proposes exactly what this one would. `Search` is also the
one reading of the ledger in knob space that the Optuna search builds on: the
point every experiment ran, which code it ran on, the ceilings that crashes
put on knobs, and what was tried or is still running.

The method, per knob, in the knob's own scale (log for learning rates, powers
of two for batch sizes, linear for ratios and depth):
- an untried knob gets a first step in a direction drawn from the seed;
- a kept move is followed by a larger one the same way;
- a failed move is answered by the same step the other way;
- when both sides of the current best are worse, a parabola through the three
  points gives the next try, until the bracket is narrower than the knob's
  resolution;
- knobs are chosen by how much moving them has changed the metric so far,
  discounted by their run of failures; now and then, and more often when
  progress stalls, the two most promising moves are combined.
A crash going up in a memory-hungry knob or a learning rate (or any crash
whose log says it ran out of memory) puts a ceiling on that knob; any other
crash rules out the value that caused it. No point is proposed twice from the
same code, and nothing that is still running (`ctx.unseen`) is proposed again.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import NamedTuple

from ar_tui.agents.offline.descriptions import OUT_OF_MEMORY, changes_from_diff, key, parse_description, values_text
from ar_tui.agents.offline.knobs import (
    LEARNING_RATE,
    SCALE_LOG2,
    Knob,
    Move,
    Plan,
    Values,
    format_value,
    is_head_size,
    is_model_width,
    snap_part,
)
from ar_tui.core.direction import Direction
from ar_tui.core.proposer import ProposalContext, ProposalFailed

GROWTH = 1.5  # a kept move is followed by one this much larger
FAILURE_DECAY = 0.7  # each failure in a row makes a knob this much less attractive
UNSEEN_PENALTY = 0.2  # knobs already moving in a running experiment wait their turn
PAIR_SHARE = 0.15  # how often a two-knob move is tried once every knob has been tried
RECHECK_SCALES = (1.0, 2.0, 0.5)  # first steps of a knob's kind, when nothing better is left
STALL = 8  # decided experiments without a keep after which pairs are tried far more often
MOMENTUM_SCORE = 2000.0  # a kept move is followed up before anything else
EXPLORE_SCORE = 1000.0  # times the kind's weight: untried knobs next

@dataclass
class Trial:
    """One decided experiment, placed in knob space."""

    exp: int
    status: str
    changes: dict[str, tuple[float, float]]  # knob -> (old, new) first-part values
    point: dict[str, float] | None  # every knob's value after the change; None when code changed too
    epoch: int  # which version of the code (outside the knobs) it ran on; 0 is the current one
    loss: float | None  # the metric, oriented so that lower is better; None for crash / veto
    base_loss: float | None


class Candidate(NamedTuple):
    target: float  # the first part's value, before rounding
    mode: str  # explore / momentum / probe / refine / recheck / rescale
    why: str
    gain: float | None = None  # the improvement a fitted parabola predicts


class Search:
    """Everything the search knows, rebuilt from the context, and the next move."""

    def __init__(self, knobs: list[Knob], ctx: ProposalContext, seed: int) -> None:
        self.knobs = knobs
        self.by_name = {knob.name: knob for knob in knobs}
        self.ctx = ctx
        self.seed = seed
        self.rng = random.Random(f"offline:{seed}:{ctx.exp}:{len(ctx.history)}")
        self.current = {knob.name: key(knob.value) for knob in knobs}
        self.trials: list[Trial] = []
        self.tried: set[frozenset] = set()
        self.unseen_points: set[frozenset] = set()
        self.unseen_knobs: set[str] = set()
        self.tries = {name: 0 for name in self.by_name}
        self.failures_in_a_row = {name: 0 for name in self.by_name}
        self.deltas: dict[str, list[float]] = {name: [] for name in self.by_name}
        self.last_success: dict[str, tuple[float, float]] = {}  # knob -> (old, new) of its last kept move
        self.momentum: set[str] = set()  # knobs in the latest keep, not moved since
        self.ceiling: dict[str, float] = {}
        self.bad_values: dict[str, set[float]] = {name: set() for name in self.by_name}
        self.kept = 0
        self.since_keep = 0
        self._rebuild()

    # -- orientation -----------------------------------------------------

    def loss_of(self, metric: float | None) -> float | None:
        if metric is None or not math.isfinite(metric):
            return None
        return Direction.parse(self.ctx.target.direction).loss(metric)

    def _row_changes(self, row) -> tuple[dict[str, tuple[float, float]], bool]:
        if row.description.strip() == "baseline":
            return {}, False
        parsed = parse_description(row.description)
        if parsed is not None and all(change.name in self.by_name for change in parsed):
            return {c.name: (c.old[0], c.new[0]) for c in parsed}, False
        if row.diff:
            return changes_from_diff(row.diff, set(self.by_name))
        return {}, True

    def _rebuild(self) -> None:
        rows = self.ctx.history
        parsed = [self._row_changes(row) for row in rows]
        # Walk the keeps backwards from the current values to learn what every
        # knob held when each experiment ran.
        values = dict(self.current)
        epoch = 0
        after_keep: dict[int, tuple[dict[str, float], int]] = {}
        for index in reversed(range(len(rows))):
            if rows[index].status != "keep":
                continue
            after_keep[index] = (dict(values), epoch)
            changes, structural = parsed[index]
            for name, (old, _new) in changes.items():
                values[name] = key(old)
            if structural:
                epoch -= 1
        base, base_epoch = values, epoch
        base_loss: float | None = None
        last_crash = max((i for i, row in enumerate(rows) if row.status == "crash"), default=None)
        for index, row in enumerate(rows):
            changes, structural = parsed[index]
            loss = self.loss_of(row.metric) if row.status in ("keep", "discard") else None
            if row.status == "keep":
                point, point_epoch = after_keep[index]
            elif structural:
                point, point_epoch = None, base_epoch
            else:
                point = dict(base)
                point.update({name: key(new) for name, (_old, new) in changes.items()})
                point_epoch = base_epoch
            trial = Trial(row.exp, row.status, changes, point, point_epoch, loss, base_loss)
            self.trials.append(trial)
            if point is not None:
                self.tried.add(self._point_key(point, point_epoch))
            self._learn(
                trial, out_of_memory=index == last_crash and bool(OUT_OF_MEMORY.search(self.ctx.last_failure_tail))
            )
            if row.status == "keep":
                base, base_epoch = after_keep[index]
                if loss is not None:
                    base_loss = loss
        for _exp, description in self.ctx.unseen:
            running = parse_description(description) or []
            self.unseen_knobs.update(change.name for change in running)
            if running:
                point = dict(self.current)
                point.update({c.name: key(c.new[0]) for c in running if c.name in point})
                self.unseen_points.add(self._point_key(point, 0))
        self.tried.add(self._point_key(self.current, 0))
        self.best_loss = self.loss_of(self.ctx.best_metric)
        if self.best_loss is None:
            self.best_loss = base_loss

    @staticmethod
    def _point_key(point: dict[str, float], epoch: int) -> frozenset:
        return frozenset(point.items()) | {("@epoch", epoch)}

    def _learn(self, trial: Trial, out_of_memory: bool) -> None:
        changes = trial.changes
        if trial.status == "keep" and changes:
            self.kept += 1
            self.since_keep = 0
            self.momentum = set(changes)
            for name, (old, new) in changes.items():
                if name in self.by_name:
                    self.last_success[name] = (old, new)
                    self.failures_in_a_row[name] = 0
        elif trial.status != "keep":
            self.since_keep += 1
            self.momentum -= set(changes)
        for name in changes:
            if name not in self.by_name:
                continue
            self.tries[name] += 1
            if trial.status in ("discard", "crash"):
                self.failures_in_a_row[name] += 1
        if len(changes) == 1 and trial.loss is not None and trial.base_loss is not None:
            (name,) = changes
            if name in self.by_name:
                self.deltas[name].append(trial.loss - trial.base_loss)
        if trial.status == "crash":
            for name, (old, new) in changes.items():
                knob = self.by_name.get(name)
                if knob is None:
                    continue
                # Bigger models and batches run out of memory, higher learning
                # rates diverge: past such a crash, further is no better.
                if new > old and (knob.kind.memory or knob.kind is LEARNING_RATE or out_of_memory):
                    self.ceiling[name] = min(self.ceiling.get(name, math.inf), key(new))
                elif len(changes) == 1:
                    self.bad_values[name].add(key(new))

    # -- candidate moves -------------------------------------------------

    def _evidence(self, knob: Knob) -> dict[float, float]:
        """What is known about moving `knob` away from its current value, as
        {u: how much worse than here}, gathered from every single-knob
        experiment that started from this value (on any earlier best: the
        knobs interact little enough for that to be the best guess) and from
        the value it was last kept from. A crash counts as infinitely worse."""
        kind = knob.kind
        here = self.current[knob.name]
        evidence: dict[float, float] = {}
        for trial in self.trials:
            if len(trial.changes) != 1 or knob.name not in trial.changes or trial.status == "veto":
                continue
            old, new = (key(v) for v in trial.changes[knob.name])
            if trial.status == "crash":
                delta = math.inf
            elif trial.loss is None or trial.base_loss is None:
                continue
            else:
                delta = trial.loss - trial.base_loss
            if old == here and kind.movable(new):
                evidence[kind.to_u(new)] = delta
            elif new == here and trial.status == "keep" and math.isfinite(delta) and kind.movable(old):
                evidence[kind.to_u(old)] = -delta
        return evidence

    def _values_at(self, knob: Knob, target: float) -> Values | None:
        """Every part's new value when the first part moves to `target` (a
        value, before rounding), or None when that is no move at all."""
        kind = knob.kind
        current = knob.value
        if kind.lower is not None:
            target = max(target, kind.lower)
        if kind.upper is not None:
            target = min(target, kind.upper)
        first = snap_part(knob, 0, target, self.knobs)
        if kind.integer and first == current and target != current and kind.movable(current):
            # Rounding ate the move: take the smallest step that survives it.
            direction = 1 if target > current else -1
            for multiple in range(1, 65):
                nudged = kind.from_u(kind.to_u(current) + direction * multiple * kind.resolution)
                if kind.lower is not None and nudged < kind.lower:
                    break
                first = snap_part(knob, 0, nudged, self.knobs)
                if first != current:
                    break
        if not kind.allows(first) or key(first) == key(current):
            return None
        if key(first) in self.bad_values[knob.name] or key(first) >= self.ceiling.get(knob.name, math.inf):
            return None
        values: list[float | int] = [first]
        shift = kind.to_u(first) - kind.to_u(current) if kind.movable(current) else None
        for index, part in enumerate(knob.parts[1:], start=1):
            if shift is None or not kind.movable(part.value):
                values.append(part.value)
                continue
            values.append(snap_part(knob, index, kind.from_u(kind.to_u(part.value) + shift), self.knobs))
        return tuple(values)

    def _point_with(self, moves: list[tuple[Knob, Values]]) -> frozenset:
        point = dict(self.current)
        for knob, values in moves:
            point[knob.name] = key(values[0])
        return self._point_key(point, 0)

    def _fresh(self, moves: list[tuple[Knob, Values]]) -> bool:
        key = self._point_with(moves)
        return key not in self.tried and key not in self.unseen_points

    def _fmt(self, knob: Knob, value: float) -> str:
        return format_value(value, knob.parts[0].text, knob.kind.integer)

    def candidates(self, knob: Knob) -> list[Candidate]:
        """The next values worth trying for `knob`, best first."""
        kind = knob.kind
        name = knob.name
        current = knob.value
        result: list[Candidate] = []

        def add(u: float, mode: str, why: str, gain: float | None = None) -> None:
            result.append(Candidate(kind.from_u(u), mode, why, gain))

        def shown(u: float) -> str:
            return self._fmt(knob, kind.from_u(u))

        def worse(point: tuple[float, float]) -> str:
            return "crashed" if math.isinf(point[1]) else f"was worse by {point[1]:.4g}"

        if not kind.movable(current):
            if kind.from_zero:
                result.append(Candidate(kind.from_zero, "explore", f"{name} is {current}; trying a small value", None))
            return result
        u0 = kind.to_u(current)
        evidence = self._evidence(knob)
        for u, delta in sorted(evidence.items(), key=lambda item: item[1]):
            if delta < 0:
                # It did better than this value once (on an earlier best, or
                # inside the noise band): worth trying here.
                add(u, "probe", f"{name} {shown(u)} once did better than {shown(u0)} by {-delta:.4g}; trying it here")
        points = [(u, delta) for u, delta in evidence.items() if delta >= 0]
        left = max((p for p in points if p[0] < u0 - 1e-12), default=None)
        right = min((p for p in points if p[0] > u0 + 1e-12), default=None)
        success = self.last_success.get(name)
        step = kind.step
        if success and kind.movable(success[0]) and kind.movable(success[1]):
            step = abs(kind.to_u(success[1]) - kind.to_u(success[0]))
        step = min(max(step, kind.resolution), kind.max_step)

        if left and right:
            gap_left, gap_right = u0 - left[0], right[0] - u0
            if math.isfinite(left[1]) and math.isfinite(right[1]):
                # Both neighbours are worse than here (0, the evidence is
                # relative): the parabola through the three has its minimum
                # in between; its second divided difference is its curvature.
                x1, y1, x3, y3 = left[0], left[1], right[0], right[1]
                numerator = (u0 - x1) ** 2 * (0 - y3) - (u0 - x3) ** 2 * (0 - y1)
                denominator = (u0 - x1) * (0 - y3) - (u0 - x3) * (0 - y1)
                if denominator != 0:
                    vertex = u0 - 0.5 * numerator / denominator
                    vertex = min(max(vertex, x1 + 0.25 * gap_left), x3 - 0.25 * gap_right)
                    curvature = (y3 / gap_right + y1 / gap_left) / (gap_left + gap_right)
                    if abs(vertex - u0) >= kind.resolution:
                        add(
                            vertex,
                            "refine",
                            f"{name}: both neighbours are worse ({shown(x1)} {worse(left)}, {shown(x3)} "
                            f"{worse(right)}); a parabola through the three puts the best near {shown(vertex)}",
                            max(0.0, curvature * (vertex - u0) ** 2) if curvature > 0 else None,
                        )
            for gap, sign, neighbour in sorted(((gap_left, -1, left), (gap_right, 1, right)), key=lambda g: -g[0]):
                if gap / 2 >= kind.resolution:
                    add(
                        u0 + sign * gap / 2,
                        "refine",
                        f"{name}: {shown(neighbour[0])} {worse(neighbour)}; trying halfway",
                    )
            return result

        momentum = name in self.momentum and success is not None
        if left or right:
            neighbour = left or right
            sign = 1 if left else -1  # away from the worse side
            distance = abs(u0 - neighbour[0])
            if momentum and key(success[0]) == key(kind.from_u(neighbour[0])):
                # A power of two already doubles; it keeps its step.
                far = distance if kind.scale == SCALE_LOG2 else min(kind.max_step, GROWTH * distance)
                add(
                    u0 + sign * far,
                    "momentum",
                    f"{name} {shown(neighbour[0])} -> {shown(u0)} was kept; going further the same way, with a larger step",
                )
            add(
                u0 + sign * min(max(distance, kind.resolution), kind.max_step),
                "probe",
                f"{name} {shown(neighbour[0])} {worse(neighbour)}; trying the other side",
            )
            if distance / 2 >= kind.resolution:
                add(u0 - sign * distance / 2, "probe", f"{name}: the other side is closed; trying halfway")
            return result

        if success:
            direction = 1 if success[1] > success[0] else -1
        else:
            direction = 1 if random.Random(f"offline:{self.seed}:{name}").random() < 0.5 else -1
        way = "up" if direction > 0 else "down"
        if self.tries[name] == 0:
            add(u0 + direction * step, "explore", f"{name} ({kind.label}) has not been moved yet")
            add(u0 - direction * step, "explore", f"{name} ({kind.label}) has not been moved yet; the other way")
            return result
        if momentum:
            # A power of two already doubles; it keeps its step.
            further = step if kind.scale == SCALE_LOG2 else min(kind.max_step, step * GROWTH)
            add(u0 + direction * further, "momentum", f"{name} was just kept going {way}; going further")
        elif success:
            add(
                u0 + direction * step,
                "probe",
                f"{name} was last kept going {way}; trying that way again from the new best",
            )
        else:
            add(
                u0 + direction * step,
                "probe",
                f"{name}: nothing is known about moving it from {shown(u0)}; a step {way}",
            )
        add(u0 - direction * step, "probe", f"{name}: trying the other way")
        return result

    def best_move(self, knob: Knob) -> Move | None:
        candidates = self.candidates(knob)
        if knob.kind.movable(knob.value):
            # When the evidence leaves nothing to try, a plain step either way
            # checks the knob again on the current best (knobs do interact),
            # and after that, bigger and smaller steps: a long night should
            # not end while there are moves nobody has tried.
            for scale in RECHECK_SCALES:
                for sign in (1, -1):
                    target = self._stepped(knob, sign * scale)
                    mode = "recheck" if scale == 1 else "rescale"
                    candidates.append(Candidate(target, mode, f"{knob.name}: checking again on the current best"))
        for candidate in candidates:
            values = self._values_at(knob, candidate.target)
            if values is None or not self._fresh([(knob, values)]):
                continue
            score = self._score(knob, candidate.mode, candidate.gain)
            return Move(knob, values, candidate.mode, candidate.why, score)
        return None

    def sensitivity(self, name: str) -> float | None:
        deltas = [abs(d) for d in self.deltas[name]]
        return sum(deltas) / len(deltas) if deltas else None

    def _score(self, knob: Knob, mode: str, gain: float | None) -> float:
        name = knob.name
        if self.tries[name] == 0:
            score = EXPLORE_SCORE * knob.kind.weight
        elif mode == "momentum":
            score = MOMENTUM_SCORE
        else:
            known = [s for s in (self.sensitivity(n) for n in self.by_name) if s is not None]
            typical = sorted(known)[len(known) // 2] if known else 1.0
            sensitivity = self.sensitivity(name)
            if sensitivity is None:
                sensitivity = typical
            if mode == "refine":
                score = gain if gain is not None else 0.25 * sensitivity
            elif mode == "recheck":
                score = 0.03 * sensitivity
            elif mode == "rescale":
                score = 0.01 * sensitivity
            else:
                score = 0.5 * sensitivity
            score *= FAILURE_DECAY ** self.failures_in_a_row[name]
            if self.ctx.noise_sd and sensitivity < self.ctx.noise_sd:
                score *= 0.5
        if name in self.unseen_knobs:
            score *= UNSEEN_PENALTY
        # A tiny seeded jitter breaks ties without favouring file order.
        return score * (1.0 + 1e-6 * self.rng.random())

    # -- the plan --------------------------------------------------------

    def _coupled(self, a: Knob, b: Knob) -> bool:
        return (is_model_width(a) and is_head_size(b)) or (is_head_size(a) and is_model_width(b))

    def plan(self) -> Plan:
        moves = [m for m in (self.best_move(knob) for knob in self.knobs) if m is not None]
        moves.sort(key=lambda m: -m.score)
        reasoning = [self._summary()]
        if moves:
            reasoning.append(
                "Most promising: "
                + ", ".join(f"{m.knob.name} -> {values_text(m.new)} ({m.mode})" for m in moves[:3])
                + "."
            )
            explored = all(self.tries[m.knob.name] > 0 for m in moves)
            stalled = self.since_keep >= STALL
            want_pair = explored and (self.rng.random() < PAIR_SHARE or (stalled and self.rng.random() < 0.5))
            if want_pair:
                pair = self._pair_of(moves)
                if pair:
                    reasoning.append(
                        "Combining the two most promising moves in one experiment"
                        + (f" (no keep in the last {self.since_keep})." if stalled else ".")
                    )
                    return Plan(pair, reasoning)
            return Plan([moves[0]], reasoning)
        pair = self._exhaustive_pair()
        if pair:
            reasoning.append("Every knob is settled at the current best on its own; trying two together.")
            return Plan(pair, reasoning)
        raise ProposalFailed("offline search exhausted: every knob is settled at the current best, alone and in pairs")

    def _pair_of(self, moves: list[Move]) -> list[Move] | None:
        directional = [m for m in moves if m.mode != "refine"]
        for i, first in enumerate(directional):
            for second in directional[i + 1 :]:
                if self._coupled(first.knob, second.knob):
                    continue
                if self._fresh([(first.knob, first.new), (second.knob, second.new)]):
                    return [
                        Move(first.knob, first.new, "pair", first.why, first.score),
                        Move(second.knob, second.new, "pair", second.why, second.score),
                    ]
        return None

    def _exhaustive_pair(self) -> list[Move] | None:
        order = [
            k for k in sorted(self.knobs, key=lambda k: -(self.sensitivity(k.name) or 0.0)) if k.kind.movable(k.value)
        ]
        for scale in RECHECK_SCALES:  # every pair at the usual step before any at another
            for i, a in enumerate(order):
                for b in order[i + 1 :]:
                    if self._coupled(a, b):
                        continue
                    for sign_a in (1, -1):
                        for sign_b in (1, -1):
                            values_a = self._values_at(a, self._stepped(a, sign_a * scale))
                            values_b = self._values_at(b, self._stepped(b, sign_b * scale))
                            if values_a and values_b and self._fresh([(a, values_a), (b, values_b)]):
                                why = f"{a.name} and {b.name} together"
                                return [Move(a, values_a, "pair", why), Move(b, values_b, "pair", why)]
        return None

    @staticmethod
    def _stepped(knob: Knob, steps: float) -> float:
        """The value `steps` first steps of its kind away from the current one."""
        kind = knob.kind
        return kind.from_u(kind.to_u(knob.value) + steps * kind.step)

    def _summary(self) -> str:
        decided = [t for t in self.trials if t.status != "keep" or t.changes]
        files = sorted({k.path for k in self.knobs})
        best = self.ctx.best_metric
        best_text = f"; best {self.ctx.target.metric} {best:.6g}" if best is not None else ""
        return (
            f"Offline search over {len(self.knobs)} knobs in {', '.join(files)}: "
            f"{len(decided)} results so far, {self.kept} kept{best_text}."
        )

