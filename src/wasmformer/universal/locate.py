"""Where the trace is: the latest anchor, the C(pc) rule, and the record of an instruction.

Anchors. ``JUMP pc(3)``, ``CALL pc(3) depth(2)`` and ``RET pc(3) depth(2)`` end at a
position the window recognises (the marker 3 or 5 tokens back), and their target pc is
then in the window. One head finds the latest anchor end e <= p (query 1, key 1 at anchor
ends; latest wins); its matched key is 0 when there is none (the prompt).

The C(pc) rule (docs/PROTOCOL.md). After an anchor ending at e, the token at position q
belongs to the instruction whose static span [C(pc), C(pc) + span) holds
X(q) = C(target) + (q - e - 1). Inside an anchor's payload (after its marker, up to e) the
token belongs to the instruction that emitted the marker, at the offset of the marker:
X = the marker's own X, i.e. X(q) - (q - marker position).

The floor. The instruction holding X is the last record with C <= X. A lookup keyed by C
(at each record's C bytes, every other position pushed beyond any query) finds the
nearest record n; the floor is n, or n - 1 when C(n) > X (one FFN step). Its record
then is fetched by position.
"""

from __future__ import annotations

from dataclasses import dataclass

from wasmformer.graph import Graph, Linear, Node, Range, as_linear
from wasmformer.graph.functions import clamp, step
from wasmformer.machine.prompt import CODE_RECORD

from .limits import Limits
from .record import OFFSET, SIZE, Record
from .window import Window

ONE = Linear((), 1)

JUMP_PAYLOAD, CALLRET_PAYLOAD = 3, 5


def anchor_window_needs() -> dict[int, set[str]]:
    needs: dict[int, set[str]] = {}
    for d in range(JUMP_PAYLOAD + 1):
        needs.setdefault(d, set()).add("JUMP")
    for d in range(CALLRET_PAYLOAD + 1):
        needs.setdefault(d, set()).update(("callret", "CALL"))
    needs[OFFSET["C"] + SIZE["C"] - 1].add("is_op")  # a record's C ends 3 after its op token
    return needs


@dataclass(frozen=True)
class Anchor:
    present: Linear  # 1 when an anchor ended at or before p (0 in the prompt)
    end: Linear  # its end position e
    pc: Linear  # its target (fused pc)
    is_call: Linear  # 1 when it is a CALL
    target_c: Linear  # C(target)
    depth: Linear  # the call depth set by the latest CALL/RET
    frame: Linear  # the end of the CALL that entered the current frame (its identity)
    code: Linear  # position of the first CODE record
    funcs: Linear  # position of the first FUNCS record


def find_anchor(g: Graph, window: Window, limits: Limits) -> Anchor:
    p = g.position()
    n = limits.pc_bytes
    code, funcs = (as_linear(g.lookup(f"{name.lower()}_at", query=1,
                                      key=window.tokens.flag[name], values=[p]).results[0]) + 4
                   for name in ("CODE", "FUNCS"))  # section token, count(3), then the records
    jump_end = window.at(JUMP_PAYLOAD, "JUMP")
    callret_end = window.at(CALLRET_PAYLOAD, "callret")
    call_end = window.at(CALLRET_PAYLOAD, "CALL")
    target = g.ffn("anchor_pc", [(1, jump_end, window.number([2, 1, 0][:n])),
                                 (1, callret_end, window.number([4, 3, 2][:n]))],
                   range=Range(0, 256 ** n - 1, integer=True))
    found = g.lookup("anchor", query=1, key=jump_end + callret_end, values=[p, target, call_end])
    present, end, pc, is_call = (as_linear(x) for x in found)
    # the new depth at a CALL/RET end (0 elsewhere); declared below max_depth, so a deeper
    # call is an evaluation error rather than a misread
    depth_here = g.ffn("anchor_depth", [(1, callret_end, window.at(1, "byte"))],
                       range=Range(0, limits.max_depth - 1, integer=True))
    depth = as_linear(g.lookup("depth", query=1, key=callret_end, values=[depth_here]).results[0])
    # the frame of depth D: the latest CALL that entered depth D (a RET returns to an older one)
    entered = g.ffn("frame_key", [(1, call_end, window.at(1, "byte") + 1)],
                    range=Range(0, limits.max_depth, integer=True))
    frame = g.lookup("frame", query=depth + 1, key=entered, values=[p])
    c_end = OFFSET["C"] + SIZE["C"] - 1
    c_of = g.lookup("target_c", query=code + CODE_RECORD * pc + c_end, key=p,
                    values=[window.number(list(range(SIZE["C"] - 1, -1, -1))[:n])])
    return Anchor(present, end, pc, is_call, as_linear(c_of.results[0]), depth,
                  as_linear(frame.results[0]), code, funcs)


