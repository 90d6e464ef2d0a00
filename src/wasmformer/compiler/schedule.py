"""Scheduling: assign every op of a ``Program`` to a sublayer.

Sublayers are numbered by *stage*: 0 is the embedding, block l (1-based) has its
attention sublayer at stage 2l - 1 and its FFN sublayer at stage 2l. An op must run at a
stage strictly after the stages writing everything it reads (sources are stage 0).

Depth first: the ASAP schedule (each op at its earliest stage) reaches the minimum depth,
the longest dependency chain. Then width: with the depth fixed, a MILP (scipy's HiGHS)
places each op in a block of its [ASAP, ALAP] window so as to minimise the most heads in
any attention sublayer, then the most hidden units in any FFN sublayer (one objective,
heads weighted above all units). If HiGHS does not prove an optimum within the time
limit, the ASAP schedule is used and ``Schedule.method`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp
from scipy.sparse import coo_array

from .errors import CompilerError
from .program import Head, Op, Program

TIME_LIMIT_S = 30.0  # the MILP takes ~1-3 s on an idle machine; a loaded one needs the margin
# (a build that gives up falls back to the ASAP schedule: a wider model, still exact)


@dataclass(frozen=True, slots=True)
class Schedule:
    """``stages[i]`` is the stage of ``program.ops[i]``; ``depth`` is the number of blocks."""

    stages: tuple[int, ...]
    depth: int
    method: str  # "milp" (width-optimal for the minimum depth) or "asap" (fallback)
    note: str = ""

    def block(self, i: int) -> int:
        """The 1-based block of op ``i``."""
        return (self.stages[i] + 1) // 2


def schedule_program(program: Program, time_limit: float = TIME_LIMIT_S) -> Schedule:
    deps = dependencies(program)
    early = _asap(program.ops, deps)
    depth = max(((s + 1) // 2 for s in early), default=0)
    late = _alap(program.ops, deps, depth)
    stages, note = _milp(program.ops, deps, early, late, time_limit)
    if stages is None:
        return Schedule(tuple(early), depth, "asap", note)
    return Schedule(tuple(stages), depth, "milp", note)


def dependencies(program: Program) -> list[list[int]]:
    """For each op, the indices of the ops writing what it reads."""
    index = {f: i for i, op in enumerate(program.ops) for f in op.outputs}
    return [sorted({index[f] for f in op.reads if f in index}) for op in program.ops]


def check_schedule(program: Program, schedule: Schedule) -> None:
    """Raise unless every op runs in a sublayer of its kind, after everything it reads."""
    deps = dependencies(program)
    for i, op in enumerate(program.ops):
        s = schedule.stages[i]
        if s < 1 or s % 2 != _parity(op) or (s + 1) // 2 > schedule.depth:
            raise CompilerError(f"op {op.name!r} is at stage {s}, not a valid "
                                f"{'attention' if _parity(op) else 'FFN'} sublayer")
        for d in deps[i]:
            if schedule.stages[d] >= s:
                raise CompilerError(f"op {op.name!r} (stage {s}) reads {program.ops[d].name!r} "
                                    f"written at stage {schedule.stages[d]}")


def width(op: Op) -> int:
    """Heads (attention) or hidden units (FFN) the op needs."""
    return 1 if isinstance(op, Head) else len(op.units)


def _parity(op: Op) -> int:
    """1 for attention ops (odd stages), 0 for FFN ops (even stages)."""
    return 1 if isinstance(op, Head) else 0


def _stage(op: Op, block: int) -> int:
    return 2 * block - _parity(op)


def _asap(ops: tuple[Op, ...], deps: list[list[int]]) -> list[int]:
    stages: list[int] = []
    for op, before in zip(ops, deps, strict=True):
        s = max((stages[d] for d in before), default=0) + 1
        stages.append(s if s % 2 == _parity(op) else s + 1)
    return stages


def _alap(ops: tuple[Op, ...], deps: list[list[int]], depth: int) -> list[int]:
    """The latest stage of each op that still leaves room for everything reading it."""
    limit = [2 * depth + 1] * len(ops)  # stage 2L+1 stands for the unembedding
    stages = [0] * len(ops)
    for i in reversed(range(len(ops))):
        s = limit[i] - 1
        stages[i] = s if s % 2 == _parity(ops[i]) else s - 1
        for d in deps[i]:
            limit[d] = min(limit[d], stages[i])
    return stages


def _milp(ops, deps, early, late, time_limit) -> tuple[list[int] | None, str]:
    """Width-minimal stages within the [early, late] windows, or None and why not."""
    if not ops:
        return [], "no ops"
    columns = [(i, b) for i, op in enumerate(ops)
               for b in range((early[i] + 1) // 2, (late[i] + 1) // 2 + 1)]
    n_heads, n_units = len(columns), len(columns) + 1  # the H and F variables
    total_units = sum(width(op) for op in ops if not isinstance(op, Head))
    cost = np.zeros(len(columns) + 2)
    cost[n_heads], cost[n_units] = total_units + 1, 1
    rows, lo, hi = _constraints(ops, deps, columns, n_heads, n_units)
    matrix = coo_array((rows[2], (rows[0], rows[1])), shape=(len(lo), len(cost)))
    bounds = Bounds(np.zeros(len(cost)), np.r_[np.ones(len(columns)), np.inf, np.inf])
    result = milp(cost, constraints=LinearConstraint(matrix, lo, hi), bounds=bounds,
                  integrality=np.ones(len(cost)), options={"time_limit": time_limit})
    if result.status != 0:
        return None, f"MILP gave up ({result.message}); using the ASAP schedule"
    stages = [0] * len(ops)
    for (i, b), x in zip(columns, result.x, strict=False):
        if x > 0.5:
            stages[i] = _stage(ops[i], b)
    return stages, "optimal"


def _constraints(ops, deps, columns, n_heads, n_units):
    """Sparse rows (row, col, value) with bounds: one block per op, dependencies, widths."""
    entries: tuple[list, list, list] = ([], [], [])
    lo: list[float] = []
    hi: list[float] = []

    def row(cells: list[tuple[int, float]], low: float, high: float) -> None:
        for col, value in cells:
            entries[0].append(len(lo))
            entries[1].append(col)
            entries[2].append(value)
        lo.append(low)
        hi.append(high)

    by_op: dict[int, list[int]] = {}
    for col, (i, _) in enumerate(columns):
        by_op.setdefault(i, []).append(col)
    for i in range(len(ops)):
        row([(col, 1) for col in by_op[i]], 1, 1)
    for i, before in enumerate(deps):  # stage(i) - stage(d) >= 1
        for d in before:
            cells = [(c, _stage(ops[i], columns[c][1])) for c in by_op[i]]
            cells += [(c, -_stage(ops[d], columns[c][1])) for c in by_op[d]]
            row(cells, 1, np.inf)
    for block in sorted({b for _, b in columns}):
        for attention, limit in ((True, n_heads), (False, n_units)):
            cells = [(c, width(ops[i])) for c, (i, b) in enumerate(columns)
                     if b == block and isinstance(ops[i], Head) == attention]
            row(cells + [(limit, -1)], -np.inf, 0)
    return entries, lo, hi
