"""Globals: ``global.get`` and ``global.set``, a keyed address space like the locals.

Keys count in GLOBALS records (10 tokens: type(1) mutable(1) value(8)), so global i's key is
10 i, which the prompt provides by position alone:

  prompt         p - s - 13 (s: the GLOBALS section token): 10 i exactly at the last value
                 byte of record i; inside a record it is between two multiples of 10,
                 before the section negative, after it >= 10 n - 9 (above every index)
  global.set     byte k of its W-byte value: 10 X + (W - 1 - k) (X: the global index), so
                 only the last byte's key is a multiple of 10
  other trace    -1

A ``global.get`` of global X queries 10 X: the latest ``global.set`` of X, else the prompt's
initial value (every global has a record, so the lookup always hits exactly). Its window
holds the value: W bytes for a trace write, the 8-byte field for the prompt (an i32's low
bytes then sit 4 further back), told apart by the writer's ``anchor.present``.

The key is one FFN node (block 5, beside the decode), the read a block-6 head.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wasmformer.graph import Graph, Linear, Node, as_linear
from wasmformer.graph.functions import equals
from wasmformer.machine.prompt import RECORD_SIZES

from . import units as U
from .limits import Limits
from .locate import Anchor
from .operand import Operand
from .record import Record
from .window import Window

STRIDE = RECORD_SIZES["GLOBALS"]
VALUE_END = 4 + STRIDE - 1  # the section token, count(3), then the record: its last byte
ONE = Linear((), 1)
TOP = STRIDE * 256 + 1  # beyond every query STRIDE * X, and never one of them


@dataclass(frozen=True)
class Globals:
    units: U.Units  # the next token's units: global.get and global.set bytes
    key: Node  # this position's global key


def globals_(g: Graph, window: Window, anchor: Anchor, nxt: Record, cur: Record,
             x_cur: Linear, this_in_header: Linear, sel: Sequence[Node], body: Linear,
             b: Operand, limits: Limits) -> Globals:
    p = g.position()
    section = as_linear(g.lookup("globals_at", query=1, key=window.tokens.flag["GLOBALS"],
                                 values=[p]).results[0])
    present = anchor.present
    valid_set = (present + cur.flag("op", "global_set") + window.at(0, "is_byte")
                 - this_in_header - 2)
    offset = cur.number("W", 1) - 1 - (x_cur - cur.number("C", limits.pc_bytes))
    # a prompt position's key is its distance into the GLOBALS section, clamped to TOP
    # (beyond every query STRIDE * X): unclamped it would span max_len and grow the scores
    # with it. relu(1 - present) u - relu(u - TOP - reach present) is min(u, TOP) in the
    # prompt and 0 in the trace (|u| <= reach)
    prompt_key = p - section - VALUE_END
    reach = limits.max_len + VALUE_END
    key = U.node(g, "global.key", [(1, 1 - present, prompt_key),
                                   (-1, prompt_key - TOP - reach * present, ONE),
                                   (1, valid_set, STRIDE * cur.number("X", 1) + offset),
                                   (-1, present, ONE), (1, valid_set, ONE)],
                 -VALUE_END, TOP)
    found = g.lookup("global_read", query=STRIDE * nxt.number("X", 1), key=key,
                     values=[*(window.at(d, "byte") for d in range(8)), present])
    win = [as_linear(x) for x in found.results[:8]]
    in_trace = as_linear(found.results[8])
    wide = equals(g, nxt.number("W"), 8, name="global.W=8")
    units: U.Units = []
    for k in range(8):
        value = [(1, wide, win[7 - k])]
        if k < 4:  # an i32: the prompt's 8-byte field, or the W = 4 bytes a set wrote
            value += [(1, 1 - wide - in_trace, win[7 - k]), (1, in_trace - wide, win[3 - k])]
        byte = U.node(g, f"global.byte{k}", value, 0, 255)
        units += U.enabled(as_linear(byte), nxt.flag("op", "global_get") + sel[k] + body - 2)
        units += U.enabled(b.bytes[k], nxt.flag("op", "global_set") + sel[k] + body - 2)
    return Globals(units, key)
