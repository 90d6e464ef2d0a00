"""Fuse a machine ``Program`` into three-address instructions: what the token protocol executes.

Within straight-line code, the pattern

    [local.get k | i32.const c | i64.const c]{0,2}  OP  [local.set k | local.tee k]?

becomes ONE fused instruction ``dst = OP(srcA, srcB)``: the sources supply
OP's last (topmost) operands straight from a local or a constant, and the
result goes to the stack (push), a local (set) or both (tee). A bare
``local.get``/``const`` is a ``copy`` that pushes; a bare ``local.set``/
``local.tee`` is a ``copy`` from the stack. ``drop`` and the function-entry
``enter`` disappear (they only change the static stack shape, or zero
locals that a reader treats as 0 when unwritten); their fuel moves to the
fused instruction they follow (a callee's ``enter`` to its call).

A fused group is a contiguous pc range that no jump enters except at its
first instruction: jump targets, function bodies' first instructions and
return points (the pc after a call) always start a group.

Each function's records begin with one ``param k`` record per parameter
(no machine pc, no fuel): a call's header carries the arguments' bytes, and
these records describe them as the static tokens of instructions that set
locals 0..n-1, so that the C(pc) rule covers them like any other tokens.
Likewise one ``result j`` record per result follows every call: a return's
header (or a host call's ``JUMP``) carries the results' bytes, the spans of
these records, which push them on the caller's stack.

Nothing here executes anything: this is a static re-description of the
program. Every fused instruction also carries its static operand-stack
height and the types of the values it emits, from an abstract
interpretation of the machine code over value types (validation makes it
consistent), and its static trace length (tokens.py uses it for the
prompt's prefix sums C(pc)).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..wasm.opcodes import OPS_BY_NAME
from .program import MInstr, Program
from .semantics import DIVISION_OPS, LOADS, NUMERIC, STORES, division_stage_count

# Operand modes and destination modes.
STACK, LOCAL, CONST = "stack", "local", "const"
NONE, PUSH, SET, TEE = "none", "push", "set", "tee"

SOURCES = frozenset({"local.get", "i32.const", "i64.const"})
REMOVED = frozenset({"drop", "enter"})
# Instructions that always leave through an anchor (JUMP, CALL, RET, a host call) or end the trace.
ANCHORED = frozenset({"br", "jump", "br_table", "call", "call_indirect", "return", "unreachable",
                      "unsupported", "memory.fill", "memory.copy", "memory.init", "table.fill",
                      "table.copy", "table.init", "table.grow"})
CONDITIONAL = frozenset({"br_if", "br_unless"})
# Ops whose single result a following local.set/local.tee may take.
_VALUE_OPS = frozenset({"select", "global.get"}) | frozenset(NUMERIC) | frozenset(LOADS)
# Ops that push one result (their destination is PUSH unless a suffix took it).
_PUSHES = _VALUE_OPS | {"memory.size", "memory.grow", "ref.null", "ref.is_null", "ref.func",
                        "table.get", "table.size", "table.grow"}


def width(valtype: str) -> int:
    """Bytes of a value of this type in the trace (references: 4, see docs/PROTOCOL.md)."""
    return 8 if valtype in ("i64", "f64") else 4


@dataclass(frozen=True, slots=True)
class Operand:
    """A fused source: a local's value or a constant (unsigned)."""

    mode: str  # LOCAL | CONST
    value: int


@dataclass(frozen=True, slots=True)
class FusedInstr:
    """One fused (three-address) instruction.

    ``srcs`` are the core op's *last* operands in stack order (deepest first),
    0 to 2 of them; the remaining operands come from the stack. ``args`` are
    the core's machine operands with branch targets rewritten to fused pcs.
    ``out_types`` are the types of the values whose bytes the instruction
    emits when it completes normally: its result, the stored value, the
    values a branch moves, a callee's parameters, a function's results.
    ``length`` is its trace length in tokens when it falls through to the
    next instruction without an anchor; ``None`` when it always re-anchors
    (jumps, calls, returns, dynamic-length operations) or ends the trace.
    """

    op: str  # the core machine op, or 'copy'
    args: tuple
    srcs: tuple[Operand, ...]
    dst: str  # NONE | PUSH | SET | TEE
    dst_local: int
    height: int  # operand-stack height of the frame when the instruction starts
    stack_operands: int  # operands the core pops from the stack (sources excluded)
    out_types: tuple[str, ...]
    length: int | None
    fuel: int  # WebAssembly instructions it counts for (plus run-time extras, docs/PROTOCOL.md)
    origin: tuple[int, ...]  # the machine pcs it came from
    func: int  # function index


