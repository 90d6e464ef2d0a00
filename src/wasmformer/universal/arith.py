"""Additive circuits on byte limbs: add, sub, comparisons and the shared carry look-ahead.

Carry look-ahead without a carry chain. Let S_j be the column sum of byte j (0..510, so
the carry out of a column is 0 or 1) and d_j = sign(S_j - 255) in {-1, 0, 1}: kill,
propagate, generate (both thresholds of the column in one node of 3 units). The carry
into byte k is 1 exactly when the most significant non-propagating column below k
generates; since 2**j > sum_{i<j} 2**i, that is the sign of one small integer:

    c_k = [sigma_k >= 1],  sigma_k = (2 c_in - 1) + sum_{j<k} d_j 2**(j+1)   (odd, never 0)

(the carry-in is a column -1 that generates or kills). Result byte k is then the single
FFN node S_k + c_k - 256 c_{k+1}. Two FFN layers: d_j (3 units per byte), then each
result byte (5 units: S_k, two for c_k, two for c_{k+1}). |sigma| < 2**(n+1) <= 512.

Every builder returns its result bytes *pending*: the units of the last FFN layer (see
``units.Pending``); ``AluOp`` materialises them, or a caller sums them under enable flags.

Comparisons reuse it: with S_j = A_j + 255 - B_j (the subtraction's columns), d_j is
sign(A_j - B_j) and sigma = sum_j d_j 2**j has the sign of a - b. Signed comparisons flip
the sign bit first, linearly: A'_top = A_top + 128 - 256 * a_sign.
"""

from __future__ import annotations

from collections.abc import Sequence

from wasmformer.graph import Graph, Linear, Node

from . import units as U
from .operand import Operand
from .units import Result

ZERO = Linear()


def add(g: Graph, a: Operand, b: Operand, *, name: str = "add") -> Result:
    """(a + b) mod 2**width. Depth 2, units 3n + 5n - 2 (i32: 30, i64: 62)."""
    return carry_add(g, [x + y for x, y in zip(a.bytes, b.bytes, strict=True)], 0, name)


def sub(g: Graph, a: Operand, b: Operand, *, name: str = "sub") -> Result:
    """(a - b) mod 2**width = a + ~b + 1 with ~B_j = 255 - B_j (linear). Depth 2."""
    columns = [x + 255 - y for x, y in zip(a.bytes, b.bytes, strict=True)]
    return carry_add(g, columns, 1, name)


def carry_add(g: Graph, columns: Sequence[Linear], carry_in: int, name: str,
              enable: Linear | None = None) -> Result:
    """The bytes of sum_k columns[k] 256**k + carry_in, mod 256**n; each column 0..510.

    The caller guarantees every column lies in 0..510 (so each carry is 0 or 1).
    ``enable`` (a 0/1 feature): the sign layer's units under it (``units.enabled``: all 0
    where it is 0, whatever the columns hold, so its 0 guards them); the caller then puts
    the pending bytes under it too.
    """
    signs = [U.node(g, f"{name}.d{j}", U.sign(s - 255) if enable is None
                    else U.enabled(U.sign(s - 255), enable), -1, 1)
             for j, s in enumerate(columns)]
    return tuple(U.identity(s) + _carry(signs, k, carry_in)
                 + _carry(signs, k + 1, carry_in, -256)
                 for k, s in enumerate(columns))


def _carry(signs: Sequence[Node], k: int, carry_in: int, weight: int = 1) -> U.Units:
    """Units for weight * (carry into byte k)."""
    if k == 0:
        return U.constant(weight * carry_in)
    sigma = 2 * carry_in - 1 + sum((d * (1 << (j + 1)) for j, d in enumerate(signs[:k])),
                                   start=ZERO)
    return U.step(sigma, 1, weight)


# ---- comparisons -------------------------------------------------------------------------

COMPARISONS = ("eq", "ne", "lt_s", "lt_u", "gt_s", "gt_u", "le_s", "le_u", "ge_s", "ge_u")


def compare(g: Graph, a: Operand, b: Operand, *, kind: str, name: str = "cmp") -> Result:
    """The i32 result (0/1 in byte 0, zero bytes above) of comparison ``kind``.

    Depth 2: signs d_j of the byte differences (3 units each), then one node on
    sigma = sum_j d_j 2**j (sign(a - b)): 2 units (3 for eq, 4 for ne).
    """
    if kind not in COMPARISONS:
        raise ValueError(f"unknown comparison {kind!r}")
    lhs, rhs = list(a.bytes), list(b.bytes)
    if kind.endswith("_s"):  # signed order = unsigned order with the sign bits flipped
        lhs[-1] = lhs[-1] + 128 - 256 * a.sign
        rhs[-1] = rhs[-1] + 128 - 256 * b.sign
    signs = [U.node(g, f"{name}.d{j}", U.sign(x - y), -1, 1)
             for j, (x, y) in enumerate(zip(lhs, rhs, strict=True))]
    sigma = sum((d * (1 << j) for j, d in enumerate(signs)), start=ZERO)
    test = kind.split("_")[0]
    units = {
        "eq": U.equals_zero(sigma),
        "ne": U.constant(1) + U.equals_zero(sigma, -1),
        "lt": U.step(-sigma, 1),
        "gt": U.step(sigma, 1),
        "le": U.step(-sigma, 0),
        "ge": U.step(sigma, 0),
    }[test]
    return _flag(units)


def eqz(g: Graph, a: Operand, *, name: str = "eqz") -> Result:
    """[a == 0] as an i32: relu(1 - sum of bytes), one unit. Depth 1."""
    del g, name  # one unit, no node of its own
    return _flag(U.is_zero(sum(a.bytes, start=ZERO)))


def _flag(bit: U.Units) -> Result:
    """An i32 whose byte 0 is ``bit`` (0/1, pending) and whose other bytes are 0."""
    return (bit, ZERO, ZERO, ZERO)
