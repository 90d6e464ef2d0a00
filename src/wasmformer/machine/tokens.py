"""The reference token machine: the exact trace tokens of an execution (docs/PROTOCOL.md).

It executes nothing itself. The reference executor runs the program with an
observer (``ReferenceMachine.observer``) that sees the machine state before
every machine instruction; this module groups those instructions into the
fused instructions of ``fuse.py`` and writes, for each executed fused
instruction, the tokens the protocol prescribes, reading every value from
the executor's state *after* the instruction (the state the next
observation shows): results from the stack or the locals, stored bytes from
memory, branch outcomes from the pc that comes next, output bytes from the
WASI host's callbacks, host memory writes by comparing memory around the
host call. The operand values it reads *before* an instruction are only
those that say where to look afterwards (a store's base address, a
conditional branch's condition, a ``br_table`` index, a bulk operation's
destination and length), and a division's operands, whose
``semantics.division_stages`` are the stage tokens written before its result.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import BudgetExceeded, LinkError, Trap
from .fuse import SET, FusedFunc, FusedInstr, FusedProgram, fuse, width
from .instance import Instance
from .runtime import ExternRef, WasmFunction
from .semantics import DIVISION_OPS, LOADS, STORES, division_stages, effective_address
from .vocab import le, output, stage, tok, trap_tokens
from .wasi import ProcExit, WasiHost

NT, JUMP, CALL, RET, EXIT, HALT, MEM, STEP = (
    tok(n) for n in ("NT", "JUMP", "CALL", "RET", "EXIT", "HALT", "MEM", "STEP"))
PC_BYTES, DEPTH_BYTES = 3, 2
MAX_PC = 1 << (8 * PC_BYTES)
MEM_RUN = 0xFFFF  # the longest run one MEM record carries

# What an executed fused instruction writes, by kind (one int per fused pc, for speed).
(K_VALUE, K_STORE, K_GLOBAL_SET, K_COND, K_BR, K_BR_TABLE, K_JUMP, K_CALL, K_RETURN,
 K_MEM_BULK, K_TABLE_SET, K_TABLE_BULK, K_TABLE_GROW, K_STEP, K_TRAPS, K_DIVIDE) = range(16)
# What to note before a machine instruction runs.
(R_NONE, R_COND_IF, R_COND_UNLESS, R_INDEX, R_STORE, R_CALL, R_CALL_INDIRECT, R_DEST_LEN,
 R_TABLE_SET, R_TABLE_GROW, R_DIVIDE) = range(11)

_KINDS = {"global.set": K_GLOBAL_SET, "br_if": K_COND, "br_unless": K_COND, "br": K_BR,
          "br_table": K_BR_TABLE, "jump": K_JUMP, "call": K_CALL, "call_indirect": K_CALL,
          "return": K_RETURN, "memory.fill": K_MEM_BULK, "memory.copy": K_MEM_BULK,
          "memory.init": K_MEM_BULK, "table.set": K_TABLE_SET, "table.fill": K_TABLE_BULK,
          "table.copy": K_TABLE_BULK, "table.init": K_TABLE_BULK, "table.grow": K_TABLE_GROW,
          "data.drop": K_STEP, "elem.drop": K_STEP, "unreachable": K_TRAPS,
          "unsupported": K_TRAPS}
_ROLES = {"br_if": R_COND_IF, "br_unless": R_COND_UNLESS, "br_table": R_INDEX,
          "call": R_CALL, "call_indirect": R_CALL_INDIRECT, "memory.fill": R_DEST_LEN,
          "memory.copy": R_DEST_LEN, "memory.init": R_DEST_LEN, "table.fill": R_DEST_LEN,
          "table.copy": R_DEST_LEN, "table.init": R_DEST_LEN, "table.set": R_TABLE_SET,
          "table.grow": R_TABLE_GROW, **dict.fromkeys(DIVISION_OPS, R_DIVIDE)}


def _kind(fi: FusedInstr) -> int:
    if fi.op in _KINDS:
        return _KINDS[fi.op]
    if fi.op in STORES:
        return K_STORE
    if fi.op in DIVISION_OPS:
        return K_DIVIDE  # its stage tokens, then its result
    assert fi.dst != "none", f"{fi.op} has no destination"
    return K_VALUE  # copies, numeric ops, loads and the other ops that push one value


@dataclass
class Trace:
    """The trace of one invocation: its tokens and where each executed fused instruction's are.

    Step 0 is the invocation itself (``pc`` -1): ``CALL`` + entry + depth 0 +
    the arguments, which the engine writes after the prompt.
    """

    fused: FusedProgram
    tokens: list[int] = field(default_factory=list)
    pcs: list[int] = field(default_factory=list)  # fused pc of each step (-1: the invocation)
    ends: list[int] = field(default_factory=list)  # end offset of each step's tokens
    fuels: list[int] = field(default_factory=list)  # WebAssembly instructions of each step
    outcome: str = ""  # 'halt' | 'exit' | 'trap' | 'budget'
    results: list = field(default_factory=list)  # the invoke's results (signed), on 'halt'
    exit_code: int | None = None
    trap: str | None = None
    budget_message: str = ""

    def step_tokens(self, i: int) -> list[int]:
        start = self.ends[i - 1] if i else 0
        return self.tokens[start:self.ends[i]]

    @property
    def instructions(self) -> int:
        return sum(self.fuels)


class TokenMachine:
    """Records the trace tokens of invocations of one instance's exports."""

    def __init__(self, instance: Instance, host: WasiHost | None = None):
        self.instance = instance
        self.fused = fuse(instance.program)
        self._check_sizes()
        self.code = code = instance.program.code
        self.starts = self.fused.starts
        self.fused_pc = self.fused.fused_pc
        self.static_fuel = [ins.fuel for ins in code]
        # (a `param` record has no machine pc: it is never a step of its own)
        self.group_end = [fi.origin[-1] + 1 if fi.origin else 0 for fi in self.fused.code]
        self.kinds = [_kind(fi) for fi in self.fused.code]
        self.roles = [_ROLES.get(ins.op, R_STORE if ins.op in STORES else R_NONE) for ins in code]
        self.callee_at_entry = {instance.program.func(f.index).entry: f for f in self.fused.funcs}
        self.func_index = {id(f): i for i, f in enumerate(instance.functions)}
        self.outputs: list[int] = []
        if host is not None:
            self._capture_output(host)

    def _check_sizes(self) -> None:
        if len(self.fused.code) >= MAX_PC:
            raise LinkError(f"program too large for the token protocol: {len(self.fused.code)} "
                            f"fused instructions (at most {MAX_PC - 1})")

    def _capture_output(self, host: WasiHost) -> None:
        """Route the host's output through this machine too: it becomes output tokens."""
        write_out, write_err = host.write_stdout, host.write_stderr

        def stdout(data: bytes) -> None:
            self.outputs.extend(output(1, data))
            write_out(data)

        def stderr(data: bytes) -> None:
            self.outputs.extend(output(2, data))
            write_err(data)

        host.write_stdout, host.write_stderr = stdout, stderr

    # --- one invocation ---

    def invoke(self, name: str, args: Sequence[Any] = (), *, max_steps: int | None = None,
               on_tokens: Callable[[list[int]], None] | None = None) -> Trace:
        """Invoke export ``name`` and return its trace (a trap or exit ends it: see ``outcome``).

        ``on_tokens`` (optional) receives the tokens as they are produced, in chunks.
        """
        callee, header = self.invocation(name, args)
        self.trace = trace = Trace(self.fused)
        self.on_tokens, self.flushed = on_tokens, 0
        trace.tokens.extend(header)
        trace.pcs.append(-1)
        trace.ends.append(len(header))
        self.cur, self.expect, self.mark, self.note = -1, -1, 0, None
        self.outputs.clear()
        machine = self.instance.machine
        machine.observer = self._observe
        try:
            trace.results = self.instance.invoke(name, list(args), max_steps=max_steps)
            self._close(self._halt(trace.results, callee.results))
            trace.outcome = "halt"
        except ProcExit as e:
            self._close(exit_tokens(self.outputs, e.code))
            trace.outcome, trace.exit_code = "exit", e.code
        except Trap as e:
            self._close(trap_tokens(e.reason, max(self.cur, 0)))
            trace.outcome, trace.trap = "trap", e.reason
        except BudgetExceeded as e:
            if trace.ends[-1] < 0:  # the instruction in progress did not complete
                trace.pcs.pop()
                trace.ends.pop()
            else:
                trace.fuels.append(self.instance.last_instructions - self.mark)
            trace.outcome, trace.budget_message = "budget", str(e)
        finally:
            machine.observer = None
            self.outputs.clear()
        self._flush(final=True)
        return trace

    def invocation(self, name: str, args: Sequence[Any] = ()) -> tuple[FusedFunc, list[int]]:
        """Export ``name``'s fused function and the tokens that begin its invocation (written
        by the engine, not generated): ``CALL`` entry, depth 0, the arguments' bytes."""
        f = self.instance.exports.get(name)
        if not isinstance(f, WasmFunction) or f.instance is not self.instance:
            raise LinkError(f"no exported function of this module named {name!r}")
        callee = self.fused.func(f.index)
        header = [CALL, *le(callee.entry, PC_BYTES), *le(0, DEPTH_BYTES)]
        for v, t in zip(args, callee.params, strict=False):
            header += self._value(self._encode_arg(v, t), t)
        return callee, header

    def _encode_arg(self, v: Any, t: str) -> Any:
        return v & ((1 << (8 * width(t))) - 1) if isinstance(v, int) else v

    def _halt(self, results: list, types: tuple[str, ...]) -> list[int]:
        out: list[int] = []
        for v, t in zip(results, types, strict=True):
            out += self.value_tokens(v, t)
        return out + [HALT]

    def value_tokens(self, v: Any, t: str) -> list[int]:
        """The byte tokens of value ``v`` of type ``t`` (a signed int is taken modulo its
        width): a result or an argument as the trace writes it."""
        return list(self._value(self._encode_arg(v, t), t))

    def _close(self, tokens: list[int]) -> None:
        """End the trace: the current step's tokens are ``tokens``; its fuel is the rest."""
        trace = self.trace
        assert trace.ends[-1] < 0, "the trace ended between two instructions"
        trace.tokens.extend(tokens)
        trace.ends[-1] = len(trace.tokens)
        trace.fuels.append(self.instance.last_instructions - self.mark)

    def _flush(self, final: bool = False) -> None:
        tokens = self.trace.tokens
        if self.on_tokens is not None and (final or len(tokens) - self.flushed >= 4096):
            self.on_tokens(tokens[self.flushed:])
            self.flushed = len(tokens)

    # --- the observer: called before every machine instruction ---

    def _observe(self, pc: int, fuel: int, stack: list, locs: list, frames: list) -> None:
        if pc == self.expect:  # the next instruction of the current group
            self.expect = pc + 1 if pc + 1 < self.group_end[self.cur] else -1
            if self.roles[pc]:
                self._note(self.roles[pc], pc, stack)
            return
        trace = self.trace
        if self.cur >= 0 and trace.ends[-1] < 0:
            self._finish(pc, stack, locs, frames)
        f = self.starts[pc]
        if f < 0:  # drop or enter: no step of its own; its fuel joins the step before
            self.expect = -1
            return
        before = fuel - self.static_fuel[pc]
        trace.fuels.append(before - self.mark)
        self.mark = before
        trace.pcs.append(f)
        trace.ends.append(-1)  # open until its tokens are written
        self.cur = f
        self.expect = pc + 1 if pc + 1 < self.group_end[f] else -1
        if self.roles[pc]:
            self._note(self.roles[pc], pc, stack)
        if self.on_tokens is not None:
            self._flush()

    def _note(self, role: int, pc: int, stack: list) -> None:
        """Remember what the instruction about to run needs to be read afterwards."""
        if role == R_COND_IF:
            self.note = stack[-1] != 0
        elif role == R_COND_UNLESS:
            self.note = stack[-1] == 0
        elif role == R_INDEX or role == R_TABLE_GROW:
            self.note = stack[-1]
        elif role == R_STORE or role == R_TABLE_SET:
            self.note = stack[-2]
        elif role == R_DIVIDE:
            self.note = (stack[-2], stack[-1])
        elif role == R_DEST_LEN:
            self.note = (stack[-3], stack[-1])
        elif role == R_CALL:
            self.note = self._outside(self.instance.functions[self.code[pc].args[0]])
        elif role == R_CALL_INDIRECT:
            elems = self.instance.tables[self.code[pc].args[1]].elems
            i = stack[-1]
            self.note = self._outside(elems[i]) if i < len(elems) and elems[i] is not None else None

    def _outside(self, f: Any) -> bytes | None:
        """For a call that leaves this instance: a snapshot of memory (to see what the host writes)."""
        if isinstance(f, WasmFunction) and f.instance is self.instance:
            return None
        self.outputs.clear()
        mem = self.instance.memory
        return bytes(mem.data) if mem is not None else b""

    # --- the tokens of a completed step ---

    def _finish(self, pc: int, stack: list, locs: list, frames: list) -> None:
        """Write the tokens of the current step; the machine state is the one right after it."""
        f, trace = self.cur, self.trace
        fi = self.fused.code[f]
        kind, out = self.kinds[f], trace.tokens
        if kind == K_VALUE:
            v = locs[fi.dst_local] if fi.dst == SET else stack[-1]
            out += self._value(v, fi.out_types[0])
        elif kind == K_STORE:
            w = STORES[fi.op]
            mem = self.instance.memory.data  # type: ignore[union-attr]
            a = effective_address(self.note, fi.args[0], w, len(mem))
            out += mem[a:a + w]
        elif kind == K_COND:
            if self.note:
                self._jump(fi, fi.args[1:] if fi.op == "br_if" else (0, 0), pc, stack)
            else:
                out.append(NT)
        elif kind == K_BR or kind == K_JUMP:
            self._jump(fi, fi.args[1:] if kind == K_BR else (0, 0), pc, stack)
        elif kind == K_BR_TABLE:
            table, default = fi.args
            self._jump(fi, (table[self.note] if self.note < len(table) else default)[1:], pc,
                       stack)
        elif kind == K_CALL:
            self._call(fi, pc, stack, locs, frames)
        elif kind == K_RETURN:  # to the call's `result` records, just before the return point
            back = self.fused_pc[pc] - len(fi.out_types)
            out += [RET, *le(back, PC_BYTES), *le(len(frames), DEPTH_BYTES)]
            self._values(stack, fi.out_types)
        elif kind == K_GLOBAL_SET:
            out += self._value(self.instance.globals[fi.args[0]].value, fi.out_types[0])
        elif kind == K_DIVIDE:  # the long division's stages, then the result
            out += stage(division_stages(fi.op, *self.note))
            v = locs[fi.dst_local] if fi.dst == SET else stack[-1]
            out += self._value(v, fi.out_types[0])
        else:
            self._finish_other(kind, fi, pc, stack)
        trace.ends[-1] = len(out)

    def _finish_other(self, kind: int, fi: FusedInstr, pc: int, stack: list) -> None:
        out = self.trace.tokens
        if kind == K_MEM_BULK:
            d, n = self.note
            out += self.instance.memory.data[d:d + n]  # type: ignore[union-attr]
            out += [JUMP, *le(self.fused_pc[pc], PC_BYTES)]
        elif kind == K_TABLE_SET:
            out += self._value(self.instance.tables[fi.args[0]].elems[self.note], "ref")
        elif kind == K_TABLE_BULK:
            d, n = self.note
            table = fi.args[1] if fi.op == "table.init" else fi.args[0]  # (elem, table)
            for v in self.instance.tables[table].elems[d:d + n]:
                out += self._value(v, "ref")
            out += [JUMP, *le(self.fused_pc[pc], PC_BYTES)]
        elif kind == K_TABLE_GROW:
            old = stack[-1]
            if old != 0xFFFF_FFFF:
                for v in self.instance.tables[fi.args[0]].elems[old:old + self.note]:
                    out += self._value(v, "ref")
            out += [*le(old, 4), JUMP, *le(self.fused_pc[pc], PC_BYTES)]
        elif kind == K_STEP:
            out.append(STEP)
        else:
            raise AssertionError(f"{fi.op} completed without trapping")

    def _jump(self, fi: FusedInstr, keep_drop: tuple, pc: int, stack: list) -> None:
        keep, drop = keep_drop
        if keep and drop:  # the kept values moved down: they are written at their new heights
            self._values(stack, fi.out_types)
        self.trace.tokens.extend([JUMP, *le(self.fused_pc[pc], PC_BYTES)])

    def _call(self, fi: FusedInstr, pc: int, stack: list, locs: list, frames: list) -> None:
        out = self.trace.tokens
        if self.note is None:  # into this program: the state is the callee's entry
            callee = self.callee_at_entry[pc]
            out += [CALL, *le(callee.entry, PC_BYTES), *le(len(frames), DEPTH_BYTES)]
            for v, t in zip(locs, callee.params, strict=False):
                out += self._value(v, t)
            return
        # A host call (or a call into another instance): what it printed and wrote, then a
        # JUMP to the call's first `result` record and the results as those records' spans.
        ftype = self._host_type(fi)
        results = stack[len(stack) - len(ftype):]
        out += host_call_tokens(self.outputs, self.note, self._memory_now(), self.cur + 1,
                                [self._value(v, t) for v, t in zip(results, ftype, strict=True)])
        self.outputs.clear()

    def _host_type(self, fi: FusedInstr) -> tuple[str, ...]:
        module = self.fused.program.module
        ins = self.fused.program.code[fi.origin[len(fi.srcs)]]
        ftype = module.func_types[ins.args[0]] if ins.op == "call" else module.types[ins.args[0]]
        return tuple(ftype.results)

    def _memory_now(self) -> bytes:
        mem = self.instance.memory
        return bytes(mem.data) if mem is not None else b""

    def _values(self, stack: list, types: tuple[str, ...]) -> None:
        out = self.trace.tokens
        for v, t in zip(stack[len(stack) - len(types):], types, strict=True):
            out += self._value(v, t)

    def _value(self, v: Any, t: str) -> bytes | list[int]:
        """A value's byte tokens: ints little-endian; references as (function index + 1) or 0."""
        if isinstance(v, int):
            return v.to_bytes(8 if t in ("i64", "f64") else 4, "little")
        return le(self._ref(v), 4)

    def _ref(self, v: Any) -> int:
        if v is None:
            return 0
        if isinstance(v, ExternRef):
            return (v.value + 1) & 0xFFFF_FFFF if isinstance(v.value, int) else 0xFFFF_FFFF
        return self.func_index.get(id(v), 0xFFFF_FFFE) + 1


