"""``br_table``: ``JUMP`` to the prompt's ``JTAB`` entry the index selects (default last).

The record's X is its first ``JTAB`` entry, Y the number of entries (the default is the
last), operand slot B the index (an i32 from the stack or a fused source). The entry is
min(index, Y - 1) = index - relu(index - (Y - 1)): one FFN node, exact for any 32-bit
index. A ``JTAB`` record is target(3) keep(2) drop(2) at a position linear in its index,
so one head keyed by position copies its target's 3 bytes (the window of the target
field's last byte). The next token is then ``JUMP`` at the instruction's first token and
the target's bytes in the ``JUMP`` payload, in place of the record's X that a ``br``
emits there (the payload case of ``emit.py`` keys on the marker, not the op).

Entries that move kept values (keep > 0 and drop > 0: their bytes precede ``JUMP``) are
not executed yet (``interpreter.supported`` names them).
"""

from __future__ import annotations

from collections.abc import Mapping

from wasmformer.graph import Graph, Linear, LinearLike, Range, as_linear
from wasmformer.machine import vocab
from wasmformer.machine.prompt import RECORD_SIZES

from . import units as U
from .operand import Operand
from .record import Record
from .window import Window

OPS = ("br_table",)
JUMP = vocab.tok("JUMP")
TARGET_END = 2  # a JTAB record starts with its target pc (3 bytes)
ONE = Linear((), 1)


def jump_targets(g: Graph, window: Window, nxt: Record, index: Operand) -> list[Linear]:
    """The 3 bytes of the target pc the next instruction's ``JTAB`` entry names (when it is
    a ``br_table``; meaningless otherwise)."""
    p = g.position()
    jtab = as_linear(g.lookup("jtab_at", query=1, key=window.tokens.flag["JTAB"],
                              values=[p]).results[0]) + 4  # section token and count(3)
    i = sum((as_linear(x) * 256 ** k for k, x in enumerate(index.bytes[:4])), start=Linear())
    last = nxt.number("Y") - 1
    entry = as_linear(g.ffn("br_table.entry", [(1, ONE, i), (-1, i - last, ONE)],
                            range=Range(-1, 2 ** 16 - 1, integer=True)))  # -1: no entries (not a br_table)
    found = g.lookup("br_table.target", key=p, values=[window.at(d, "byte") for d in (2, 1, 0)],
                     query=jtab + RECORD_SIZES["JTAB"] * (nxt.number("X") + entry) + TARGET_END)
    return [as_linear(x) for x in found.results]


def units(window: Window, op: Mapping[str, LinearLike], first: LinearLike, body: LinearLike,
          targets: list[Linear], br_targets: list[Linear]) -> U.Units:
    """JUMP at the first token; in the payload, the entry's target instead of the record's X
    (``br_targets``, which the shared payload case emits for every JUMP)."""
    is_table = as_linear(op["br_table"])
    out = U.enabled(U.constant(JUMP), is_table + first + body - 2)
    for j, (t, x) in enumerate(zip(targets, br_targets, strict=True)):
        out += U.enabled(t - x, is_table + window.at(j, "JUMP") - 1)
    return out
