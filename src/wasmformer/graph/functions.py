"""Small exact functions built from one gated-ReLU FFN node each.

Each helper returns one materialised ``Node`` (one FFN sublayer) and declares its
exact range. "Exact on integers" means: exact for every integer input in range;
the others are exact for every real input. A constant c is the unit
``(c, one, one)`` since relu(1) * 1 = 1; an unbounded identity is
``x = relu(x) - relu(-x)``.

Why ``select`` needs no big-M constant: a gated unit multiplies, so
``relu(cond) * a + relu(1 - cond) * b`` is exactly ``a`` or ``b`` for cond in {0, 1}.
(A plain-ReLU FFN would need ``relu(a - M*(1 - cond))`` with M >= the span of a.)
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from .errors import GraphError
from .graph import Graph
from .linear import Linear, LinearLike, Node, as_linear
from .nodes import key_centre
from .ranges import Range
from .values import Value, exact

ONE = Linear((), 1)


def _integer(x: Linear, what: str) -> None:
    if not x.range.integer:
        raise GraphError(f"{what}: input {x} must be integer-valued")


def step(g: Graph, x: LinearLike, threshold: int, *, name: str | None = None) -> Node:
    """1 if x >= threshold else 0, for integer x: relu(x - t + 1) - relu(x - t)."""
    x, t = as_linear(x), exact(threshold, "threshold")
    _integer(x, "step")
    units = [(1, x - t + 1, ONE), (-1, x - t, ONE)]
    return g.ffn(name or g.fresh_name("step"), units, range=Range(0, 1, integer=True))


def equals(g: Graph, x: LinearLike, c: int, *, times: LinearLike = 1,
           name: str | None = None) -> Node:
    """``times`` if x == c else 0, for integer x (``times`` defaults to 1).

    [x == c] = relu(x - c + 1) - 2 relu(x - c) + relu(x - c - 1), each unit gating ``times``.
    """
    x, c, times = as_linear(x), exact(c, "c"), as_linear(times)
    _integer(x, "equals")
    units = [(1, x - c + 1, times), (-2, x - c, times), (1, x - c - 1, times)]
    rng = times.range.join(Range.point(0))
    return g.ffn(name or g.fresh_name("equals"), units, range=rng)


def piecewise_linear(g: Graph, x: LinearLike, points: Sequence[tuple[Value, Value]], *,
                     name: str | None = None) -> Node:
    """The interpolation of ``points`` (increasing x), constant beyond both ends.

    f(x) = y0 + sum_k (s_k - s_{k-1}) relu(x - x_k), slopes s_{-1} = s_n = 0: exact for real x.
    """
    x = as_linear(x)
    xs = [exact(px, "point x") for px, _ in points]
    ys = [exact(py, "point y") for _, py in points]
    if not xs or any(a >= b for a, b in zip(xs, xs[1:], strict=False)):
        raise GraphError("piecewise_linear needs points with strictly increasing x")
    slopes = [0] + [exact(Fraction(ys[k + 1] - ys[k]) / (xs[k + 1] - xs[k]))
                    for k in range(len(xs) - 1)] + [0]
    units = [(ys[0], ONE, ONE)] if ys[0] != 0 else []
    units += [(slopes[k + 1] - slopes[k], x - xs[k], ONE)
              for k in range(len(xs)) if slopes[k + 1] != slopes[k]]
    if not units:  # the zero function still needs one unit to be a node
        units = [(0, ONE, ONE)]
    return g.ffn(name or g.fresh_name("pwl"), units, range=Range.of_values(tuple(ys)))


def clamp(g: Graph, x: LinearLike, lo: Value, hi: Value, *, name: str | None = None) -> Node:
    """min(max(x, lo), hi), exact for real x."""
    return piecewise_linear(g, x, [(lo, lo), (hi, hi)], name=name or g.fresh_name("clamp"))


def clamped_key(g: Graph, key: LinearLike, lo: int, hi: int, *, name: str
                ) -> tuple[Node, Node]:
    """A lookup key clamped to [lo, hi] and its square (clamped - centre)**2 (centre =
    ``nodes.key_centre`` of [lo, hi], what the compiled head shifts the key by), both one
    FFN layer after ``key``'s inputs: pass them as ``lookup(key=..., key_square=...)``. A
    key's range is what its scores' size grows with (``compiler.lower``); clamping keeps
    only the range the queries can meet (keys beyond it only need to stay beyond it). With
    K = key - lo, h = hi - lo and d = centre - lo: clamp = relu(K) - relu(K - h), and
    (clamp - d)**2 = clamp**2 - 2 d clamp + d**2 with clamp**2 = relu(K) K - relu(K - h)
    (K - h) - 2 h relu(K - h) (which is h**2 for K >= h)."""
    k = as_linear(key) - lo
    _integer(k, "clamped_key")
    h = hi - lo
    d = key_centre(Range(lo, hi, integer=True)) - lo
    one = as_linear(1)
    value = g.ffn(name, [(lo, one, one), (1, k, one), (-1, k - h, one)],
                  range=Range(lo, hi, integer=True))
    square = g.ffn(f"{name}^2", [(1, k, k), (-1, k - h, k - h), (-2 * h, k - h, one),
                                 (-2 * d, k, one), (2 * d, k - h, one), (d * d, one, one)],
                   range=Range(0, max(d, h - d) ** 2, integer=True))
    return value, square


def product(g: Graph, a: LinearLike, b: LinearLike, *, name: str | None = None,
            range: Range | None = None) -> Node:
    """a * b for a non-negative integer a (one unit: relu(a) * b); exact.

    ``range`` may tighten the derived one, e.g. when (p + 1) * mean is a whole count.
    """
    a = as_linear(a)
    _integer(a, "product")
    if a.range.lo < 0:
        raise GraphError(f"product: first factor {a} must be non-negative, range {a.range}")
    return g.ffn(name or g.fresh_name("product"), [(1, a, b)], range=range)


def select(g: Graph, cond: LinearLike, a: LinearLike, b: LinearLike, *,
           name: str | None = None) -> Node:
    """a if cond == 1 else b, for cond in {0, 1}: relu(cond) * a + relu(1 - cond) * b."""
    cond, a, b = as_linear(cond), as_linear(a), as_linear(b)
    _integer(cond, "select")
    if cond.range.lo < 0 or cond.range.hi > 1:
        raise GraphError(f"select: condition {cond} must be 0 or 1, range {cond.range}")
    units = [(1, cond, a), (1, 1 - cond, b)]
    return g.ffn(name or g.fresh_name("select"), units, range=a.range.join(b.range))


def minimum(g: Graph, a: LinearLike, b: LinearLike, *, name: str | None = None) -> Node:
    """min(a, b) = a - relu(a - b), with a = relu(a) - relu(-a); exact for reals."""
    a, b = as_linear(a), as_linear(b)
    units = [(1, a, ONE), (-1, -a, ONE), (-1, a - b, ONE)]
    rng = Range(min(a.range.lo, b.range.lo), min(a.range.hi, b.range.hi),
                a.range.integer and b.range.integer)
    return g.ffn(name or g.fresh_name("min"), units, range=rng)


def maximum(g: Graph, a: LinearLike, b: LinearLike, *, name: str | None = None) -> Node:
    """max(a, b) = b + relu(a - b), with b = relu(b) - relu(-b); exact for reals."""
    a, b = as_linear(a), as_linear(b)
    units = [(1, b, ONE), (-1, -b, ONE), (1, a - b, ONE)]
    rng = Range(max(a.range.lo, b.range.lo), max(a.range.hi, b.range.hi),
                a.range.integer and b.range.integer)
    return g.ffn(name or g.fresh_name("max"), units, range=rng)

