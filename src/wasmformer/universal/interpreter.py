"""The universal interpreter graph: fed a program's prompt and trace, it predicts the next
trace token as the reference token machine does (docs/PROTOCOL.md).

The program is only in the prompt: the graph is the same for every program. Data flow, by
sublayer (attention heads then FFN nodes; the compiler schedules them):

  1 attn  the window (7 heads: tokens p-7 .. p-1); the CODE section's position
  1 ffn   the target pc an anchor ending here names
  2 attn  the latest anchor end (its target pc), the call depth, the frame
  3 attn  C(target): one field of the target's record
  4 attn  the floor lookups: which record's span holds X (next token) and X - 1 (this one)
  4 ffn   floor = nearest or the one before
  5 attn  the next token's record (5 heads) and this token's record (2 heads); the write
          keys of this token are linear in them
  5 ffn   decode: op flags, the offset k within the span, widths
  6 attn  the next instruction's operands: stack slots and locals, by key
  6 ffn   the operands' bytes and bits (constant, stack, local or 0)
  7.. ffn the ALU circuits, and the next token (one node, all cases merged)

Memory and globals (memory.py with memsize.py for the size and ``memory.grow``, globals.py)
add their keys, reads and next-token units;
the info dict's ``"traps"`` maps a trap reason to a 0/1 node that is 1 where the next token
would be that trap (``{"MEMORY_OOB": node}``; the graph does not emit traps itself).

``supported(fused)`` lists what a program uses that this graph does not execute yet.
"""

from __future__ import annotations

from wasmformer.graph import Graph, as_linear
from wasmformer.graph.functions import equals
from wasmformer.graph.output import emit_token_id
from wasmformer.machine import vocab
from wasmformer.machine.fuse import FusedProgram

from . import branch_table, host, indirect, results, stages, traps
from .calls import call_info
from .emit import Decoded, next_token
from .features import CONTROL_OPS, op_id, token_features
from .globals import globals_
from .limits import Limits
from .locate import anchor_window_needs, bounded_x, fetch_record, find_anchor, header_offsets
from .memops import MEMORY_OPS
from .memory import CUR_FIELDS as MEMORY_CUR_FIELDS
from .memory import memory, memory_window_needs, run_bytes
from .record import SIZE, window_needs
from .state import assemble, assemble_stack, read_state, write_keys
from .window import Window

NEXT_FIELDS = tuple(SIZE)  # every field of the next token's record
CUR_FIELDS = ("op", "C", "W", "A", "B", "dst", "local", "height",  # what a write key needs
              *MEMORY_CUR_FIELDS)
MAX_SPAN = 8  # offsets within a span the graph distinguishes (values of up to 8 bytes)


