"""A checker of the token protocol: replays a trace from the fused program and the tokens alone.

This is what a model must be able to do (docs/PROTOCOL.md, TRANSFORMER-PLAN §1):
predict every step's tokens from the prompt's facts and the tokens emitted
so far. The replayer keeps its own state, built only from tokens (stack slots
by (frame, static height), locals, memory bytes, globals), computes each
fused instruction from its three-address description with ``semantics``'
functions, and asserts that the tokens it predicts are the trace's. A host
call's tokens cannot be predicted (the host runs outside the model): the
replayer reads them and applies what they say (output, memory writes,
results). It is a test oracle for ``fuse``'s descriptions and for the
sufficiency of the tokens, not an engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wasmformer.errors import Trap
from wasmformer.machine import vocab
from wasmformer.machine.fuse import LOCAL, PUSH, SET, TEE, FusedInstr, FusedProgram, width
from wasmformer.machine.runtime import Memory
from wasmformer.machine.semantics import (
    DIVISION_OPS,
    LOADS,
    NUMERIC,
    STORES,
    division_stages,
    effective_address,
    store_bits,
)
from wasmformer.machine.tokens import TokenMachine

T = vocab.tok
REF_VALUE_OPS = ("ref.null", "ref.func", "ref.is_null", "table.size", "table.get")
MAX_DEPTH = 50_000


@dataclass
class Frame:
    locals: dict[int, int]
    stack: dict[int, int] = field(default_factory=dict)  # static height -> value
    ret: int = -1  # fused pc to return to
    base: int = 0  # caller's stack height where the results go


class Mismatch(AssertionError):
    pass


class Replayer:
    def __init__(self, fused: FusedProgram, memory: Memory | None, globals_: list[int],
                 tables: list[list[int]], func_types: list, depth_limit: int = MAX_DEPTH):
        self.fused, self.code = fused, fused.code
        self.mem = memory  # a copy: the replayer's own memory
        self.globals = globals_
        self.tables = tables  # elements as written in the trace: function index + 1, or 0
        self.func_types = func_types  # FuncType of each function index
        self.module = fused.program.module
        self.depth_limit = depth_limit
        self.steps = 0

    # --- reading the trace ---

    def expect(self, tokens: list[int]) -> None:
        got = self.toks[self.at:self.at + len(tokens)]
        if got != tokens:
            fi = self.code[self.pc] if self.pc >= 0 else None
            raise Mismatch(f"step {self.steps} pc {self.pc} ({fi and fi.op}): expected "
                           f"{[vocab.describe(t) for t in tokens]}, trace has "
                           f"{[vocab.describe(t) for t in got]}")
        self.at += len(tokens)

    def read(self, n: int) -> list[int]:
        got = self.toks[self.at:self.at + n]
        self.at += n
        return got

    def run(self, tokens: list[int]) -> str:
        """Replay a whole trace; returns how it ended ('halt', 'exit', 'trap' or 'cut')."""
        self.toks, self.at = tokens, 0
        assert self.read(1) == [T("CALL")]
        self.pc = vocab.from_le(self.read(3))
        assert vocab.from_le(self.read(2)) == 0
        entry = next(f for f in self.fused.funcs if f.entry == self.pc)
        self.frames = [Frame(self._read_values(entry.params))]
        self.func = entry
        self.pc += len(entry.params)  # the header's arguments were the `param` records' tokens
        while self.at < len(tokens):
            self.steps += 1
            end = self.step()
            if end:
                assert self.at == len(tokens), "tokens after the end of the trace"
                return end
        return "cut"

    def _read_values(self, types) -> dict[int, int]:
        return {i: vocab.from_le(self.read(width(t))) for i, t in enumerate(types)}

    # --- state ---

    @property
    def frame(self) -> Frame:
        return self.frames[-1]

    def operands(self, fi: FusedInstr) -> list[int]:
        """The core's operands: from the stack (deeper ones) then the fused sources."""
        h, f = fi.height, self.frame
        vals = [f.stack[h - fi.stack_operands + i] for i in range(fi.stack_operands)]
        for s in fi.srcs:
            vals.append(f.locals.get(s.value, 0) if s.mode == LOCAL else s.value)
        return vals

    def write(self, fi: FusedInstr, v: int) -> None:
        f = self.frame
        if fi.dst in (PUSH, TEE):
            f.stack[fi.height - fi.stack_operands] = v
        if fi.dst in (SET, TEE):
            f.locals[fi.dst_local] = v

    # --- one fused instruction ---

    def step(self) -> str | None:
        fi = self.code[self.pc]
        try:
            return self._step(fi)
        except Trap as e:
            self.expect(vocab.trap_tokens(e.reason, self.pc))
            return "trap"

    def _step(self, fi: FusedInstr) -> str | None:
        op = fi.op
        if op in NUMERIC or op in LOADS or op in ("copy", "select", "global.get", "memory.size",
                                                   "memory.grow", *REF_VALUE_OPS):
            v = self.value_op(fi)
            if op in DIVISION_OPS:  # a division's stage tokens come first
                self.expect(vocab.stage(division_stages(op, *self.operands(fi))))
            self.expect(list(v.to_bytes(width(fi.out_types[0]), "little")))
            self.write(fi, v)
            self.pc += 1
        elif op in STORES:
            addr, v = self.operands(fi)
            w = STORES[op]
            a = effective_address(addr, fi.args[0], w, len(self.mem.data))
            data = store_bits(v, w).to_bytes(w, "little")
            self.expect(list(data))
            self.mem.data[a:a + w] = data
            self.pc += 1
        elif op == "global.set":
            (v,) = self.operands(fi)
            self.expect(list(v.to_bytes(width(fi.out_types[0]), "little")))
            self.globals[fi.args[0]] = v
            self.pc += 1
        elif op in ("br_if", "br_unless"):
            (c,) = self.operands(fi)
            if (c != 0) == (op == "br_if"):
                keep, drop = fi.args[1:] if op == "br_if" else (0, 0)
                self.branch(fi, fi.args[0], keep, drop, fi.height - fi.stack_operands)
            else:
                self.expect([T("NT")])
                self.pc += 1
        elif op in ("br", "jump"):
            keep, drop = fi.args[1:] if op == "br" else (0, 0)
            self.branch(fi, fi.args[0], keep, drop, fi.height)
        elif op == "br_table":
            (i,) = self.operands(fi)
            table, default = fi.args
            target, keep, drop = table[i] if i < len(table) else default
            self.branch(fi, target, keep, drop, fi.height - fi.stack_operands)
        elif op in ("call", "call_indirect"):
            return self.call(fi)
        elif op == "return":
            return self.ret(fi)
        elif op in ("data.drop", "elem.drop"):  # no memory.init/table.init here: no segments kept
            self.expect([T("STEP")])
            self.pc += 1
        elif op == "unreachable":
            raise Trap("unreachable")
        elif op == "unsupported":
            raise Trap(fi.args[0])
        else:
            raise Mismatch(f"replay of {op} not implemented")
        return None

    def value_op(self, fi: FusedInstr) -> int:
        op, vals = fi.op, self.operands(fi)
        if op in NUMERIC:
            return NUMERIC[op](*vals)
        if op in LOADS:
            w, extend = LOADS[op]
            a = effective_address(vals[0], fi.args[0], w, len(self.mem.data))
            v = int.from_bytes(self.mem.data[a:a + w], "little")
            return v if extend is None else extend(v)
        if op == "copy":
            return vals[0]
        if op == "select":
            return vals[0] if vals[2] else vals[1]
        if op == "global.get":
            return self.globals[fi.args[0]]
        if op == "memory.size":
            return self.mem.pages
        if op in REF_VALUE_OPS:
            return self.ref_value(fi, vals)
        return self.mem.grow(vals[0])  # memory.grow: runtime.Memory's own rule

    def ref_value(self, fi: FusedInstr, vals: list[int]) -> int:
        """References as the trace writes them: function index + 1, or 0 for null."""
        if fi.op == "ref.null":
            return 0
        if fi.op == "ref.func":
            return fi.args[0] + 1
        if fi.op == "ref.is_null":
            return int(vals[0] == 0)
        table = self.tables[fi.args[0]]
        if fi.op == "table.size":
            return len(table)
        if vals[0] >= len(table):  # table.get
            raise Trap("out of bounds table access")
        return table[vals[0]]

    def branch(self, fi: FusedInstr, target: int, keep: int, drop: int, top: int) -> None:
        f = self.frame
        if keep and drop:
            moved = [f.stack[top - keep + i] for i in range(keep)]
            self.expect([b for v, t in zip(moved, fi.out_types, strict=True)
                         for b in v.to_bytes(width(t), "little")])
            for i, v in enumerate(moved):
                f.stack[top - keep - drop + i] = v
        self.expect([T("JUMP"), *vocab.le(target, 3)])
        self.pc = target

    def call(self, fi: FusedInstr) -> str | None:
        vals = self.operands(fi)
        if fi.op == "call_indirect":
            i, vals = vals[-1], vals[:-1]
            elems = self.tables[fi.args[1]]
            if i >= len(elems):
                raise Trap(f"undefined element {i}")
            if elems[i] == 0:
                raise Trap(f"uninitialized element {i}")
            callee = elems[i] - 1
            if self.func_types[callee] != self.module.types[fi.args[0]]:
                raise Trap("indirect call type mismatch")
        else:
            callee = fi.args[0]
        ftype = self.func_types[callee]
        base = fi.height - fi.stack_operands  # where the operands began: the results go there
        if callee < self.module.num_imported_funcs:
            return self.host(ftype, base)
        if len(self.frames) - 1 >= self.depth_limit:
            raise Trap("call stack exhausted")
        target = self.fused.func(callee)
        self.expect([T("CALL"), *vocab.le(target.entry, 3), *vocab.le(len(self.frames), 2)])
        self.expect([b for v, t in zip(vals, ftype.params, strict=True)
                     for b in v.to_bytes(width(t), "little")])
        self.frames.append(Frame(dict(enumerate(vals)), ret=self.pc + 1, base=base))
        self.pc = target.entry + len(target.params)  # past the `param` records (the arguments)
        return None

    def host(self, ftype, base: int) -> str | None:
        """A host call: read what the host did from the tokens and apply it."""
        while True:
            t = self.toks[self.at]
            if vocab.output_byte(t) is not None:
                self.at += 1
            elif t == T("MEM"):
                self.at += 1
                a, n = vocab.from_le(self.read(4)), vocab.from_le(self.read(2))
                self.mem.data[a:a + n] = bytes(self.read(n))
            elif t == T("EXIT"):
                self.at += 5
                return "exit"
            else:
                break
        # JUMP to the call's first `result` record; the results are those records' spans
        self.expect([T("JUMP"), *vocab.le(self.pc + 1, 3)])
        for i, t in enumerate(ftype.results):
            self.frame.stack[base + i] = vocab.from_le(self.read(width(t)))
        self.pc += 1 + len(ftype.results)
        return None

    def ret(self, fi: FusedInstr) -> str | None:
        keep = fi.args[0]
        f = self.frame
        results = [f.stack[fi.height - keep + i] for i in range(keep)]
        data = [b for v, t in zip(results, fi.out_types, strict=True)
                for b in v.to_bytes(width(t), "little")]
        if len(self.frames) == 1:
            self.expect([*data, T("HALT")])
            return "halt"
        self.frames.pop()
        self.expect([T("RET"), *vocab.le(f.ret, 3), *vocab.le(len(self.frames) - 1, 2), *data])
        for i, v in enumerate(results):
            self.frame.stack[f.base + i] = v
        self.pc = f.ret + keep  # past the call's `result` records (the results' bytes)
        return None


def replayer_for(tm: TokenMachine) -> Replayer:
    """A replayer that starts from the instance's current state (what the prompt holds)."""
    inst = tm.instance
    mem = inst.memory
    copy = Memory(bytearray(mem.data), mem.max_pages, mem.host_limit_pages) if mem else None
    return Replayer(tm.fused, copy, [tm._ref(g.value) if not isinstance(g.value, int) else g.value
                                     for g in inst.globals],
                    [[tm._ref(e) for e in t.elems] for t in inst.tables],
                    list(inst.module.func_types), inst.limits.max_call_depth)
