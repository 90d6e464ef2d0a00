"""Multi-value returns from the invoked function: the results' bytes before ``HALT``.

A ``return`` of n >= 2 values at depth 0 emits the top n stack slots' bytes, bottom slot
first (at depth > 0 the caller's ``result`` records copy them, one value each, as for one
value). Byte k of the span belongs to value i where P_i <= k < P_i + w_i (P_i: the widths
of the values below it), and the record holds only their total W. So each of the top
``MAX_RESULTS`` slots is read with its writer's W (the width of the value a stack write
holds: every stack writer the graph executes writes one value), and one flag per
(value i, width w, byte j) says "k = P_i + j and w_i = w": the triangle of
z = (k - P_i - j) + M (w_i - w), exact since |k - P_i - j| < M. Slots above the n values
give P_i >= W > k, so their flags stay 0 (the marker at k = W is excluded).

The single-value case (``emit.py``: operand B's bytes) is cancelled for n >= 2 by a unit
of the opposite sign under the same conditions.
"""

from __future__ import annotations

from collections.abc import Mapping

from wasmformer.graph import Graph, Linear, LinearLike, Range, as_linear

from . import units as U
from .limits import SLOT_LIMIT
from .locate import Anchor
from .operand import Operand
from .record import Record
from .state import KEY_STEP, WriteKeys
from .window import SPAN, Window

MAX_RESULTS = 4  # results of one return the graph emits at depth 0
M = 1 << 20  # beyond any |k - P_i - j|
ONE = Linear((), 1)


def units(g: Graph, window: Window, nxt: Record, keys: WriteKeys, writer_width: Linear,
          anchor: Anchor, op: Mapping[str, LinearLike], depth_zero: LinearLike,
          k: Linear, at_w: LinearLike, sel: list, body: LinearLike, single: Operand) -> U.Units:
    """``writer_width``: at each position, the W of its instruction (a stack write's
    width); ``single``: operand B, which emit.py emits for one result."""
    n = nxt.number("Y", 1)  # a return's keep: its number of results (low byte: < 256)
    multi = as_linear(g.ffn("return.multi", U.step(n + 512 * (
        as_linear(op["return"]) + as_linear(depth_zero) - 2), 2),
        range=Range(0, 1, integer=True)))
    bottom = anchor.depth * SLOT_LIMIT + nxt.number("height", 1) - n
    below = Linear()  # P_i
    out: U.Units = []
    body, at_w = as_linear(body), as_linear(at_w)
    for i in range(MAX_RESULTS):
        read = keys.stack.lookup(g, f"return.value{i}", KEY_STEP * (bottom + i),
                                 [window.at(d, "byte") for d in range(SPAN)] + [writer_width])
        win, width = [as_linear(x) for x in read.results[:SPAN]], as_linear(read.results[SPAN])
        for w in (4, 8):
            for j in range(w):
                z = k - below - j + M * (width - w)
                flag = as_linear(g.ffn(f"return.v{i}w{w}b{j}", U.equals_zero(z),
                                       range=Range(0, 1, integer=True)))
                out += U.enabled(win[w - 1 - j], multi + flag + body - at_w - 2)
        below = below + width
    for j in range(SPAN):  # cancel the single-value case
        out += U.enabled(U.identity(single.bytes[j], -1), multi + sel[j] + body - at_w - 2)
    return out
