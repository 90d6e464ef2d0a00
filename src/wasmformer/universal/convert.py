"""Width changes and sign extensions: every result byte is an input byte, zero, or
255 * (a sign bit), so all are linear maps of the operand. Depth 0, no units."""

from __future__ import annotations

from wasmformer.graph import Graph, Linear

from .operand import Operand
from .units import Result


def extend(g: Graph, a: Operand, *, keep: int, signed: bool, n: int,
           name: str = "extend") -> Result:
    """The low ``keep`` bytes of a, extended (zero or sign) to ``n`` bytes.

    i32.wrap_i64 is keep=4, n=4; i64.extend_i32_u keep=4, n=8, unsigned; the
    extendN_s instructions keep N/8 bytes and fill with the sign of the kept part.
    """
    del g, name  # nothing to materialise
    fill = 255 * a.bits[8 * keep - 1] if signed else Linear()
    return tuple(a.bytes[k] if k < keep else fill for k in range(n))
