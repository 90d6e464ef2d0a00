"""Multiplication mod 2**width on byte limbs, in four FFN layers.

1. Byte columns from bit products. Bit s of a times bit t of b lands at bit s + t of the
   product; grouping by the result byte r it is one unit per (r, s):
       V_r = sum_s relu(a_s) * P_{r,s},  P_{r,s} = sum_{t: 8r <= s+t < 8r+8} b_t 2**(s+t-8r)
   (P_{r,s} <= 255 is linear in b's bits), so product = sum_r V_r 256**r with
   V_r <= 255 (8r + 8): below 2**14 for an i64, instead of the 2**19 of byte-product
   column sums. Only the columns r < n are built: the rest vanish mod 2**width.
2. The high part h_r = floor(V_r / 256) = sum_t [V_r >= 256 t] (2 units per threshold),
   so V_r = v_r + 256 h_r with v_r = V_r - 256 h_r in 0..255.
3-4. product = sum_r E_r 256**r with E_r = v_r + h_{r-1} <= 255 + 63 < 511: an ordinary
   carry look-ahead addition (``arith.carry_add``) finishes it.

Every value stays below 2**15 in magnitude (the sums of |unit| in layer 2 below 2**22).
Units per layer: i32 80 + 146 + 12 + 18 = 256; i64 288 + 546 + 24 + 38 = 896.
"""

from __future__ import annotations

from wasmformer.graph import Graph, Linear

from . import units as U
from .arith import carry_add
from .operand import Operand
from .units import Result


def mul(g: Graph, a: Operand, b: Operand, *, name: str = "mul") -> Result:
    """(a * b) mod 2**width. Depth 4."""
    n = a.n
    columns = []
    for r in range(n):
        terms, top = [], 0
        for s in range(min(8 * r + 8, 8 * n)):
            low, high = max(0, 8 * r - s), min(8 * n, 8 * r + 8 - s)  # t in low..high-1
            part = sum((b.bits[t] * (1 << (s + t - 8 * r)) for t in range(low, high)),
                       start=Linear())
            terms.append((1, a.bits[s], part))
            top += sum(1 << (s + t - 8 * r) for t in range(low, high))
        columns.append((U.node(g, f"{name}.v{r}", terms, 0, top), top))
    highs = [U.node(g, f"{name}.h{r}",
                    [u for t in range(1, top // 256 + 1) for u in U.step(v, 256 * t)],
                    0, top // 256)
             for r, (v, top) in enumerate(columns)]
    sums = [v - 256 * h + (highs[r - 1] if r else 0)
            for r, ((v, _), h) in enumerate(zip(columns, highs, strict=True))]
    return carry_add(g, sums, 0, name)
