"""``call_indirect``: the callee from table 0's elements in the prompt, checked.

The record's X is the expected type index, operand slot B the element index i (the
stack's top; the arguments lie below it, see ``calls.py``). The reference executor
(``ReferenceMachine._indirect``) checks, in this order: i >= the table's size
(``UNDEFINED_ELEMENT i``), a null element (``UNINITIALIZED_ELEMENT i``), the callee's type
(``CALL_TYPE_MISMATCH``); then, as for ``call``, the call depth (``STACK_EXHAUSTED``).

- The table's size: ``TABLES`` record 0, by position.
- The element: the prompt's ``ELEMS`` section lists every slot of every table, nulls
  included (value 0), table 0 first, so element i of table 0 is ELEMS record i: read by
  position (the last byte of record i: first record + 10 i + 9), as GLOBALS are. i is its
  low 2 bytes, straight from the stack read (tables hold fewer than 2**16 elements, so a
  larger i is undefined anyway, and the read is then never used); value 0 is a null
  element. (Before, the records held the non-null elements only and were found by
  content, keyed by position arithmetic that took one FFN unit group per possible record:
  max_len / 10 of them, 300K units at 2**20 positions.)
- The callee: its ``FUNCS`` record (value - 1), by position: entry pc and type index.
- The type check compares type indices, so a module with two equal function types is not
  covered (``interpreter.supported`` says so): the reference compares structurally.

The next token: ``CALL`` at the first token, the callee's entry in the payload (in place of
the ``FUNCS`` entry by X that a ``call`` emits there), or a trap (traps.py). A callee that
is an imported function (a host call) is the engine's to splice, like a direct one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from wasmformer.graph import Graph, Linear, LinearLike, Range, as_linear
from wasmformer.machine import vocab
from wasmformer.machine.fuse import FusedInstr, FusedProgram
from wasmformer.machine.prompt import RECORD_SIZES

from . import units as U
from .locate import Anchor
from .operand import Operand
from .record import Record
from .state import Read
from .window import Window

OPS = ("call_indirect",)
CALL = vocab.tok("CALL")
ELEM_LAST = RECORD_SIZES["ELEMS"] - 1  # the value field ends the record
INDEX_LIMIT = 1 << 16  # element indices the content key distinguishes
ONE = Linear((), 1)


@dataclass(frozen=True)
class Indirect:
    entry: list[Linear]  # the callee's entry pc (3 bytes)
    traps: dict[str, Linear]  # reason -> 0/1, exclusive, in the reference's order
    stack_exhausted: U.Units  # units of the depth trap (merged with call's by the caller)


def _section_at(g: Graph, window: Window, name: str) -> tuple[Linear, Linear]:
    """(position of a section's first record (after the section token and its count),
    1 when the section token is at or before this position)."""
    found = g.lookup(f"indirect.{name.lower()}_at", query=1, key=window.tokens.flag[name],
                     values=[g.position()])
    return as_linear(found.results[0]) + 4, as_linear(found.matched_key)


def call_indirect(g: Graph, window: Window, nxt: Record, op: Mapping[str, LinearLike],
                  index: Operand, index_read: Read, anchor: Anchor, max_depth: int) -> Indirect:
    """``index``: operand slot B assembled; ``index_read``: its stack read (the index is
    always the stack's top), whose low 2 bytes place the ELEMS read a layer earlier."""
    p = g.position()
    is_ci = as_linear(op["call_indirect"])
    i = sum((as_linear(x) * 256 ** k for k, x in enumerate(index.bytes[:4])), start=Linear())
    tables, _ = _section_at(g, window, "TABLES")
    size_of = g.lookup("table0.size", query=tables + 4, key=p,
                       values=[window.at(d, "byte") for d in (3, 2, 1, 0)])
    size = sum((as_linear(x) * 256 ** k for k, x in enumerate(size_of.results)),
               start=Linear())
    big = 1 << 33
    undefined = as_linear(g.ffn("trap.undefined_element", [
        (1, i - size + 1 - big * (1 - is_ci), ONE), (-1, i - size - big * (1 - is_ci), ONE)],
        range=Range(0, 1, integer=True)))
    # an i32 on the stack: byte 0 at window distance 3; an index >= 2**16 is beyond the
    # table (INDEX_LIMIT), so only the undefined-element trap, which reads all of i, matters
    low = index_read.window[3, "byte"] + 256 * index_read.window[2, "byte"]
    elems, _ = _section_at(g, window, "ELEMS")
    found = g.lookup("elems", query=elems + RECORD_SIZES["ELEMS"] * low + ELEM_LAST, key=p,
                     values=[window.at(d, "byte") for d in (3, 2)])
    value = as_linear(found.results[0]) + 256 * as_linear(found.results[1])  # func index + 1
    live = is_ci - undefined  # 0/1: a call_indirect whose index is within the table
    uninitialized = as_linear(g.ffn("trap.uninitialized_element", [(1, live - value, ONE)],
                                    range=Range(0, 1, integer=True)))
    callee = g.lookup("indirect.callee", key=p,
                      query=anchor.funcs + RECORD_SIZES["FUNCS"] * (value - 1) + 4,
                      values=[window.at(d, "byte") for d in (4, 3, 2, 1, 0)])
    entry = [as_linear(x) for x in callee.results[:3]]
    ftype = as_linear(callee.results[3]) + 256 * as_linear(callee.results[4])
    # z = 0 exactly when the types agree (and, for the depth trap, at the deepest depth of
    # a defined callee): a triangle of z gates the live flag, one node each
    checked = live - uninitialized
    type_diff = ftype - nxt.number("X", 2)
    mismatch = as_linear(g.ffn("trap.call_type_mismatch", [(1, ONE, checked)] + [
        (-w, type_diff + s, checked) for w, s in ((1, 1), (-2, 0), (1, -1))],
        range=Range(0, 1, integer=True)))
    # a defined callee's entry has a high byte 0 while pcs are below 2**16 (pc_bytes <= 2),
    # an imported one's is ff (no frame, no depth trap)
    z = type_diff + 2 * INDEX_LIMIT * ((max_depth - 1 - anchor.depth) + entry[2])
    exhausted = [(w, z + s, checked) for w, s in ((1, 1), (-2, 0), (1, -1))]
    return Indirect(entry, {"UNDEFINED_ELEMENT": undefined,
                            "UNINITIALIZED_ELEMENT": uninitialized,
                            "CALL_TYPE_MISMATCH": mismatch}, exhausted)


def unsupported(fused: FusedProgram, pc: int, fi: FusedInstr) -> list[str]:
    """What a call_indirect uses that the graph does not cover (see above)."""
    module = fused.program.module
    tables = module.table_types
    problems = []
    if fi.args[1] != 0 or len(tables) != 1:
        problems.append(f"pc {pc}: call_indirect with {len(tables)} tables")
    elif tables[0].limits.min >= INDEX_LIMIT or tables[0].elem != "funcref":
        problems.append(f"pc {pc}: call_indirect on a table of {tables[0].limits.min} "
                        f"{tables[0].elem}s")
    if len(set(module.types)) != len(module.types):
        problems.append(f"pc {pc}: call_indirect in a module with duplicate function types")
    return problems


def units(window: Window, op: Mapping[str, LinearLike], first: LinearLike, body: LinearLike,
          entry: list[Linear], call_entry: tuple[Linear, ...]) -> U.Units:
    """CALL at the first token; in the payload the element's entry instead of the FUNCS
    entry by X (``call_entry``) that the shared payload case emits for every CALL."""
    is_ci = as_linear(op["call_indirect"])
    out = U.enabled(U.constant(CALL), is_ci + first + body - 2)
    for j, (e, x) in enumerate(zip(entry, call_entry, strict=True)):
        out += U.enabled(e - x, is_ci + window.at(j, "CALL") - 1)
    return out
