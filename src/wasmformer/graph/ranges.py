"""Closed value ranges ``lo..hi`` of graph nodes, with interval arithmetic.

A range says every value a node takes lies in ``[lo, hi]``; ``integer`` says every
value is a whole number. Ranges are derived from the inputs (sound, maybe loose) and
may be tightened by the user; the evaluator checks them at every position, and the
compiler/model use them for big-M constants and float exactness checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import GraphError
from .values import Value, exact, is_integer


@dataclass(frozen=True, slots=True)
class Range:
    lo: Value
    hi: Value
    integer: bool = False

    def __post_init__(self) -> None:
        lo, hi = exact(self.lo, "range lo"), exact(self.hi, "range hi")
        if self.integer:  # an integer range may be stated with rational ends: round inwards
            lo, hi = math.ceil(lo), math.floor(hi)
        if lo > hi:
            raise GraphError(f"empty range {self.lo}..{self.hi}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @staticmethod
    def point(x: Value) -> Range:
        x = exact(x)
        return Range(x, x, is_integer(x))

    @staticmethod
    def of_values(values: tuple[Value, ...]) -> Range:
        """The tightest range holding all of ``values`` (at least one)."""
        if not values:
            raise GraphError("range of no values")
        return Range(min(values), max(values), all(is_integer(v) for v in values))

    def contains(self, x: Value) -> bool:
        return self.lo <= x <= self.hi and (not self.integer or is_integer(x))

    @property
    def magnitude(self) -> Value:
        """The largest absolute value in the range."""
        return max(-self.lo, self.hi)

    def __add__(self, other: Range) -> Range:
        return Range(self.lo + other.lo, self.hi + other.hi, self.integer and other.integer)

    def scale(self, c: Value) -> Range:
        ends = (self.lo * c, self.hi * c)
        return Range(min(ends), max(ends), self.integer and is_integer(c))

    def times(self, other: Range) -> Range:
        ends = [a * b for a in (self.lo, self.hi) for b in (other.lo, other.hi)]
        return Range(min(ends), max(ends), self.integer and other.integer)

    def relu(self) -> Range:
        return Range(max(self.lo, 0), max(self.hi, 0), self.integer)

    def join(self, other: Range) -> Range:
        """The smallest range holding both."""
        return Range(min(self.lo, other.lo), max(self.hi, other.hi), self.integer and other.integer)

    def meet(self, other: Range) -> Range:
        """The intersection (an error when empty)."""
        return Range(max(self.lo, other.lo), min(self.hi, other.hi), self.integer or other.integer)

    def __str__(self) -> str:
        return f"{self.lo}..{self.hi}" + (" (int)" if self.integer else "")