def host_call_tokens(output: Sequence[int], before: bytes, after: bytes, first_result: int,
                     results: Sequence[Sequence[int]]) -> list[int]:
    """A host call's tokens (docs/PROTOCOL.md): the output tokens it wrote, a ``MEM`` run for
    each run of memory bytes it changed (``before`` -> ``after``), ``JUMP`` to the call's
    first ``result`` record (``first_result``: the call's fused pc + 1), then each result's
    bytes (the spans of those records, as after a ``RET``). An engine splices these."""
    return [*output, *memory_runs(before, after), JUMP, *le(first_result, PC_BYTES),
            *(b for r in results for b in r)]


def exit_tokens(output: Sequence[int], code: int) -> list[int]:
    """``proc_exit``'s tokens: the output it wrote, then ``EXIT`` and the code (4 bytes)."""
    return [*output, EXIT, *le(code & 0xFFFF_FFFF, 4)]


def memory_runs(before: bytes, after: bytes) -> list[int]:
    """``MEM address(4) n(2)`` + n bytes for each run of bytes that differ, in address order
    (bytes past ``before``'s end count as changed; a run holds at most ``MEM_RUN`` bytes)."""
    out: list[int] = []
    if after == before:
        return out
    n, i = len(after), 0
    chunk = 4096
    while i < n:
        if after[i:i + chunk] == before[i:i + chunk]:
            i += chunk
            continue
        end = min(i + chunk, n)
        while i < end:
            if i < len(before) and after[i] == before[i]:
                i += 1
                continue
            j = i
            while j < n and j - i < MEM_RUN and (j >= len(before) or after[j] != before[j]):
                j += 1
            out += [MEM, *le(i, 4), *le(j - i, 2), *after[i:j]]
            i = j
    return out