def build_universal_graph(limits: Limits | None = None) -> tuple[Graph, dict]:
    """The graph and an info dict (limits, ops, and a few nodes worth inspecting)."""
    limits = limits or Limits()
    g = Graph(vocab.SIZE, limits.max_len)
    tokens = token_features(g)
    needs: dict[int, set[str]] = {}
    for part in (anchor_window_needs(), window_needs(NEXT_FIELDS), window_needs(CUR_FIELDS),
                 memory_window_needs(), traps.window_needs(), host.window_needs(),
                 stages.window_needs()):
        for d, names in part.items():
            needs.setdefault(d, set()).update(names)
    window = Window(g, tokens, needs)
    anchor = find_anchor(g, window, limits)
    payload_offset, in_payload, this_in_header = header_offsets(window)
    trap_offset, in_trap, this_in_trap = traps.offsets(window)
    run = run_bytes(g, window)
    # a host call's spliced tokens write no state before its JUMP re-anchors (host.py)
    spliced = host.spliced(g, window, run[1])
    in_payload = in_payload + in_trap
    this_in_header = this_in_header + this_in_trap + spliced
    p = g.position()
    x_next = as_linear(bounded_x(g, "x_next", anchor.target_c + p - anchor.end
                                 - payload_offset - trap_offset, limits))
    x_cur = as_linear(bounded_x(g, "x_cur", anchor.target_c + p - anchor.end - 1, limits))
    nxt = fetch_record(g, window, "next", x_next, NEXT_FIELDS, limits)
    cur = fetch_record(g, window, "cur", x_cur, CUR_FIELDS, limits)
    # a division's stage tokens are work, not values: no write keys (stages.py)
    keys = write_keys(g, cur, x_cur, anchor, this_in_header + window.at(0, "is_stage"), limits)

    # decode the next token's instruction (one FFN sublayer)
    op_code = nxt.flag("op", "op_id")
    ops = {name: equals(g, op_code, op_id(name), name=f"op={name}")
           for name in (*limits.ops, *CONTROL_OPS, *traps.OPS, *branch_table.OPS,
                         *indirect.OPS)}
    k = x_next - nxt.number("C", limits.pc_bytes)
    width = nxt.number("W")
    sel = [equals(g, k, j, name=f"k={j}") for j in range(MAX_SPAN + 1)]
    at_w = equals(g, k - width, 0, name="k=W")
    wide_by_w = equals(g, width + 16 * (1 - nxt.flag("op", "sized_by_w")), 8, name="W=8")
    wide_a_by_w = equals(g, width + 16 * (1 - nxt.flag("op", "a_sized_by_w")), 8, name="A:W=8")
    depth_zero = equals(g, anchor.depth, 0, name="depth=0")

    reads = read_state(g, window, keys, nxt, anchor)
    a = assemble(g, "A", nxt, "A", reads, nxt.flag("op", "wide_a") + wide_a_by_w)
    deep = assemble_stack(g, "deep", reads.stack["deep"], wide_a_by_w)
    b = assemble(g, "B", nxt, "B", reads, nxt.flag("op", "wide_b") + wide_by_w,
                 extra_stack=ops["return"])
    calls = call_info(g, window, nxt, keys, anchor, as_linear(wide_by_w), limits)
    body = 1 - in_payload
    mem = memory(g, window, anchor, nxt, cur, reads, keys, x_cur, this_in_header, sel, body, b,
                 limits, run)
    glob = globals_(g, window, anchor, nxt, cur, x_cur, this_in_header, sel, body, b, limits)
    table_call = indirect.call_indirect(g, window, nxt, ops, b, reads.stack["B"], anchor,
                                        limits.max_depth)
    trapping = traps.TrapSources()
    trapping.add("UNREACHABLE", traps.unreachable(ops))
    trapping.add("UNSUPPORTED", traps.unsupported(ops), nxt.bytes("X")[:3])
    trapping.add("MEMORY_OOB", mem.oob)  # memory.py already gives way to it
    for reason, cond in table_call.traps.items():
        trapping.add(reason, cond, b.bytes[:traps.REASONS[reason]])
    trapping.add("STACK_EXHAUSTED", traps.stack_exhausted(
        g, ops["call"], anchor.depth, traps.imported(g, calls.callee_entry), limits.max_depth,
        table_call.stack_exhausted))
    trapping.add_all(traps.alu_traps(g, ops, limits.ops, (a, b)))
    # a trapping instruction's own tokens give way to the trap's (traps.py)
    decoded = Decoded(ops, sel, at_w, depth_zero, anchor.depth, in_payload + trapping.total())
    table_targets = branch_table.jump_targets(g, window, nxt, b)
    extra = mem.units + glob.units + trapping.units(window, sel[0], in_payload)
    extra += branch_table.units(window, ops, sel[0], 1 - decoded.in_payload, table_targets,
                                nxt.bytes("X")[:3])
    extra += indirect.units(window, ops, sel[0], 1 - decoded.in_payload, table_call.entry,
                            calls.callee_entry)
    extra += results.units(g, window, nxt, keys, cur.number("W", 1), anchor, ops, depth_zero,
                           k, at_w, sel, 1 - decoded.in_payload, b)
    extra += stages.division_units(g, window, k, ops, (a, b), 1 - decoded.in_payload)
    out = next_token(g, window, nxt, decoded, (deep, a, b), calls, limits.ops, extra)
    emit_token_id(g, out)
    info = {"limits": limits, "x_next": x_next,
            "ops": (*limits.ops, *CONTROL_OPS, *MEMORY_OPS, *traps.OPS, *branch_table.OPS,
                    *indirect.OPS),
            "x_cur": x_cur, "next_token": out, "keys": keys, "anchor": anchor,
            "operands": (a, b), "trap_sources": trapping, "traps": dict(trapping.conditions),
            "memory": mem, "globals": glob, "spliced": spliced}
    return g, info


def supported(fused: FusedProgram, limits: Limits | None = None) -> list[str]:
    """What the graph cannot execute in ``fused`` (empty: the whole program is covered)."""
    limits = limits or Limits()
    known = {*limits.ops, *CONTROL_OPS, *MEMORY_OPS, *traps.OPS, *branch_table.OPS,
             *indirect.OPS}
    problems = []  # (a call of an import is a host call: an engine splices it, host.py)
    for pc, fi in enumerate(fused.code):
        if fi.op not in known:
            problems.append(f"pc {pc}: {fi.op}")
        elif fi.op in ("br", "br_if") and fi.args[1] and fi.args[2]:
            problems.append(f"pc {pc}: {fi.op} moving {fi.args[1]} kept values")
        elif fi.op == "br_table" and any(k and d for _, k, d in (*fi.args[0], fi.args[1])):
            problems.append(f"pc {pc}: br_table moving {fi.args[1][1]} kept values")
        elif fi.op == "call_indirect":
            problems += indirect.unsupported(fused, pc, fi)
        elif fi.op == "return" and len(fi.out_types) > results.MAX_RESULTS:
            problems.append(f"pc {pc}: return of {len(fi.out_types)} values")
    return problems

