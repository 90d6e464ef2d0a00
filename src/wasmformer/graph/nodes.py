"""The node kinds and operations of a graph: frozen, typed, owned by a ``Graph``.

Sources (read from the embedding):
  ``TokenFeature``  table[token_id] at each position
  ``Position``      p = 0, 1, 2, ... (index in the whole sequence)
Operations (``Op``), each writing output nodes (plain ``Node``s):
  ``Lookup``  one attention head: nearest key, latest position on ties -> (matched key, values...)
  ``Mean``    one attention head: uniform average over the causal prefix -> one node
  ``Ffn``     one FFN block: sum of gated-ReLU units -> one node
The unembedding is ``Output``. The constant one is not a node: it is ``Linear.bias``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .linear import Linear, Node
from .ranges import Range
from .values import Value


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class TokenFeature(Node):
    """The embedding column ``table[token_id]`` (one entry per vocabulary id)."""

    table: tuple[Value, ...]


@dataclass(frozen=True, eq=False, slots=True, repr=False)
class Position(Node):
    """The position p = 0, 1, 2, ... of the token in the whole sequence (prompt included)."""


@dataclass(frozen=True, eq=False, slots=True)
class Lookup:
    """One hardmax attention head.

    At position p, among candidates j <= p (j < p when ``strict``), pick the j whose
    ``key(j)`` is nearest ``query(p)`` (maximise ``-(query(p) - key(j))**2``), and among
    equal scores the LARGEST j (the latest write). ``outputs[0]`` is ``key(j)``,
    ``outputs[1 + i]`` is ``values[i](j)``. With no candidate (strict, p == 0) every output
    is 0. Query and key are integer-valued Linears. A miss is not signalled: compare
    ``matched_key`` with the query.

    ``key_square``, when given, is (key - centre)**2 as a node of its own, centre =
    ``key_centre(key.range)`` (the compiled head scores the key shifted by its centre and
    needs that square as a residual feature; see ``functions.clamped_key``, which makes a
    clamped key and its square in one FFN layer). The evaluator checks it at every winner.
    """

    name: str
    query: Linear
    key: Linear
    values: tuple[Linear, ...]
    strict: bool
    outputs: tuple[Node, ...]
    key_square: Linear | None = None

    @property
    def centre(self) -> int:
        return key_centre(self.key.range)

    @property
    def matched_key(self) -> Node:
        return self.outputs[0]

    @property
    def results(self) -> tuple[Node, ...]:
        """The value outputs, one per ``values`` entry."""
        return self.outputs[1:]

    @property
    def reads(self) -> tuple[Linear, ...]:
        square = () if self.key_square is None else (self.key_square,)
        return (self.query, self.key, *square, *self.values)

    def __iter__(self):
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)

    def __getitem__(self, i: int) -> Node:
        return self.outputs[i]


@dataclass(frozen=True, eq=False, slots=True)
class Mean:
    """One averaging head: the mean of ``value(j)`` over j <= p (j < p when ``strict``); 0 if empty."""

    name: str
    value: Linear
    strict: bool
    outputs: tuple[Node]

    @property
    def output(self) -> Node:
        return self.outputs[0]

    @property
    def reads(self) -> tuple[Linear, ...]:
        return (self.value,)


@dataclass(frozen=True, slots=True)
class Unit:
    """One hidden neuron of a gated-ReLU FFN: contributes ``weight * relu(gate) * value``."""

    weight: Value
    gate: Linear
    value: Linear


@dataclass(frozen=True, eq=False, slots=True)
class Ffn:
    """One FFN node: ``sum(u.weight * relu(u.gate) * u.value for u in units)``."""

    name: str
    units: tuple[Unit, ...]
    outputs: tuple[Node]

    @property
    def output(self) -> Node:
        return self.outputs[0]

    @property
    def reads(self) -> tuple[Linear, ...]:
        return tuple(x for u in self.units for x in (u.gate, u.value))


Op = Lookup | Mean | Ffn


@dataclass(frozen=True, slots=True)
class Output:
    """The unembedding: ``logit[t] = sum(table[t][i] * features[i]) + bias[t]``; argmax wins.

    A position whose best and second-best logits differ by less than ``min_margin`` is an
    error in the evaluator, never a silent pick.
    """

    features: tuple[Linear, ...]
    table: tuple[tuple[Value, ...], ...]
    bias: tuple[Value, ...]
    min_margin: Value


def key_centre(r: Range) -> int:
    """The integer a lookup's keys are shifted by in its compiled scores: the middle of their
    range, so that the shifted keys and their squares are as small as the range allows
    (``compiler.lower``: each bit of key magnitude is two bits of score)."""
    return math.floor((r.lo + r.hi) / 2)