def trace(instance: Instance, name: str = "_start", args: Sequence[Any] = (), *,
          host: WasiHost | None = None, max_steps: int | None = None) -> Trace:
    """The trace of one invocation of ``instance``'s export ``name``."""
    return TokenMachine(instance, host).invoke(name, args, max_steps=max_steps)


def trace_tokens(instance: Instance, name: str = "_start", args: Sequence[Any] = (), *,
                 host: WasiHost | None = None, max_steps: int | None = None) -> Iterator[int]:
    """The trace tokens of one invocation, streamed while the program runs (in a worker thread).

    A trap or an exit is part of the stream; an exhausted budget raises
    ``BudgetExceeded`` after the tokens produced so far.
    """
    chunks: queue.Queue = queue.Queue(maxsize=64)
    stop = threading.Event()

    def put(tokens: list[int]) -> None:
        if stop.is_set():
            raise _Stopped
        chunks.put(tokens)

    def work() -> None:
        try:
            t = TokenMachine(instance, host).invoke(name, args, max_steps=max_steps, on_tokens=put)
            chunks.put(BudgetExceeded(t.budget_message) if t.outcome == "budget" else None)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            chunks.put(e)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    try:
        while True:
            item = chunks.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                if isinstance(item, _Stopped):
                    return
                raise item
            yield from item
    finally:
        stop.set()
        while worker.is_alive():  # let a blocked producer see the stop flag
            try:
                chunks.get_nowait()
            except queue.Empty:
                worker.join(0.01)


