"""The compiled model: every weight of the transformer as exact numbers on residual slots.

``CompiledModel`` is what the compiler hands to ``model``: the embedding columns, the
positional slots, one ``Block`` (attention heads + FFN units) per layer and the
unembedding rows, all as sparse rows ``((slot, coefficient), ...)`` of ints/Fractions.
It also keeps the lowered program, the schedule and the slot placements, for the
numerics checks and for debugging. ``card`` is the one-call summary (print it).
"""

from __future__ import annotations

from dataclasses import dataclass

from wasmformer.graph import Range
from wasmformer.graph.values import Value

from .allocate import Allocation, Placement
from .errors import CompilerError
from .guards import choose_guards
from .program import Form, Mlp, Program
from .schedule import Schedule

Row = tuple[tuple[int, Value], ...]  # sparse weight row: (residual slot, coefficient)


@dataclass(frozen=True, slots=True)
class CompiledHead:
    name: str
    kind: str  # "lookup" or "mean"
    strict: bool
    query: tuple[Row, ...]
    key: tuple[Row, ...]
    value: tuple[Row, ...]
    out_slots: tuple[int, ...]  # value row i is added to residual slot out_slots[i]
    value_ranges: tuple[Range, ...] = ()  # what value row i can hold (its features' ranges)


@dataclass(frozen=True, slots=True)
class CompiledUnit:
    """One hidden unit: adds ``weight * relu(gate . x) * (value . x)`` to ``out_slot``."""

    name: str  # the FFN node it belongs to (for a clearing unit: the feature it clears)
    gate: Row
    value: Row
    weight: Value
    out_slot: int
    clears: bool = False  # a slot-clearing unit added by the allocation
    guards: tuple[int, ...] = ()  # slots whose 0 shuts the gate (``guards.py``)


@dataclass(frozen=True, slots=True)
class Block:
    heads: tuple[CompiledHead, ...]
    units: tuple[CompiledUnit, ...]


@dataclass(frozen=True, slots=True)
class ModelCard:
    layers: int
    d_model: int
    n_head: int  # heads per attention sublayer (the widest; others are zero-padded)
    d_qk: int
    d_v: int
    d_ff: int  # hidden units per FFN sublayer (the widest)
    heads: int  # heads actually used, all layers
    units: int  # hidden units actually used, all layers
    clear_units: int  # of which slot-clearing units
    params: int
    nonzeros: int
    vocab_size: int
    max_len: int
    schedule: str

    def __str__(self) -> str:
        rows = [
            ("layers", self.layers), ("d_model", self.d_model),
            ("heads/layer", f"{self.n_head} (d_qk {self.d_qk}, d_v {self.d_v}; "
                            f"{self.heads} used in all)"),
            ("FFN width", f"{self.d_ff} ({self.units} units used, {self.clear_units} clearing)"),
            ("parameters", f"{self.params:,}"), ("non-zeros", f"{self.nonzeros:,}"),
            ("vocabulary", self.vocab_size), ("max_len", self.max_len),
            ("schedule", self.schedule),
        ]
        return "\n".join(f"{name:<12} {value}" for name, value in rows)


@dataclass(frozen=True, slots=True)
class CompiledModel:
    vocab_size: int
    max_len: int
    d_model: int
    embedding: tuple[Row, ...]  # per token: its embedding vector (the constant one included)
    position_slots: tuple[int | None, int | None]  # slots of p and p**2 (None: unused)
    blocks: tuple[Block, ...]
    unembedding: tuple[Row, ...]  # per token: its logit row
    program: Program
    schedule: Schedule
    allocation: Allocation

    @property
    def n_head(self) -> int:
        return max((len(b.heads) for b in self.blocks), default=0) or 1

    @property
    def d_qk(self) -> int:
        return max((len(h.query) for b in self.blocks for h in b.heads), default=0) or 1

    @property
    def d_v(self) -> int:
        return max((len(h.value) for b in self.blocks for h in b.heads), default=0) or 1

    @property
    def d_ff(self) -> int:
        return max((len(b.units) for b in self.blocks), default=0) or 1

    @property
    def card(self) -> ModelCard:
        return _card(self)


def assemble(program: Program, schedule: Schedule, allocation: Allocation) -> CompiledModel:
    slot = allocation.slot_map()
    embedding = tuple(
        _row(Form(tuple((f, f.table[t]) for f in program.sources if f.table is not None)), slot)
        for t in range(program.vocab_size))
    positions = {f.position_power: slot[f] for f in program.sources if f.position_power}
    guards = choose_guards(u for op in program.ops if isinstance(op, Mlp) for u in op.units)
    blocks = tuple(_block(program, schedule, allocation, slot, guards, b)
                   for b in range(1, schedule.depth + 1))
    unembedding = tuple(_row(form, slot) for form in program.logits)
    return CompiledModel(program.vocab_size, program.max_len, allocation.d_model, embedding,
                         (positions.get(1), positions.get(2)), blocks, unembedding,
                         program, schedule, allocation)


def _block(program, schedule, allocation, slot, guards, block: int) -> Block:
    heads, units = [], []
    for op, stage in zip(program.ops, schedule.stages, strict=True):
        if stage == 2 * block - 1:
            heads.append(CompiledHead(
                op.name, op.kind, op.strict, tuple(_row(f, slot) for f in op.query),
                tuple(_row(f, slot) for f in op.key), tuple(_row(f, slot) for f in op.values),
                tuple(slot[f] for f in op.outputs), tuple(f.range for f in op.values)))
        elif stage == 2 * block:
            units += [CompiledUnit(op.name, _row(u.gate, slot), _row(u.value, slot), u.weight,
                                   slot[op.output],
                                   guards=tuple(slot[f] for f in guards[id(u)]))
                      for u in op.units]
    units += [_clear_unit(p, slot[program.one]) for p in allocation.placements
              if p.cleared == 2 * block]
    return Block(tuple(heads), tuple(units))


def _clear_unit(placement: Placement, one_slot: int) -> CompiledUnit:
    """relu(1) * (-old): adds exactly -old to the slot, leaving 0 for its next feature."""
    return CompiledUnit(placement.feature.name, ((one_slot, 1),), ((placement.slot, -1),), 1,
                        placement.slot, clears=True)


def _row(form: Form, slot: dict) -> Row:
    row: dict[int, Value] = {}
    for f, c in form.terms:
        if slot[f] in row:
            raise CompilerError(f"two live features share slot {slot[f]} in one row: {form}")
        if c != 0:
            row[slot[f]] = c
    return tuple(sorted(row.items()))


def _card(m: CompiledModel) -> ModelCard:
    d, v, h, f = m.d_model, m.vocab_size, m.n_head, m.d_ff
    layers = len(m.blocks)
    per_block = 2 * d * h * m.d_qk + 2 * d * h * m.d_v + 3 * d * f
    params = 2 * v * d + 2 * d + layers * per_block
    heads = [hd for b in m.blocks for hd in b.heads]
    units = [u for b in m.blocks for u in b.units]
    nonzeros = (sum(len(r) for r in m.embedding) + sum(s is not None for s in m.position_slots)
                + sum(len(r) for hd in heads for r in hd.query + hd.key + hd.value)
                + sum(len(hd.out_slots) for hd in heads)
                + sum(len(u.gate) + len(u.value) + (u.weight != 0) for u in units)
                + sum(len(r) for r in m.unembedding))
    clears = sum(u.clears for u in units)
    return ModelCard(layers, d, h, m.d_qk, m.d_v, f, len(heads), len(units), clears, params,
                     nonzeros, v, m.max_len, f"{m.schedule.method} ({m.schedule.note})")
