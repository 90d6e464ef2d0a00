"""Scalar features (``Node``) and the linear maps over them (``Linear``).

A node is one scalar feature per position. A ``Linear`` is ``sum(c * node) + bias``:
it is never materialised as its own residual dimension; the compiler folds it into
the weights of whatever reads it. The bias is the coefficient of the constant-one
embedding column that every compiled model has, so there is no "one" node.

Nodes compare and hash by identity (``eq=False``); names are unique within a graph.
Arithmetic on nodes builds Linears: ``2 * a - b + 1``, ``-a``, ``a / 3``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from .errors import GraphError
from .ranges import Range
from .values import Value, exact


class _Arithmetic:
    """Operators shared by nodes and linear maps; the result is always a ``Linear``."""

    __slots__ = ()

    def __add__(self, other: LinearLike) -> Linear:
        return as_linear(self).plus(as_linear(other))

    __radd__ = __add__

    def __sub__(self, other: LinearLike) -> Linear:
        return as_linear(self).plus(as_linear(other).scaled(-1))

    def __rsub__(self, other: LinearLike) -> Linear:
        return as_linear(other).plus(as_linear(self).scaled(-1))

    def __neg__(self) -> Linear:
        return as_linear(self).scaled(-1)

    def __mul__(self, c: Value) -> Linear:
        if isinstance(c, Node | Linear):
            raise GraphError("a product of two features is not linear: use functions.product")
        return as_linear(self).scaled(exact(c, "coefficient"))

    __rmul__ = __mul__

    def __truediv__(self, c: Value) -> Linear:
        return as_linear(self).scaled(1 / Fraction(exact(c, "divisor")))


@dataclass(frozen=True, eq=False, slots=True)
class Node(_Arithmetic):
    """One scalar feature per position. ``index`` is its place in ``Graph.nodes``."""

    name: str
    index: int
    range: Range

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.range})"


@dataclass(frozen=True, slots=True)
class Linear(_Arithmetic):
    """``sum(coefficient * node for node, coefficient in terms) + bias``.

    ``terms`` is sorted by node index, one entry per node, no zero coefficients.
    """

    terms: tuple[tuple[Node, Value], ...] = ()
    bias: Value = 0

    @staticmethod
    def of(coefficients: dict[Node, Value], bias: Value = 0) -> Linear:
        """Normalise: merge nothing (a dict has unique keys), drop zeros, sort by index."""
        terms = []
        for node, c in coefficients.items():
            if not isinstance(node, Node):
                raise GraphError(f"a linear map is over nodes, got {node!r}")
            c = exact(c, f"coefficient of {node.name}")
            if c != 0:
                terms.append((node, c))
        terms.sort(key=lambda term: term[0].index)
        return Linear(tuple(terms), exact(bias, "bias"))

    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(node for node, _ in self.terms)

    def coefficient(self, node: Node) -> Value:
        return dict(self.terms).get(node, 0)

    @property
    def range(self) -> Range:
        """Interval arithmetic over the terms' ranges (sound; exact for one term)."""
        total = Range.point(self.bias)
        for node, c in self.terms:
            total = total + node.range.scale(c)
        return total

    @property
    def is_constant(self) -> bool:
        return not self.terms

    def plus(self, other: Linear) -> Linear:
        merged = dict(self.terms)
        for node, c in other.terms:
            merged[node] = merged.get(node, 0) + c
        return Linear.of(merged, self.bias + other.bias)

    def scaled(self, c: Value) -> Linear:
        return Linear.of({node: k * c for node, k in self.terms}, self.bias * c)

    def evaluate(self, value_of: Callable[[Node], Value]) -> Value:
        """The exact value, given each term's node value."""
        return exact(sum((c * value_of(node) for node, c in self.terms), self.bias))

    def __str__(self) -> str:
        parts = [f"{c}*{node.name}" for node, c in self.terms]
        if self.bias != 0 or not parts:
            parts.append(str(self.bias))
        return " + ".join(parts)


LinearLike = Node | Linear | int | Fraction


def as_linear(x: LinearLike) -> Linear:
    """A node, a constant or a Linear, as a Linear."""
    if isinstance(x, Linear):
        return x
    if isinstance(x, Node):
        return Linear(((x, 1),), 0)
    return Linear((), exact(x, "constant"))

