"""Exact scalar values: Python ``int`` or ``fractions.Fraction``, never ``float``.

Every value entering the graph goes through :func:`exact`, so a float (or a bool)
is refused at the door and a whole Fraction is stored as an ``int``.
"""

from __future__ import annotations

from fractions import Fraction

from .errors import GraphError

Value = int | Fraction


def exact(x: object, what: str = "value") -> Value:
    """``x`` as an int, or a Fraction when it is not whole; anything else is an error."""
    if isinstance(x, bool) or not isinstance(x, int | Fraction):
        raise GraphError(f"{what} must be an int or a Fraction, got {type(x).__name__} {x!r}")
    if isinstance(x, Fraction) and x.denominator == 1:
        return int(x)
    return x


def is_integer(x: Value) -> bool:
    return isinstance(x, int) or x.denominator == 1