@dataclass(frozen=True, slots=True)
class FusedFunc:
    index: int  # in the function index space
    entry: int  # fused pc of its first record: its first `param`, else its body's first group
    params: tuple[str, ...]
    results: tuple[str, ...]
    locals: tuple[str, ...]  # parameters then declared locals


@dataclass(frozen=True, slots=True)
class FusedProgram:
    program: Program
    code: tuple[FusedInstr, ...]
    funcs: tuple[FusedFunc, ...]  # defined functions, in order
    fused_pc: tuple[int, ...]  # machine pc -> fused pc of the group it starts/belongs to (-1: removed)
    starts: tuple[int, ...]  # machine pc -> fused pc when the pc starts a group, else -1
    prefix: tuple[int, ...]  # C(pc): sum of the spans (``span``) of the fused pcs before pc

    def func(self, index: int) -> FusedFunc:
        return self.funcs[index - self.program.module.num_imported_funcs]


# --- static value types along the machine code ---


def _effect(ins: MInstr, stack: list[str], program: Program, local_types: tuple[str, ...]
            ) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """Abstract execution of one instruction over types: (fall-through stack, [(target, stack)])."""
    op, a, module = ins.op, ins.args, program.module
    s = list(stack)
    if op in NUMERIC or op in LOADS or op in STORES or op == "unsupported":
        row = OPS_BY_NAME[ins.origin if op == "unsupported" else op]
        if row.params is None:  # a float op of special typing: nothing after it can be typed
            return None, []
        del s[len(s) - len(row.params):]
        return s + list(row.results or ()), []
    if op in ("i32.const", "i64.const"):
        return s + [op[:3]], []
    if op == "local.get":
        return s + [local_types[a[0]]], []
    if op in ("local.set", "global.set", "drop"):
        return s[:-1], []
    if op == "global.get":
        return s + [module.global_types[a[0]].valtype], []
    if op == "select":
        return s[:-2], []
    if op in ("call", "call_indirect"):
        ftype = module.func_types[a[0]] if op == "call" else module.types[a[0]]
        s = s[:-1] if op == "call_indirect" else s
        return s[:len(s) - len(ftype.params)] + list(ftype.results), []
    if op in ("br", "br_if", "br_table"):
        if op != "br":
            s = s[:-1]
        entries = [a] if op != "br_table" else [*a[0], a[1]]
        jumps = [(t, s[:len(s) - keep - drop] + s[len(s) - keep:]) for t, keep, drop in entries]
        return (s if op == "br_if" else None), jumps
    if op == "br_unless":
        return s[:-1], [(a[0], s[:-1])]
    if op == "jump":
        return None, [(a[0], s)]
    if op in ("return", "unreachable"):
        return None, []
    pops, pushes = _OTHER_EFFECTS[op]
    return s[:len(s) - pops] + list(pushes), []


_OTHER_EFFECTS: dict[str, tuple[int, tuple[str, ...]]] = {
    "local.tee": (0, ()), "enter": (0, ()), "ref.null": (0, ("ref",)), "ref.is_null": (1, ("i32",)),
    "ref.func": (0, ("ref",)), "memory.size": (0, ("i32",)), "memory.grow": (1, ("i32",)),
    "memory.fill": (3, ()), "memory.copy": (3, ()), "memory.init": (3, ()), "data.drop": (0, ()),
    "table.get": (1, ("ref",)), "table.set": (2, ()), "table.size": (0, ("i32",)),
    "table.grow": (2, ("i32",)), "table.fill": (3, ()), "table.copy": (3, ()),
    "table.init": (3, ()), "elem.drop": (0, ()),
}


