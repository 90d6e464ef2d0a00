"""Calls and returns: what the next token needs from the other frame.

``CALL entry(3) depth(2)`` then the callee's ``param`` spans (the arguments);
``RET pc(3) depth(2)`` then the caller's ``result`` spans (the results). So:

- the callee's entry: its ``FUNCS`` record (by the call's function index X);
- the new depth: D + 1 (a call) or D - 1 (a return);
- the return pc of a ``RET``: the pc after the call that entered the current frame. That
  call is the instruction of the position just before the frame's ``CALL`` ends (its
  payload belongs to the call), so its record's position is there; pc + 1 =
  (position - first record + 37) / 37, split into bytes by thresholds (the prompt fits in
  max_len positions, so there are at most max_len / 37 of them);
- a ``param``/``result`` value: the other frame's stack slot X below the top it had at the
  anchor (the call's or the return's static height, again read at the position just before
  the anchor's end), at depth D - 1 (after a CALL) or D + 1 (after a RET).
"""

from __future__ import annotations

from dataclasses import dataclass

from wasmformer.graph import Graph, Linear, as_linear
from wasmformer.machine.prompt import CODE_RECORD, RECORD_SIZES

from . import units as U
from .limits import SLOT_LIMIT, Limits
from .locate import Anchor
from .operand import Operand
from .record import Record
from .state import KEY_STEP, Read, WriteKeys, assemble_stack
from .window import SPAN, VALUE, Window

ENTRY_END = 2  # a FUNCS record starts with its entry pc (3 bytes)


@dataclass(frozen=True)
class CallInfo:
    callee_entry: tuple[Linear, Linear, Linear]  # bytes of the called function's entry pc
    return_pc: tuple[Linear, Linear]  # low and high byte of the return pc (a RET's payload)
    other: Operand  # the other frame's value a param/result record copies


def call_info(g: Graph, window: Window, nxt: Record, keys: WriteKeys, anchor: Anchor,
              wide: Linear, limits: Limits) -> CallInfo:
    p = g.position()
    callee = g.lookup("callee", key=p, query=anchor.funcs + RECORD_SIZES["FUNCS"] * nxt.number(
        "X", 2) + ENTRY_END, values=[window.at(d, "byte") for d in (2, 1, 0)])
    # the call that entered this frame: its record is the next one just before the CALL's end
    site = as_linear(g.lookup("call_site", query=anchor.frame - 1, key=p,
                              values=[nxt.start]).results[0])
    times = site - anchor.code + CODE_RECORD  # 37 * (pc + 1)
    # pc + 1 = 256 high + low: high counts the multiples of 37 * 256 up to times, then low
    # the multiples of 37 in the rest (two layers of thresholds, a number of units bounded
    # by the pcs: one layer over every multiple of 37 would grow with max_len)
    records = (limits.max_len + CODE_RECORD) // CODE_RECORD + 1  # records the positions hold
    high = U.node(g, "return_pc.1", [u for t in range(1, min(records // 256 + 1, 256))
                                     for u in U.step(times, CODE_RECORD * 256 * t)], 0, 255)
    rest = times - CODE_RECORD * 256 * as_linear(high)
    low = U.node(g, "return_pc.0", [u for t in range(1, min(records, 256))
                                    for u in U.step(rest, CODE_RECORD * t)], 0, 255)
    # the other frame's top: the static height of the call / return at the anchor (a
    # call_indirect's arguments lie below its table index)
    top = as_linear(g.lookup("other_top", query=anchor.end - 1, key=p, values=[
        nxt.number("height", 1) - nxt.flag("op", "indirect")]).results[0])
    depth = anchor.depth + 1 - 2 * anchor.is_call
    names = [(d, f) for d in range(SPAN) for f in VALUE]
    query = KEY_STEP * (depth * SLOT_LIMIT + top - nxt.number("X", 1))
    found = keys.stack.lookup(g, "other", query, [window.at(*n) for n in names])
    read = Read(dict(zip(names, (as_linear(x) for x in found.results), strict=True)),
                as_linear(found.matched_key), query)
    return CallInfo(tuple(as_linear(x) for x in callee.results),  # type: ignore[arg-type]
                    (as_linear(low), as_linear(high)), assemble_stack(g, "other", read, wide))