class _Stopped(Exception):
    """The consumer of ``trace_tokens`` stopped reading."""


# --- a readable trace: one executed fused instruction per line ---

_SHOW_ARGS = {"local.get", "local.set", "local.tee", "global.get", "global.set", "call",
              "ref.func", "memory.init", "data.drop", "elem.drop"}


def _machine_text(ins, fused_pc: tuple[int, ...]) -> str:
    """A machine instruction as its WebAssembly origin (branch targets as fused pcs)."""
    op, a = ins.op, ins.args
    if op in ("i32.const", "i64.const"):
        bits = 32 if op == "i32.const" else 64
        v = a[0] - (1 << bits) if a[0] >> (bits - 1) else a[0]
        return f"{op} {v}"
    if op in _SHOW_ARGS:
        return f"{ins.origin} {a[0]}"
    if op in ("br", "br_if", "br_unless", "jump"):
        return f"{ins.origin} @{fused_pc[a[0]]}"
    if op == "br_table":
        return f"br_table @{','.join(str(fused_pc[t]) for t, _, _ in (*a[0], a[1]))}"
    if op in STORES or op in LOADS:
        return f"{op} offset={a[0]}" if a[0] else op
    return ins.origin


def trace_lines(trace: Trace, name: str = "_start") -> Iterator[str]:
    """``STEP  pc=N  <WebAssembly ops>  -> <tokens by name>``, one line per executed step."""
    from .vocab import describe

    code, fused_pc = trace.fused.program.code, trace.fused.fused_pc
    for i, pc in enumerate(trace.pcs):
        tokens = " ".join(describe(t) for t in trace.step_tokens(i))
        if pc < 0:
            yield f"{i}  invoke {name}  -> {tokens}"
            continue
        ops = "; ".join(_machine_text(code[m], fused_pc) for m in trace.fused.code[pc].origin)
        yield f"{i}  pc={pc}  {ops}  -> {tokens}"
