"""The compiler's IR: a graph lowered to materialised features and weight-shaped operations.

Lowering (``lower.py``) turns a ``graph.Graph`` into a ``Program``:
  * every value that needs a residual dimension is a ``Feature``: the constant one, the
    token columns of the embedding, the positional features p (and p² when a lookup
    needs it), and the outputs of attention heads and FFN nodes;
  * every ``Linear`` of the graph becomes a ``Form`` over features (its bias is the
    coefficient of the constant-one feature), i.e. one row of some weight matrix;
  * every op is a ``Head`` (one attention head: query/key rows, value rows, outputs) or an
    ``Mlp`` (gated-ReLU hidden units writing one feature), with the lookup's scaling,
    shift and tie-break already folded into its query/key rows.

Everything here is exact (ints and Fractions) and frozen; later passes only read it.
"""

from __future__ import annotations

from dataclasses import dataclass

from wasmformer.graph import Range
from wasmformer.graph.values import Value


@dataclass(frozen=True, eq=False, slots=True)
class Feature:
    """One materialised scalar per position (one residual dimension while it is live).

    A source is read from the embedding: ``table`` is its token column, or
    ``position_power`` is 1 (p) or 2 (p²) for the positional encoding. Other features
    are written by the op that lists them in its outputs.
    """

    name: str
    range: Range
    table: tuple[Value, ...] | None = None
    position_power: int = 0

    @property
    def is_source(self) -> bool:
        return self.table is not None or self.position_power > 0

    def __repr__(self) -> str:
        return f"Feature({self.name!r}, {self.range})"


@dataclass(frozen=True, slots=True)
class Form:
    """``sum(c * feature)``: one row of a weight matrix, before slots are assigned."""

    terms: tuple[tuple[Feature, Value], ...] = ()

    @property
    def features(self) -> tuple[Feature, ...]:
        return tuple(f for f, _ in self.terms)

    def scaled(self, c: Value) -> Form:
        return Form(tuple((f, k * c) for f, k in self.terms)) if c != 0 else Form()

    @property
    def range(self) -> Range:
        """Every value the row takes, from its features' ranges (interval arithmetic)."""
        total = Range.point(0)
        for f, c in self.terms:
            total = total + f.range.scale(c)
        return total

    def __str__(self) -> str:
        return " + ".join(f"{c}*{f.name}" for f, c in self.terms) or "0"


@dataclass(frozen=True, eq=False, slots=True)
class Head:
    """One attention head: score(p, j) = sum_d query[d](p) * key[d](j), softmax over the
    causal prefix (j < p when ``strict``), then ``outputs[i] = sum_j w_j * values[i](j)``.

    A lookup head's rows make the scores integers times 2**10 with a unique maximum (see
    ``lower.py``), so the softmax is an exact one-hot; a mean head has no query/key rows
    (all scores 0: a uniform average).
    """

    name: str
    kind: str  # "lookup" or "mean"
    strict: bool
    query: tuple[Form, ...]
    key: tuple[Form, ...]
    values: tuple[Form, ...]
    outputs: tuple[Feature, ...]

    @property
    def reads(self) -> tuple[Feature, ...]:
        return _features(self.query + self.key + self.values)


@dataclass(frozen=True, slots=True)
class Hidden:
    """One gated-ReLU hidden unit: contributes ``weight * relu(gate) * value`` to the output."""

    gate: Form
    value: Form
    weight: Value


@dataclass(frozen=True, eq=False, slots=True)
class Mlp:
    """One FFN node: ``output = sum(u.weight * relu(u.gate) * u.value for u in units)``."""

    name: str
    units: tuple[Hidden, ...]
    output: Feature

    @property
    def outputs(self) -> tuple[Feature, ...]:
        return (self.output,)

    @property
    def reads(self) -> tuple[Feature, ...]:
        return _features(tuple(x for u in self.units for x in (u.gate, u.value)))


Op = Head | Mlp


@dataclass(frozen=True, slots=True)
class Program:
    """A lowered graph: sources (embedding), ops in topological order, one logit row per token."""

    vocab_size: int
    max_len: int
    one: Feature
    sources: tuple[Feature, ...]  # ``one`` first
    ops: tuple[Op, ...]
    logits: tuple[Form, ...]
    min_margin: Value

    @property
    def features(self) -> tuple[Feature, ...]:
        """Every materialised feature: sources, then op outputs in op order."""
        return self.sources + tuple(f for op in self.ops for f in op.outputs)

    def writer(self) -> dict[Feature, Op]:
        return {f: op for op in self.ops for f in op.outputs}


def _features(forms: tuple[Form, ...]) -> tuple[Feature, ...]:
    """The distinct features read by ``forms``, in first-seen order."""
    seen: dict[Feature, None] = {}
    for form in forms:
        for f in form.features:
            seen.setdefault(f, None)
    return tuple(seen)