def header_offsets(window: Window) -> tuple[Linear, Linear, Linear]:
    """(offset of the next token in an anchor payload (0: not in one), 1 when the next
    token is in a payload, 1 when this token must not be read as a value's byte)."""
    off = sum((window.at(d, "JUMP") * (d + 1) for d in range(JUMP_PAYLOAD)), start=Linear())
    off += sum((window.at(d, "callret") * (d + 1) for d in range(CALLRET_PAYLOAD)),
               start=Linear())
    inside = sum((window.at(d, "JUMP") for d in range(JUMP_PAYLOAD)), start=Linear())
    inside += sum((window.at(d, "callret") for d in range(CALLRET_PAYLOAD)), start=Linear())
    # This token: at an anchor's end its X is measured from that anchor (the record before
    # the target); earlier in a JUMP's payload the X of the marker + 1 or + 2 cannot end a
    # value of 4 or more bytes, so only the JUMP's end and every CALL/RET payload token
    # need excluding (see state.write_keys).
    this = window.at(JUMP_PAYLOAD, "JUMP")
    this += sum((window.at(d, "callret") for d in range(CALLRET_PAYLOAD + 1)), start=Linear())
    return off, inside, this


def bounded_x(g: Graph, name: str, x: Linear, limits: Limits) -> Node:
    """X clamped to -1 .. 1.5 * 256**pc_bytes, in one FFN node (X's inputs are attention
    outputs and position, so the node takes the FFN of the block that fetches C(target),
    before any reader: no layer is added). Every X in the trace is below 256**pc_bytes plus
    an instruction's span, so the clamp changes none of them; in the prompt X is garbage
    either way, and unclamped it spans the positions, which would grow every key built
    from it, and so the lookups' scores, with max_len (docs/UNIVERSAL.md "Numerics and
    limits")."""
    return clamp(g, x, -1, 256**limits.pc_bytes + 256**limits.pc_bytes // 2, name=name)


def floor_record_start(g: Graph, window: Window, name: str, x: Linear, limits: Limits) -> Linear:
    """The position of the record of the instruction whose span holds ``x``."""
    p = g.position()
    n = limits.pc_bytes
    c_end = OFFSET["C"] + SIZE["C"] - 1
    far = 2 * 256 ** n + 16  # beyond every query's distance to the nearest record
    key = window.number(list(range(SIZE["C"] - 1, -1, -1))[:n]) + far * (
        1 - window.at(c_end - OFFSET["op"], "is_op"))
    nearest = g.lookup(name, query=x, key=key, values=[p])
    c_near, at = nearest.matched_key, nearest.results[0]
    over = step(g, c_near - x, 1, name=f"{name}.over")  # 1: the nearest record starts after x
    return at - c_end - CODE_RECORD * over


def fetch_record(g: Graph, window: Window, name: str, x: Linear, fields, limits: Limits
                 ) -> Record:
    return Record(g, window, name, floor_record_start(g, window, f"{name}.floor", x, limits),
                  fields)
