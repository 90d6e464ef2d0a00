"""Bitwise circuits: and/or/xor, shifts and rotations, clz/ctz/popcnt.

and/or/xor: per bit, a AND b = relu(a + b - 1); a OR b = a + b - (a AND b);
a XOR b = a + b - 2 (a AND b). Summed with weights 2**i the result byte is one FFN node
(8 units for and, 9 with the byte sum for or/xor). Depth 1.

Shifts and rotations by k = count mod width, bit-then-byte: k = 8 kb + kbit.
  stage 1: V_r = byte r of op(a, kbit), a selection among 8 linear maps of a's bits by
           kbit (3 bits of the count): one node per byte, 8 units (``units.select``);
  stage 2: R_r = byte r of op(V, 8 kb), a selection among n bytes (or zero / sign fill)
           by kb: one node per byte, n units.
Depth 2, at most 8n + n*n units (i32: 48, i64: 128; zero options cost none) instead of
n * width for a one-layer selection by the whole count.

clz = sum_j [top j bits are all 0] = sum_j relu(1 - (number of ones among the top j bits)),
one unit per j: depth 1, width units. ctz the same from the bottom. popcnt is the sum of
the bits: linear, depth 0.
"""

from __future__ import annotations

from wasmformer.graph import Graph, Linear, as_linear

from . import units as U
from .operand import Operand
from .units import Pending, Result

ZERO = Linear()
FILL = "fill"  # a position beyond the top of an arithmetic right shift: the sign


# ---- and, or, xor ------------------------------------------------------------------------


def bitwise(g: Graph, a: Operand, b: Operand, *, kind: str, name: str = "bitwise") -> Result:
    """a AND/OR/XOR b. Depth 1, 8 units per byte (and) or 9 (or, xor)."""
    sign = {"and": 0, "or": 1, "xor": 1}[kind]  # coefficient of A + B
    both = {"and": 1, "or": -1, "xor": -2}[kind]  # coefficient of (a AND b)
    result = []
    for k in range(a.n):
        units = U.identity(a.bytes[k] + b.bytes[k], sign)
        units += [(both * (1 << i), a.bits[8 * k + i] + b.bits[8 * k + i] - 1, U.ONE)
                  for i in range(8)]
        result.append(units)
    del g, name  # the bytes are the last layer itself
    return tuple(result)


# ---- shifts and rotations ----------------------------------------------------------------

SHIFTS = ("shl", "shr_u", "shr_s", "rotl", "rotr")


def shift(g: Graph, a: Operand, count: Operand, *, kind: str, name: str = "shift") -> Result:
    """shl / shr_u / shr_s / rotl / rotr of a by count mod width. Depth 2."""
    if kind not in SHIFTS:
        raise ValueError(f"unknown shift {kind!r}")
    n, width = a.n, a.width
    kbit = count.bits[0] + 2 * count.bits[1] + 4 * count.bits[2]
    kb = sum((count.bits[i] * (1 << (i - 3)) for i in range(3, width.bit_length() - 1)),
             start=ZERO)

    def bit(i: int, s: int) -> Linear:
        j = _source(kind, i, s, width)
        return a.sign if j == FILL else ZERO if j is None else a.bits[j]

    stage1 = []
    for r in range(n):
        options = [sum((bit(8 * r + i, s) * (1 << i) for i in range(8)), start=ZERO)
                   for s in range(8)]
        stage1.append(U.node(g, f"{name}.v{r}", U.select(kbit, options), 0, 255))

    def byte(r: int, t: int) -> Linear:
        j = _source(kind, r, t, n)
        return 255 * a.sign if j == FILL else ZERO if j is None else as_linear(stage1[j])

    return tuple(U.select(kb, [byte(r, t) for t in range(n)]) for r in range(n))


def _source(kind: str, i: int, s: int, size: int) -> int | str | None:
    """Which input position lands at output position i when shifting by s (positions are
    bits or bytes, ``size`` of them): an index, None (zero) or FILL (sign)."""
    if kind == "shl":
        return i - s if i >= s else None
    if kind == "shr_u":
        return i + s if i + s < size else None
    if kind == "shr_s":
        return i + s if i + s < size else FILL
    if kind == "rotl":
        return (i - s) % size
    return (i + s) % size  # rotr


# ---- counting ----------------------------------------------------------------------------


def count_zeros(g: Graph, a: Operand, *, leading: bool, name: str = "count") -> Result:
    """clz (leading) or ctz: sum_j relu(1 - ones among the first j bits from that end).
    Depth 1, width units."""
    order = a.bits[::-1] if leading else a.bits
    units, ones = [], ZERO
    for x in order:
        ones = ones + x
        units += U.is_zero(ones)
    del g, name  # the count is the last layer itself
    return _count(units, a.n)


def popcnt(g: Graph, a: Operand, *, name: str = "popcnt") -> Result:
    """The number of set bits: linear in the bits. Depth 0, no units."""
    del g, name  # nothing to materialise
    return _count(sum(a.bits, start=ZERO), a.n)


def _count(x: Pending, n: int) -> Result:
    """A count (0..64) as an n-byte value: byte 0 is the count, the others 0."""
    return (x,) + (ZERO,) * (n - 1)