def stack_types(program: Program, entry: int, end: int, local_types: tuple[str, ...]
                ) -> list[list[str] | None]:
    """The operand-stack types before each pc of one function (None: never reached)."""
    types: list[list[str] | None] = [None] * (end - entry)
    types[0] = []
    work = [entry]
    while work:
        pc = work.pop()
        after, jumps = _effect(program.code[pc], types[pc - entry] or [], program, local_types)
        succs = jumps + ([(pc + 1, after)] if after is not None else [])
        for target, s in succs:
            known = types[target - entry]
            if known is None:
                types[target - entry] = s
                work.append(target)
            else:
                assert len(known) == len(s), f"stack heights disagree at pc {target}"
    return types


# --- grouping ---


def _absorbs(ins: MInstr) -> int:
    """How many of its topmost operands an op can take from fused sources."""
    op = ins.op
    if op in NUMERIC:
        return len(OPS_BY_NAME[op].params or ())
    if op in STORES or op == "select":
        return 2
    if op in LOADS or op in ("local.set", "local.tee", "global.set", "br_if", "br_unless",
                             "br_table"):
        return 1
    return 0


def _entries(program: Program) -> set[int]:
    """Machine pcs where control can arrive other than by falling through."""
    out = set()
    for fn in program.funcs:
        out.add(fn.entry + 1)
    for pc, ins in enumerate(program.code):
        if ins.op in ("br", "br_if"):
            out.add(ins.args[0])
        elif ins.op == "br_table":
            out.update(t for t, _, _ in (*ins.args[0], ins.args[1]))
        elif ins.op in ("br_unless", "jump"):
            out.add(ins.args[0])
        elif ins.op in ("call", "call_indirect"):
            out.add(pc + 1)
    # Arriving at a removed instruction means arriving at the one after it.
    for pc in sorted(out):
        while pc < len(program.code) and program.code[pc].op in REMOVED:
            pc += 1
            out.add(pc)
    return out


def _group_at(code: tuple[MInstr, ...], i: int, end: int, entries: set[int]
              ) -> tuple[list[int], int, int | None]:
    """(source pcs, core pc, suffix pc) of the fused group starting at pc ``i``."""
    j = i
    while j < end and code[j].op in SOURCES and (j == i or j not in entries):
        j += 1
    run = j - i
    if run == 0:
        return [], i, _suffix(code, i, end, entries)
    can_absorb = j < end and j not in entries and code[j].op not in REMOVED
    k = min(run, _absorbs(code[j]) if can_absorb else 0, 2)
    if k == 0 or run > k:  # the first source stands alone: a copy that pushes
        return [], i, None
    return list(range(i, j)), j, _suffix(code, j, end, entries)


def _suffix(code: tuple[MInstr, ...], core: int, end: int, entries: set[int]) -> int | None:
    s = core + 1
    if (code[core].op in _VALUE_OPS and s < end and s not in entries
            and code[s].op in ("local.set", "local.tee")):
        return s
    return None


def fuse(program: Program) -> FusedProgram:
    """The fused program of ``program`` (pure: no execution)."""
    code = program.code
    entries = _entries(program)
    # (sources, core, suffix, func) of each group, or a finished `param` record
    groups: list[tuple[list[int], int, int | None, int] | FusedInstr] = []
    starts = [-1] * len(code)
    fused_pc = [-1] * len(code)
    stacks: list[list[str] | None] = []
    local_types: dict[int, tuple[str, ...]] = {}
    entry: dict[int, int] = {}  # function index -> fused pc of its first record
    for fn in program.funcs:
        locs = tuple(fn.type.params) + tuple(fn.locals)
        local_types[fn.index] = locs
        stacks.extend(stack_types(program, fn.entry, fn.end, locs))
        entry[fn.index] = len(groups)
        n = len(fn.type.params)
        groups += [_param(k, n, t, fn.index) for k, t in enumerate(fn.type.params)]
        i = fn.entry
        while i < fn.end:
            if code[i].op in REMOVED:
                i += 1
                continue
            srcs, core, suffix = _group_at(code, i, fn.end, entries)
            last = suffix if suffix is not None else core
            starts[i] = len(groups)
            for pc in range(i, last + 1):
                fused_pc[pc] = len(groups)
            groups.append((srcs, core, suffix, fn.index))
            groups += _results(program, code[core], stacks[core], fn.index)
            i = last + 1
    # Removed instructions belong to no group; jumps to them land on the next group.
    for pc in range(len(code) - 1, -1, -1):
        if fused_pc[pc] < 0 and pc + 1 < len(code) and code[pc].op in REMOVED:
            fused_pc[pc] = fused_pc[pc + 1]
    fused = []
    for group in groups:
        if isinstance(group, FusedInstr):
            fused.append(group)
            continue
        srcs, core, suffix, func = group
        first = srcs[0] if srcs else core
        # Code no path reaches (a body's final `return` after `unreachable`) gets an empty stack.
        stack = stacks[first] or []
        fused.append(_make(program, srcs, core, suffix, func, stack, stacks[core] or [],
                           local_types[func], fused_pc))
    prefix = [0]
    for f in fused:
        prefix.append(prefix[-1] + span(f))
    funcs = tuple(
        FusedFunc(fn.index, entry[fn.index], tuple(fn.type.params), tuple(fn.type.results),
                  local_types[fn.index])
        for fn in program.funcs)
    return FusedProgram(program, tuple(fused), funcs, tuple(fused_pc), tuple(starts),
                        tuple(prefix[:-1]))


