"""The next token: one FFN node summing every case, each under its own enable flag.

At position p the graph knows the next token's instruction (its record), the offset k of
the token within the instruction's span, and whether the token lies in an anchor's payload
(the marker j tokens back). Each case below contributes units enabled only when its
conditions hold (``units.enabled``: an enable is a sum of 0/1 flags minus a constant, 1
exactly when all hold), and the cases are exclusive, so the node is the token id itself
(``emit_token_id``):

  JUMP payload, byte j       byte j of the branch's target pc (its record's X)
  CALL payload, byte j       bytes of the callee's entry pc, then the new depth D + 1
  RET payload, byte j        bytes of the return pc, then the new depth D - 1
  ALU op, byte k             byte k of the result (the circuit's last layer, pending)
  copy, byte k               byte k of operand B
  select, byte k             byte k of the deep operand, or of operand A when B is 0
  param / result, byte k     byte k of the value copied from the other frame's stack
  br_if / br_unless, k = 0   NT or JUMP by operand B (non-zero / zero)
  br, jump, k = 0            JUMP
  call, k = 0                CALL
  return at depth 0          byte k < W of the top stack slot (operand B), then HALT at k = W
  return at depth > 0, k = 0 RET

Loads, stores, ``memory.size`` (memory.py) and ``global.get``/``global.set`` (globals.py)
join as ``extra`` units. Anything else (unsupported ops) emits 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from wasmformer.graph import Graph, Linear, Node, Range
from wasmformer.machine import vocab

from . import units as U
from .alu import ALU_OPS, DIVISION
from .calls import CallInfo
from .operand import Operand
from .record import Record
from .window import Window

JUMP, NT, HALT, CALL, RET = (vocab.tok(n) for n in ("JUMP", "NT", "HALT", "CALL", "RET"))
ONE = Linear((), 1)


@dataclass(frozen=True)
class Decoded:
    """The next token's instruction, decoded (FFN outputs, 0/1 unless said)."""

    op: Mapping[str, Node]  # op flags
    sel: list[Node]  # sel[k]: the offset in the span is k
    at_w: Node  # the offset is W (a return's marker)
    depth_zero: Node  # the call depth is 0
    depth: Linear  # the call depth (an integer)
    in_payload: Linear  # the next token is in an anchor's payload


def next_token(g: Graph, window: Window, nxt: Record, d: Decoded,
               operands: tuple[Operand, Operand, Operand], calls: CallInfo,
               alu_ops: tuple[str, ...], extra: U.Units = ()) -> Node:
    """``operands``: the one below slots A and B (select's first), slot A, slot B;
    ``extra``: the units of cases built elsewhere (memory.py, globals.py, traps.py, ...),
    each already under its own enable."""
    op, sel = d.op, d.sel
    deep, a, b = operands
    body = 1 - d.in_payload  # the next token is in an instruction's static span
    units: U.Units = []
    target = nxt.bytes("X")
    for j in range(3):  # the pc in a payload: the marker is j tokens back
        ret = window.at(j, "callret") - window.at(j, "CALL")
        units += U.enabled(target[j], window.at(j, "JUMP"))
        units += U.enabled(calls.callee_entry[j], window.at(j, "CALL"))
        if j < 2:
            units += U.enabled(calls.return_pc[j], ret)
    units += U.enabled(d.depth + 1, window.at(3, "CALL"))  # the new depth's low byte
    units += U.enabled(d.depth - 1, window.at(3, "callret") - window.at(3, "CALL"))
    for name in alu_ops:
        if name in DIVISION:  # across its stage tokens: stages.py (an ``extra`` case)
            continue
        spec = ALU_OPS[name]
        operands = (b,) if len(spec.params) == 1 else (a, b)
        operands = tuple(Operand(x.bytes[:n], x.bits[:8 * n])
                         for x, n in zip(operands, spec.params, strict=True))
        for k, x in enumerate(spec.pending(g, *operands, name=f"alu.{name}")):
            units += U.enabled(x, op[name] + sel[k] + body - 2)
    for k in range(8):
        units += U.enabled(b.bytes[k], op["copy"] + sel[k] + body - 2)
        for copied in ("param", "result"):
            units += U.enabled(calls.other.bytes[k], op[copied] + sel[k] + body - 2)
        units += U.enabled(b.bytes[k], op["return"] + sel[k] + body + d.depth_zero - d.at_w - 3)
    units += U.enabled(U.constant(HALT), op["return"] + d.at_w + body + d.depth_zero - 3)
    units += U.enabled(U.constant(RET), op["return"] + sel[0] + body - d.depth_zero - 2)
    cond_zero = 1 - sum(b.bytes[:4], start=Linear())  # relu of it: 1 when the i32 is 0
    for k in range(8):  # select: the deep operand, or slot A when the condition (B) is 0
        units += U.enabled([(1, ONE, deep.bytes[k]), (1, cond_zero, a.bytes[k] - deep.bytes[k])],
                           op["select"] + sel[k] + body - 2)
    units += U.enabled([(JUMP, ONE, ONE), (NT - JUMP, cond_zero, ONE)],
                       op["br_if"] + sel[0] + body - 2)
    units += U.enabled([(NT, ONE, ONE), (JUMP - NT, cond_zero, ONE)],
                       op["br_unless"] + sel[0] + body - 2)
    for name, token in (("br", JUMP), ("jump", JUMP), ("call", CALL)):
        units += U.enabled(U.constant(token), op[name] + sel[0] + body - 2)
    units += list(extra)
    return g.ffn("next_token", units, range=Range(0, vocab.SIZE - 1, integer=True))
