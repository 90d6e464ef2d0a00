"""Unit groups: lists of gated-ReLU units that several ALU circuits combine into one node.

``graph.functions`` makes one node per function; the ALU often needs a *sum* of such
functions in a single FFN node (a result byte = sum + carry in - 256 * carry out), so
these helpers return the units and ``node`` materialises a sum of groups with its
tight declared range. A unit is ``(weight, gate, value)``: weight * relu(gate) * value.

All are exact on integer inputs within range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from wasmformer.graph import Graph, GraphError, Linear, LinearLike, Node, Range, as_linear
from wasmformer.graph.values import Value

ONE = Linear((), 1)
Units = list[tuple[Value, Linear, Linear]]
Pending = Linear | Units  # a result byte: linear already, or the units of its last FFN layer
Result = tuple[Pending, ...]  # a circuit's result bytes, little-endian, pending


def node(g: Graph, name: str, units: Units, lo: int, hi: int) -> Node:
    """One FFN node summing ``units``, declared integer in lo..hi."""
    if not units:  # the zero function still needs a unit to be a node
        units = [(0, ONE, ONE)]
    return g.ffn(g.fresh_name(name), units, range=Range(lo, hi, integer=True))


def materialize(g: Graph, name: str, x: Pending, lo: int = 0, hi: int = 255) -> Linear:
    """A pending value as a feature: a Linear stays as it is, units become one node."""
    if isinstance(x, Linear):
        return x
    return as_linear(node(g, name, x, lo, hi))


def enabled(x: Pending, enable: LinearLike) -> Units:
    """The units of ``x`` when ``enable`` is 1, of 0 when it is <= 0 (an integer <= 1).

    A unit w relu(gate) value becomes w relu(gate + M (enable - 1)) value with M the
    gate's upper bound: unchanged when enabled, gate - M * (1 - enable) <= 0 otherwise.
    So several circuits can sum their last layers into one node, each under its own
    enable flag, at no extra depth. A linear x is the unit relu(1) * x.
    """
    enable = as_linear(enable)
    if not enable.range.integer or enable.range.hi > 1:
        raise GraphError(f"enable {enable} must be an integer <= 1, range {enable.range}")
    units = identity(x) if isinstance(x, Linear) else x
    return [(w, gate + math.ceil(gate.range.hi) * (enable - 1), value)
            for w, gate, value in units if gate.range.hi > 0]


def constant(c: Value) -> Units:
    """The constant c: relu(1) * 1 * c."""
    return [(c, ONE, ONE)] if c != 0 else []


def identity(x: LinearLike, weight: Value = 1) -> Units:
    """weight * x for any x: one unit relu(1) * x (the value side is not rectified)."""
    x = as_linear(x)
    return [(weight, ONE, x)] if weight != 0 and _nonzero(x) else []


def step(x: LinearLike, threshold: int, weight: Value = 1) -> Units:
    """weight * [x >= threshold] for integer x: relu(x - t + 1) - relu(x - t)."""
    x = as_linear(x)
    _integer(x)
    return [(weight, x - threshold + 1, ONE), (-weight, x - threshold, ONE)]


def is_zero(x: LinearLike, weight: Value = 1) -> Units:
    """weight * [x == 0] for an integer x >= 0: relu(1 - x), one unit."""
    x = as_linear(x)
    _integer(x)
    if x.range.lo < 0:
        raise GraphError(f"is_zero needs x >= 0, {x} has range {x.range}")
    return [(weight, 1 - x, ONE)]


def equals_zero(x: LinearLike, weight: Value = 1) -> Units:
    """weight * [x == 0] for any integer x: relu(x + 1) - 2 relu(x) + relu(x - 1)."""
    x = as_linear(x)
    _integer(x)
    return [(weight, x + 1, ONE), (-2 * weight, x, ONE), (weight, x - 1, ONE)]


def sign(x: LinearLike) -> Units:
    """sign(x) in {-1, 0, 1} for integer x: relu(x + 1) - relu(x - 1) - 1.

    (As a node in -1..1 rather than sign + 1 in 0..2: sums of signs then have magnitude
    bounds as tight as their true ranges, which the float32 guard relies on.)
    """
    x = as_linear(x)
    _integer(x)
    return [(1, x + 1, ONE), (-1, x - 1, ONE)] + constant(-1)


def select(index: LinearLike, options: Sequence[LinearLike]) -> Units:
    """``options[index]`` for an integer index in 0..len-1: the piecewise-linear
    interpolation through (s, options[s]), one unit per option.

    f(x) = L_0 + sum_{s < K-1} relu(x - s) * (D_s - D_{s-1}), D_s = L_{s+1} - L_s, D_{-1} = 0:
    at an integer x the sum telescopes to L_0 + D_0 + ... + D_{x-1} = L_x. The options may
    be any linear forms (the values of gated units), so selecting among linear maps of
    bits costs no extra layer.
    """
    index = as_linear(index)
    _integer(index)
    if index.range.lo < 0 or index.range.hi > len(options) - 1:
        raise GraphError(f"select: index {index} (range {index.range}) exceeds "
                         f"{len(options)} options")
    forms = [as_linear(x) for x in options]
    units: Units = [(1, ONE, forms[0])] if _nonzero(forms[0]) else []
    previous = Linear()
    for s in range(len(forms) - 1):
        slope = forms[s + 1] - forms[s]
        change = slope - previous
        if _nonzero(change):
            units.append((1, index - s, change))
        previous = slope
    return units


def _nonzero(x: Linear) -> bool:
    return not x.is_constant or x.bias != 0


def _integer(x: Linear) -> None:
    if not x.range.integer:
        raise GraphError(f"{x} must be integer-valued")