def _param(k: int, n: int, valtype: str, func: int) -> FusedInstr:
    """The record of parameter k of n: its tokens are the argument's bytes in a CALL header,
    the caller's stack slot n - k below the top of its arguments (``args``)."""
    return FusedInstr(op="param", args=(n - k,), srcs=(), dst=SET, dst_local=k, height=0,
                      stack_operands=0, out_types=(valtype,), length=width(valtype), fuel=0,
                      origin=(), func=func)


def _results(program: Program, ins: MInstr, stack: list[str] | None, func: int
             ) -> list[FusedInstr]:
    """The ``result`` records after a call: result j's tokens are its bytes after a RET
    header (or a host call's ``JUMP`` to the first record), pushed at the caller's height;
    a callee in the program left it ``args`` slots below its top."""
    module = program.module
    if ins.op not in ("call", "call_indirect"):
        return []
    ftype = module.func_types[ins.args[0]] if ins.op == "call" else module.types[ins.args[0]]
    base = len(stack or []) - _stack_inputs(ins, program)
    n = len(ftype.results)
    return [FusedInstr(op="result", args=(n - j,), srcs=(), dst=PUSH, dst_local=0,
                       height=base + j, stack_operands=0, out_types=(t,), length=width(t),
                       fuel=0, origin=(), func=func) for j, t in enumerate(ftype.results)]


def emitted_bytes(fi: FusedInstr) -> int:
    """W: the bytes of the values the instruction emits (a store: the bytes it writes)."""
    if fi.op in STORES:
        return STORES[fi.op]
    return sum(width(t) for t in fi.out_types)


def span(fi: FusedInstr) -> int:
    """The instruction's share of C(pc): its static length; a ``return``'s result bytes and
    the marker after them (HALT or RET); 1 for the other anchored instructions."""
    if fi.length is not None:
        return fi.length
    return emitted_bytes(fi) + 1 if fi.op == "return" else 1


def _make(program: Program, srcs: list[int], core: int, suffix: int | None, func: int,
          stack: list[str], core_stack: list[str], local_types: tuple[str, ...],
          fused_pc: list[int]) -> FusedInstr:
    """Build one fused instruction from its machine pcs and the static types around them."""
    code = program.code
    ins = code[core]
    op, args = ins.op, ins.args
    operands = tuple(_operand(code[pc]) for pc in srcs)
    dst, dst_local = NONE, 0
    if suffix is not None:
        dst, dst_local = (SET if code[suffix].op == "local.set" else TEE), code[suffix].args[0]
    if op in SOURCES:  # a bare source: push a copy
        op, args, operands, dst = "copy", (), (_operand(ins),), PUSH
    elif op in ("local.set", "local.tee"):
        op, args, dst, dst_local = "copy", (), (SET if op == "local.set" else TEE), args[0]
    elif op in _PUSHES and dst == NONE:
        dst = PUSH
    n_in = 1 if ins.op in SOURCES else _stack_inputs(ins, program)  # a copy has one operand
    stack_operands = n_in - len(operands)
    out_types = _out_types(program, op, ins, args, core_stack, local_types, dst_local)
    origin = tuple(srcs) + (core,) + ((suffix,) if suffix is not None else ())
    return FusedInstr(
        op=op, args=_retarget(op, args, fused_pc), srcs=operands, dst=dst, dst_local=dst_local,
        height=len(stack), stack_operands=stack_operands, out_types=out_types,
        length=_length(op, out_types),
        fuel=sum(code[pc].fuel for pc in origin) + _callee_entry_fuel(program, ins),
        origin=origin, func=func)


