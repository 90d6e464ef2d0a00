"""The reference executor: a plain interpreter of a machine ``Program``.

One operand stack (a Python list) shared by all frames, one list of locals
per frame, a list of ``(return pc, locals)`` frames. Branch unwinding is the
static ``(keep, drop)`` of the instruction; nothing is computed from the
stack's contents. Every instruction's arithmetic is ``semantics``'; this
file only moves values.

For speed the program's instructions are pre-decoded once per instance into
tuples ``(kind, fuel, operands...)`` whose operands are already resolved to
run-time objects (the semantic function, the global, the table, the callee's
entry pc). The hot kinds are dispatched by an if-chain ordered by how often
compiled C executes them; the rest go through ``_OTHER`` handlers.

Counting: ``fuel`` is the number of WebAssembly instructions executed,
counted as wasmtime's fuel counts them (see docs/MACHINE.md). A step budget
is a bound on that count. A wall-clock budget (``Deadline``) is checked every
``CLOCK_INTERVAL`` instructions, at fuel checkpoints that share the step
budget's branch: the hot loop compares ``fuel`` with one ``limit``, the
nearer of the two, and only the rare branch taken there looks at the clock.

Event recording: when ``observer`` is set, it is called before every
instruction with ``(pc, fuel, stack, locals, frames)``: the machine state
the instruction is about to act on (``fuel`` already counts it). The token
machine (tokens.py) reads what each instruction did from these states. It
costs the untraced run nothing: the call sits in the budget check's branch,
which a traced run takes always (its limit is set below any count) and an
untraced run only at a budget stop or a clock checkpoint.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import BudgetExceeded, Trap
from ..wasm.opcodes import OPS_BY_NAME
from .program import MInstr
from .runtime import Function, HostFunction, Memory, Table, WasmFunction
from .semantics import LOADS, NUMERIC, STORES, effective_address, store_bits

if TYPE_CHECKING:
    from .instance import Instance

# Pre-decoded instruction kinds, hottest first.
(LOCAL_GET, CONST, BINARY, LOCAL_SET, LOAD, BR_IF, LOCAL_TEE, STORE, UNARY, BR, CALL, ENTER,
 RETURN, GLOBAL_GET, GLOBAL_SET, BR_UNLESS, JUMP, DROP, SELECT, BR_TABLE, CALL_INDIRECT,
 OTHER) = range(22)

_STRUCTS = {1: struct.Struct("<B"), 2: struct.Struct("<H"), 4: struct.Struct("<I"),
            8: struct.Struct("<Q")}
NO_BUDGET = 1 << 62
# Instructions between two looks at the clock: ~10 ms of reference execution, so a
# wall-clock stop is that late at most, and the look itself costs nothing measurable.
CLOCK_INTERVAL = 1 << 16


@dataclass(frozen=True)
class Deadline:
    """A wall-clock budget: ``seconds`` as the user stated it, ending at ``at`` (monotonic)."""

    seconds: float
    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(seconds, time.monotonic() + seconds)


def check_budgets(done: int, cost: int, budget: int, deadline: Deadline | None) -> None:
    """Stop before an instruction of ``cost`` fuel when a budget is exhausted (``done`` ran)."""
    if done + cost > budget:
        raise BudgetExceeded(f"step budget of {budget} exhausted "
                             "(WebAssembly instructions executed)")
    if deadline is not None and time.monotonic() > deadline.at:
        raise BudgetExceeded(f"wall-clock budget of {deadline.seconds:g} s exhausted "
                             f"after {done} instructions")

# Machine ops whose operands the executor uses unchanged.
_OPERANDS_AS_IS = {
    "local.get": LOCAL_GET, "local.set": LOCAL_SET, "local.tee": LOCAL_TEE, "i32.const": CONST,
    "i64.const": CONST, "enter": ENTER, "br_unless": BR_UNLESS, "jump": JUMP, "drop": DROP,
    "select": SELECT, "br": BR, "br_if": BR_IF, "return": RETURN, "br_table": BR_TABLE,
}

# wasmtime (50.x) charges a grow its delta in fuel when it succeeds, and also when it
# fails with a delta of at most this many pages/elements (observed; see docs/MACHINE.md).
GROW_FAILURE_CHARGE_LIMIT = 128


def grow_fuel(delta: int, result: int) -> int:
    """Extra fuel of a memory.grow/table.grow beyond its base 1."""
    failed = result == 0xFFFF_FFFF
    return delta if not failed or delta <= GROW_FAILURE_CHARGE_LIMIT else 0


def _unwind(stack: list, keep: int, drop: int) -> None:
    """Remove the ``drop`` values beneath the top ``keep`` values."""
    n = len(stack) - keep
    del stack[n - drop:n]


class ReferenceMachine:
    """Executes the functions of one instance."""

    def __init__(self, instance: Instance, max_call_depth: int):
        self.instance = instance
        self.max_call_depth = max_call_depth
        program = instance.program
        self.entries = {f.index: f.entry for f in program.funcs}
        self.code = [self._predecode(ins) for ins in program.code]
        # Called as observer(pc, fuel, stack, locals, frames) before each instruction; see above.
        self.observer: Callable[[int, int, list, list, list], None] | None = None

    # --- pre-decoding ---

    def _predecode(self, ins: MInstr) -> tuple:
        op, a, fuel, inst = ins.op, ins.args, ins.fuel, self.instance
        if op in NUMERIC:
            arity = len(OPS_BY_NAME[op].params or ())
            return (BINARY if arity == 2 else UNARY, fuel, NUMERIC[op])
        if op in LOADS:
            width, extend = LOADS[op]
            return (LOAD, fuel, a[0], width, _STRUCTS[width].unpack_from, extend)
        if op in STORES:
            width = STORES[op]
            return (STORE, fuel, a[0], width, _STRUCTS[width].pack_into)
        if op in _OPERANDS_AS_IS:
            return (_OPERANDS_AS_IS[op], fuel, *a)
        if op in ("global.get", "global.set"):
            return (GLOBAL_GET if op == "global.get" else GLOBAL_SET, fuel, inst.globals[a[0]])
        if op == "call":
            return (CALL, fuel, *self._callee(inst.functions[a[0]]))
        if op == "call_indirect":
            return (CALL_INDIRECT, fuel, inst.module.types[a[0]], inst.tables[a[1]])
        return (OTHER, fuel, _OTHER[op], a)

    def _callee(self, f: Function) -> tuple[int, int, Function]:
        """(entry pc or -1 for a call that leaves this instance, parameter count, function)."""
        if isinstance(f, WasmFunction) and f.instance is self.instance:
            return self.entries[f.index], len(f.type.params), f
        return -1, len(f.type.params), f

    # --- running ---

    def call(self, f: Function, args: list, budget: int | None = None,
             deadline: Deadline | None = None) -> list:
        """Run ``f`` on ``args`` to completion; its results (unsigned ints / references)."""
        entry, _, _ = self._callee(f)
        if entry < 0:
            return self.call_outside(f, list(args))
        return self._run(entry, list(args), NO_BUDGET if budget is None else budget, deadline)

    def call_outside(self, f: Function, args: list) -> list:
        if isinstance(f, HostFunction):
            return list(f.call(self.instance, args))
        return f.instance.machine.call(f, args)

    def _run(self, pc: int, locs: list, budget: int, deadline: Deadline | None) -> list:
        code = self.code
        mem = self.instance.memory.data if self.instance.memory is not None else bytearray()
        stack: list = []
        frames: list[tuple[int, list]] = []
        push, pop = stack.append, stack.pop
        fuel = counted = 0  # executed so far; already added to instance.instructions
        observe = self.observer
        clock = NO_BUDGET if deadline is None else CLOCK_INTERVAL  # the next clock checkpoint
        # The one bound the hot loop checks; a traced run takes the branch at every instruction.
        limit = min(budget, clock) if observe is None else -1
        ins: tuple = ()
        try:
            while True:
                ins = code[pc]
                pc += 1
                fuel += ins[1]
                if fuel > limit:
                    if fuel > budget or fuel > clock:
                        fuel -= ins[1]  # not run yet: a budget stop leaves it out of the count
                        check_budgets(fuel, ins[1], budget, deadline)
                        fuel += ins[1]
                        clock = NO_BUDGET if deadline is None else fuel + CLOCK_INTERVAL
                        if observe is None:
                            limit = min(budget, clock)
                    if observe is not None:
                        observe(pc - 1, fuel, stack, locs, frames)
                k = ins[0]
                if k == LOCAL_GET:
                    push(locs[ins[2]])
                elif k == CONST:
                    push(ins[2])
                elif k == BINARY:
                    b = pop()
                    stack[-1] = ins[2](stack[-1], b)
                elif k == LOCAL_SET:
                    locs[ins[2]] = pop()
                elif k == LOAD:
                    a = effective_address(stack[-1], ins[2], ins[3], len(mem))
                    v = ins[4](mem, a)[0]
                    stack[-1] = v if ins[5] is None else ins[5](v)
                elif k == BR_IF:
                    if pop():
                        if ins[4]:
                            _unwind(stack, ins[3], ins[4])
                        pc = ins[2]
                elif k == LOCAL_TEE:
                    locs[ins[2]] = stack[-1]
                elif k == STORE:
                    v = pop()
                    a = effective_address(pop(), ins[2], ins[3], len(mem))
                    ins[4](mem, a, store_bits(v, ins[3]))
                elif k == UNARY:
                    stack[-1] = ins[2](stack[-1])
                elif k == BR:
                    if ins[4]:
                        _unwind(stack, ins[3], ins[4])
                    pc = ins[2]
                elif k == CALL or k == CALL_INDIRECT:
                    if k == CALL:
                        entry, n, f = ins[2], ins[3], ins[4]
                    else:
                        f = self._indirect(pop(), ins[2], ins[3])
                        entry, n, f = self._callee(f)
                    args = stack[len(stack) - n:]
                    del stack[len(stack) - n:]
                    if entry < 0:
                        # Count what ran so far first, so a host function sees an exact count.
                        self.instance.instructions += fuel - counted
                        counted = fuel
                        stack.extend(self.call_outside(f, args))
                        continue
                    if len(frames) >= self.max_call_depth:
                        raise Trap("call stack exhausted")
                    frames.append((pc, locs))
                    locs, pc = args, entry
                elif k == ENTER:
                    locs.extend(ins[2])
                elif k == RETURN:
                    if ins[3]:
                        _unwind(stack, ins[2], ins[3])
                    if not frames:
                        return stack
                    pc, locs = frames.pop()
                elif k == GLOBAL_GET:
                    push(ins[2].value)
                elif k == GLOBAL_SET:
                    ins[2].value = pop()
                elif k == BR_UNLESS:
                    if not pop():
                        pc = ins[2]
                elif k == JUMP:
                    pc = ins[2]
                elif k == DROP:
                    pop()
                elif k == SELECT:
                    c = pop()
                    b = pop()
                    if not c:
                        stack[-1] = b
                elif k == BR_TABLE:
                    i = pop()
                    target, keep, drop = ins[2][i] if i < len(ins[2]) else ins[3]
                    if drop:
                        _unwind(stack, keep, drop)
                    pc = target
                else:
                    fuel += ins[2](self, stack, *ins[3])
        finally:
            self.instance.instructions += fuel - counted

    def _indirect(self, i: int, expected, table: Table) -> Function:
        """The function call_indirect calls: table element ``i``, checked."""
        if i >= len(table.elems):
            raise Trap(f"undefined element {i}")  # the reference interpreter's wording
        f = table.elems[i]
        if f is None:
            raise Trap(f"uninitialized element {i}")
        if f.type != expected:
            raise Trap("indirect call type mismatch")
        return f

    @property
    def memory(self) -> Memory:
        return self.instance.memory  # type: ignore[return-value]


# --- the less frequent instructions: handler(machine, stack, *operands) -> extra fuel ---


def _trap(reason: str) -> Callable[..., int]:
    def handler(m: ReferenceMachine, stack: list, *args) -> int:
        raise Trap(reason)
    return handler


def _unsupported(m: ReferenceMachine, stack: list, reason: str) -> int:
    raise Trap(reason)


def _memory_size(m: ReferenceMachine, stack: list) -> int:
    stack.append(m.memory.pages)
    return 0


def _memory_grow(m: ReferenceMachine, stack: list) -> int:
    delta = stack[-1]
    stack[-1] = m.memory.grow(delta)
    return grow_fuel(delta, stack[-1])


def _bulk_args(stack: list) -> tuple[int, int, int]:
    """Pop (destination, source-or-value, length) of a bulk instruction."""
    n, s, d = stack.pop(), stack.pop(), stack.pop()
    return d, s, n


def _memory_fill(m: ReferenceMachine, stack: list) -> int:
    d, value, n = _bulk_args(stack)
    data = m.memory.data
    effective_address(d, 0, n, len(data))
    data[d:d + n] = bytes([store_bits(value, 1)]) * n
    return n


def _memory_copy(m: ReferenceMachine, stack: list) -> int:
    d, s, n = _bulk_args(stack)
    data = m.memory.data
    effective_address(s, 0, n, len(data))
    effective_address(d, 0, n, len(data))
    data[d:d + n] = data[s:s + n]
    return n


def _memory_init(m: ReferenceMachine, stack: list, x: int) -> int:
    d, s, n = _bulk_args(stack)
    seg, data = m.instance.datas[x], m.memory.data
    effective_address(s, 0, n, len(seg))
    effective_address(d, 0, n, len(data))
    data[d:d + n] = seg[s:s + n]
    return n


def _data_drop(m: ReferenceMachine, stack: list, x: int) -> int:
    m.instance.datas[x] = b""
    return 0


TABLE_OOB = "out of bounds table access"


def _table_check(start: int, n: int, size: int) -> None:
    if start + n > size:
        raise Trap(TABLE_OOB)


def _table_get(m: ReferenceMachine, stack: list, x: int) -> int:
    elems = m.instance.tables[x].elems
    _table_check(stack[-1], 1, len(elems))
    stack[-1] = elems[stack[-1]]
    return 0


def _table_set(m: ReferenceMachine, stack: list, x: int) -> int:
    elems = m.instance.tables[x].elems
    value, i = stack.pop(), stack.pop()
    _table_check(i, 1, len(elems))
    elems[i] = value
    return 0


def _table_size(m: ReferenceMachine, stack: list, x: int) -> int:
    stack.append(len(m.instance.tables[x].elems))
    return 0


def _table_grow(m: ReferenceMachine, stack: list, x: int) -> int:
    delta, init = stack.pop(), stack.pop()
    result = m.instance.tables[x].grow(delta, init)
    stack.append(result)
    return grow_fuel(delta, result)


def _table_fill(m: ReferenceMachine, stack: list, x: int) -> int:
    i, value, n = _bulk_args(stack)
    elems = m.instance.tables[x].elems
    _table_check(i, n, len(elems))
    elems[i:i + n] = [value] * n
    return n


def _table_copy(m: ReferenceMachine, stack: list, dst: int, src: int) -> int:
    d, s, n = _bulk_args(stack)
    to, frm = m.instance.tables[dst].elems, m.instance.tables[src].elems
    _table_check(s, n, len(frm))
    _table_check(d, n, len(to))
    to[d:d + n] = frm[s:s + n]
    return n


def _table_init(m: ReferenceMachine, stack: list, e: int, x: int) -> int:
    d, s, n = _bulk_args(stack)
    seg, elems = m.instance.elems[e], m.instance.tables[x].elems
    _table_check(s, n, len(seg))
    _table_check(d, n, len(elems))
    elems[d:d + n] = seg[s:s + n]
    return n


def _elem_drop(m: ReferenceMachine, stack: list, e: int) -> int:
    m.instance.elems[e] = ()
    return 0


def _ref_null(m: ReferenceMachine, stack: list) -> int:
    stack.append(None)
    return 0


def _ref_is_null(m: ReferenceMachine, stack: list) -> int:
    stack[-1] = int(stack[-1] is None)
    return 0


def _ref_func(m: ReferenceMachine, stack: list, x: int) -> int:
    stack.append(m.instance.functions[x])
    return 0


_OTHER: dict[str, Callable[..., int]] = {
    "unreachable": _trap("unreachable"),
    "unsupported": _unsupported,
    "memory.size": _memory_size,
    "memory.grow": _memory_grow,
    "memory.fill": _memory_fill,
    "memory.copy": _memory_copy,
    "memory.init": _memory_init,
    "data.drop": _data_drop,
    "table.get": _table_get,
    "table.set": _table_set,
    "table.size": _table_size,
    "table.grow": _table_grow,
    "table.fill": _table_fill,
    "table.copy": _table_copy,
    "table.init": _table_init,
    "elem.drop": _elem_drop,
    "ref.null": _ref_null,
    "ref.is_null": _ref_is_null,
    "ref.func": _ref_func,
}
