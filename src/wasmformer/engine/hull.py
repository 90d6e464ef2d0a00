"""A convex-hull key cache: one lookup head's hardmax in O(log n) per query.

A compiled lookup head scores position j for the query at position p as

    s(j) = a * x_j + b * y_j + c * t_j          q = (a, b, c),  k_j = (x_j, y_j, t_j)

with, from ``compiler.lower``, x = K' (the shifted key), y = K'**2, t = j (the tie-break
term, absent -- c = 0 -- when the keys are distinct per position) and a = 2 N Q', b = -N,
c = 1. The model's average-hard attention then gives weight exactly 1 to the best
position. This module answers that argmax without reading every key:

* The 2-D part a x + b y is a linear function of the point (x, y): its maximum over all keys
  lies on the lower convex hull when b < 0 (on the upper hull when b > 0). Each ``Chain``
  keeps one side of the hull, sorted by x, *with* the points that lie on its edges
  (collinear points tie with the edge's ends); along a chain the score rises, peaks on a
  plateau (one vertex, or one edge and its collinear points), then falls, so a binary
  search finds the plateau in O(log n). A point strictly inside the hull can never win
  again (the hull only grows), so it is dropped for good; two writes of the same point keep
  the latest.
* Ties on the 2-D score go to the largest c * t (the latest position), exactly as the
  model's tie-break term does -- *when* that term cannot reorder different 2-D scores.
  Every query certifies this, in exact integer arithmetic, before answering:
  a, b, c and every key are integers, so the model's scores are exact too (float64
  scores: every product and partial sum is a multiple of 2**e, the power of two in
  gcd(a, b, c), and below 2**(53 + e); int64 scores: below 2**63; the bound is checked
  here, not assumed), and c * (t_last - t_first) is below gcd(a, b) (the spacing of
  distinct 2-D scores). The best then beats the next by at least gcd(a, b, c) >= 1 and
  gets the whole weight. Without a tie term (c = 0) the best must be unique: two
  positions with equal scores would share the weight.

A query that fails a check returns ``None``: the caller computes that head by a full
average-hard scan (``engine.fast``). Keys with an x, y, t that are not integers (or a t that does
not increase) switch the cache to scan-only for good.

Cost: a query is one binary search plus the plateau (at most 2 points for the parabola
keys a lookup head has: no three points of y = x**2 are collinear). An insert is a binary
search, then removes the points the new one hides (each point is removed at most once:
amortised O(1) removals); the chain is a Python list, so an insert in the middle also
moves the entries after it (a memmove, microseconds at the lengths the model is proven
for). Keys that arrive in x order (a window head's key is the position) only ever touch
the chain's end: it is then a stack.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field

EXACT_LIMIT = 2**53  # multiples of 2**e below 2**(53 + e) are exact in float64
INT_LIMIT = 2**63  # int64 scores (``ModelConfig.score_dtype``): exact below 2**63


@dataclass(slots=True)
class Chain:
    """One side of a convex hull: the lower one (``sign`` 1) or the upper one (-1, stored
    as the lower hull of (x, -y)). Points sorted by x, collinear points on edges kept;
    per point the latest position with that key and whether several positions share it."""

    sign: int
    xs: list[int] = field(default_factory=list)
    ys: list[int] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)  # tie coordinate of the latest write
    pos: list[int] = field(default_factory=list)  # its position
    shared: list[bool] = field(default_factory=list)  # more than one position has this key

    def __len__(self) -> int:
        return len(self.xs)

    def insert(self, x: int, y: int, t: int, position: int) -> None:
        y *= self.sign
        xs, ys = self.xs, self.ys
        i = bisect_left(xs, x)
        if i < len(xs) and xs[i] == x:
            if y > ys[i]:
                return  # above the chain at this x: can never win on this side
            if y == ys[i]:  # the same key again: the latest write stands for both
                self.ts[i], self.pos[i], self.shared[i] = t, position, True
                return
            self._delete(i)  # the new point hides the old one
        if 0 < i < len(xs) and _above(xs[i - 1], ys[i - 1], x, y, xs[i], ys[i]):
            return  # strictly inside the hull
        xs.insert(i, x)
        ys.insert(i, y)
        self.ts.insert(i, t)
        self.pos.insert(i, position)
        self.shared.insert(i, False)
        while i >= 2 and _above(xs[i - 2], ys[i - 2], xs[i - 1], ys[i - 1], x, y):
            self._delete(i - 1)
            i -= 1
        while i + 2 < len(xs) and _above(x, y, xs[i + 1], ys[i + 1], xs[i + 2], ys[i + 2]):
            self._delete(i + 1)

    def _delete(self, i: int) -> None:
        for column in (self.xs, self.ys, self.ts, self.pos, self.shared):
            del column[i]

    def plateau(self, a: int, b: int) -> tuple[int, int]:
        """(first, end): the run of points maximising a*x + b*y (b < 0 in stored
        coordinates); ``end`` is exclusive."""
        xs, ys = self.xs, self.ys
        lo, hi = 0, len(xs) - 1  # the first i whose score is not below its successor's
        while lo < hi:
            mid = (lo + hi) // 2
            if a * xs[mid] + b * ys[mid] < a * xs[mid + 1] + b * ys[mid + 1]:
                lo = mid + 1
            else:
                hi = mid
        best = a * xs[lo] + b * ys[lo]
        end = lo + 1
        while end < len(xs) and a * xs[end] + b * ys[end] == best:
            end += 1
        return lo, end


def _above(xa: int, ya: int, xb: int, yb: int, xc: int, yc: int) -> bool:
    """Whether B lies strictly above the segment AC (xa < xb < xc), exactly."""
    return (xc - xa) * (yb - ya) > (yc - ya) * (xb - xa)


def _integer(v: float) -> int | None:
    return int(v) if float(v).is_integer() else None


class HullCache:
    """The keys of one lookup head, appended in position order; ``argmax(query)`` is the
    position the model's attention gives weight 1, or None where that is not certified.
    ``integer_scores``: the model computes q.k in int64 (else float64)."""

    def __init__(self, tie: bool, integer_scores: bool = False):
        self.tie = tie  # keys carry a third coordinate t (the position tie-break)
        self.integer_scores = integer_scores
        self.lower, self.upper = Chain(1), Chain(-1)
        self.count = 0
        self.usable = True
        self.t_first = self.t_last = 0
        self.max_abs = [0, 0, 0]  # of x, y, t: bounds the float scores' magnitude

    def append(self, key) -> None:
        """Add the key (x, y) or (x, y, t) of the next position."""
        position = self.count
        self.count += 1
        if not self.usable:
            return
        coords = [_integer(v) for v in key]
        if None in coords or len(coords) != 2 + self.tie:
            self.usable = False
            return
        x, y = coords[0], coords[1]
        t = coords[2] if self.tie else position
        if self.tie:
            if position > 0 and t <= self.t_last:
                self.usable = False  # the tie term must grow with the position
                return
            if position == 0:
                self.t_first = t
            self.t_last = t
        for i, v in enumerate((x, y, t)):
            self.max_abs[i] = max(self.max_abs[i], abs(v))
        self.lower.insert(x, y, t, position)
        self.upper.insert(x, y, t, position)

    def argmax(self, query) -> int | None:
        """The winning position for query (a, b) or (a, b, c), or None (scan instead).
        Needs at least one key."""
        if not self.usable or self.count == 0:
            return None
        coords = [_integer(v) for v in query]
        if None in coords or len(coords) != 2 + self.tie:
            return None
        a, b = coords[0], coords[1]
        c = coords[2] if self.tie else 0
        if b == 0 or c < 0:
            return None
        spacing = math.gcd(a, b)  # distinct 2-D scores differ by a multiple of this
        grid = math.gcd(spacing, c)  # and all scores by a multiple of this
        mx, my, mt = self.max_abs
        limit = INT_LIMIT if self.integer_scores else EXACT_LIMIT * (grid & -grid)
        if abs(a) * mx + abs(b) * my + c * mt >= limit:
            return None  # the model's scores (float: multiples of grid's power of 2) round
        chain = self.lower if b < 0 else self.upper
        first, end = chain.plateau(a, b * chain.sign)  # stored as a lower hull: b < 0
        if c > 0:
            if c * (self.t_last - self.t_first) >= spacing:
                return None  # the tie term could reorder different 2-D scores
            winner = max(range(first, end), key=chain.ts.__getitem__)
            return chain.pos[winner]
        if end - first > 1 or chain.shared[first]:
            return None  # an exact tie: the attention would share the weight
        return chain.pos[first]