def _operand(ins: MInstr) -> Operand:
    return Operand(LOCAL if ins.op == "local.get" else CONST, ins.args[0])


def _stack_inputs(ins: MInstr, program: Program) -> int:
    """How many operands the machine instruction pops."""
    op = ins.op
    if op in NUMERIC or op in LOADS or op in STORES:
        return len(OPS_BY_NAME[op].params or ())
    if op in ("local.set", "local.tee", "global.set", "br_if", "br_unless", "br_table", "drop"):
        return 1
    if op == "select":
        return 3
    if op == "call":
        return len(program.module.func_types[ins.args[0]].params)
    if op == "call_indirect":
        return 1 + len(program.module.types[ins.args[0]].params)
    if op in _OTHER_EFFECTS:
        return _OTHER_EFFECTS[op][0]
    return 0


def _out_types(program: Program, op: str, ins: MInstr, args: tuple, core_stack: list[str],
               local_types: tuple[str, ...], dst_local: int) -> tuple[str, ...]:
    """The types of the values the instruction's tokens carry (docs/PROTOCOL.md)."""
    module = program.module
    if op == "copy":
        return (local_types[dst_local] if ins.op in ("local.set", "local.tee")
                else (local_types[ins.args[0]] if ins.op == "local.get" else ins.op[:3]),)
    if op in NUMERIC or op in LOADS:
        return tuple(OPS_BY_NAME[op].results or ())
    if op in STORES:
        return (OPS_BY_NAME[op].params[1],)  # type: ignore[index]
    if op == "select":
        # Code no path reaches (after a loop left only by an outer branch) has no static
        # stack; a select there never runs, so any well-formed record will do: an i32 one.
        return (core_stack[-3] if len(core_stack) >= 3 else "i32",)
    if op in ("global.get", "global.set"):
        return (module.global_types[args[0]].valtype,)
    if op in ("br", "br_if", "br_table"):
        keep = args[1] if op != "br_table" else args[1][1]
        below = 0 if op == "br" else 1
        return tuple(core_stack[len(core_stack) - below - keep:len(core_stack) - below])
    if op == "call":
        return tuple(module.func_types[args[0]].params)
    if op == "call_indirect":
        return tuple(module.types[args[0]].params)
    if op == "return":
        return tuple(core_stack[len(core_stack) - args[0]:])
    if op in ("memory.size", "memory.grow", "table.size", "table.grow", "ref.is_null"):
        return ("i32",)
    if op in ("ref.null", "ref.func", "table.get", "table.set"):
        return ("ref",)
    return ()


def _length(op: str, out_types: tuple[str, ...]) -> int | None:
    """Tokens when it falls through without an anchor; None when it always re-anchors."""
    if op in ANCHORED:
        return None
    if op in CONDITIONAL:
        return 1  # NT
    if op in ("data.drop", "elem.drop"):
        return 1  # STEP
    if op in STORES:
        return STORES[op]
    if op in DIVISION_OPS:  # its stage tokens, then the result (semantics.division_stages)
        return division_stage_count(op) + sum(width(t) for t in out_types)
    return sum(width(t) for t in out_types)


def _callee_entry_fuel(program: Program, ins: MInstr) -> int:
    """A direct call into a defined function also counts the callee's ``enter``."""
    if ins.op == "call" and ins.args[0] >= program.module.num_imported_funcs:
        return program.code[program.func(ins.args[0]).entry].fuel
    return 0


def _retarget(op: str, args: tuple, fused_pc: list[int]) -> tuple:
    """Machine branch targets -> fused pcs."""
    if op in ("br", "br_if"):
        return (fused_pc[args[0]], args[1], args[2])
    if op == "br_table":
        return (tuple((fused_pc[t], k, d) for t, k, d in args[0]),
                (fused_pc[args[1][0]], args[1][1], args[1][2]))
    if op in ("br_unless", "jump"):
        return (fused_pc[args[0]],)
    return args
