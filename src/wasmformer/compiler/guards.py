"""Gate guards: the features whose zero shuts an FFN unit, proven from the graph's ranges.

Most hidden units of an interpreter serve one instruction or one step of it: their gate is
``[op == X] + [k == j] - (everything that must be off) - 1``, positive only while every
condition holds. A *guard* of a unit is a feature ``f`` of its gate form such that the gate
is <= 0 whenever ``f`` is 0, whatever the other features hold within their ranges: the
largest value the other terms can reach is <= 0. Then relu(gate) = 0 and the unit adds
nothing, so a decoder that sees ``f == 0`` may skip the unit's three rows altogether
(``engine.fast`` does; the torch module ignores guards).

The claim is exact arithmetic over the declared ranges; a float model is entitled to it only
where its features are computed exactly (``model.build`` keeps guards only for a model the
numerics guard proves bit-exact).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from .program import Feature, Form, Hidden

GUARDS_PER_UNIT = 2  # a unit is skipped when any of its guards is 0


def gate_guards(gate: Form) -> list[Feature]:
    """Every feature f of ``gate`` (0 in its range) such that gate <= 0 whenever f == 0."""
    highs = [max(c * f.range.lo, c * f.range.hi) for f, c in gate.terms]
    top = sum(highs)
    return [f for (f, c), high in zip(gate.terms, highs, strict=True)
            if c != 0 and f.range.contains(0) and top - high <= 0]


def choose_guards(units: Iterable[Hidden]) -> dict[int, tuple[Feature, ...]]:
    """Up to ``GUARDS_PER_UNIT`` guards per unit (keyed by ``id(unit)``), the rarest first:
    a feature that guards fewer units is the more specific condition (an opcode's flag
    rather than a step counter every opcode shares), so more often 0."""
    units = list(units)
    candidates = {id(u): gate_guards(u.gate) for u in units}
    uses = Counter(f for fs in candidates.values() for f in fs)
    return {key: tuple(sorted(fs, key=lambda f: uses[f])[:GUARDS_PER_UNIT])
            for key, fs in candidates.items()}
