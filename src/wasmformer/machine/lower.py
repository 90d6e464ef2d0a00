"""Lower a validated WebAssembly module into a machine ``Program``.

Each function body is walked once next to the validator's ``CodeChecker``,
which knows the static operand-stack shape at every instruction; from it
each branch gets its unwinding ``(keep, drop)``. Structured control
disappears: ``block``/``loop``/``end``/``nop`` emit nothing, ``if`` becomes
``br_unless``, ``else`` becomes ``jump``, branches name absolute pcs. Dead
code (after ``br``, ``br_table``, ``return``, ``unreachable`` until the
enclosing ``end``/``else``) emits nothing: it can never run.

Fuel follows wasmtime: ``nop``, ``drop``, ``block``, ``loop``, ``end``,
``else``, ``unreachable`` and ``return`` count 0; a function entry counts 1;
every other instruction counts 1 (bulk memory/table ops and the grows add
their length at run time, see docs/MACHINE.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..wasm.module import NUM_TYPES, Func, Instr, Module
from ..wasm.opcodes import Imm
from ..wasm.validate import CodeChecker, Context, module_context
from .program import MFunc, MInstr, Program
from .semantics import BITS, LOADS, NUMERIC, STORES, mask

FREE_OPS = frozenset({"nop", "drop", "block", "loop", "end", "else", "unreachable", "return"})

# Instructions lowered one-for-one, with their immediates as the machine operands.
_DIRECT = frozenset({
    "local.get", "local.set", "local.tee", "global.get", "global.set", "call",
    "call_indirect", "drop", "ref.null", "ref.is_null", "ref.func",
    "memory.size", "memory.grow", "memory.fill", "memory.copy", "memory.init", "data.drop",
    "table.get", "table.set", "table.size", "table.grow", "table.fill", "table.copy",
    "table.init", "elem.drop", "unreachable",
})


@dataclass(eq=False)
class _Label:
    """A branch target whose pc may not be known yet (the end of a block)."""

    pc: int | None = None


@dataclass(eq=False)
class _Block:
    """An open block/loop/if: where branches to it go, and whether its code can run."""

    target: _Label
    live: bool
    else_target: _Label | None = None  # an `if`: where its br_unless goes


@dataclass
class _Pending:
    op: str
    args: tuple
    fuel: int
    offset: int
    origin: str


class _FunctionLowering:
    """Lowers one defined function, appending its machine code to ``out``."""

    def __init__(self, module: Module, ctx: Context, defined: int, out: list[_Pending]):
        self.func: Func = module.funcs[defined]
        self.type = module.types[self.func.type_index]
        self.index = module.num_imported_funcs + defined  # in the function index space
        self.out = out
        self.checker = CodeChecker(ctx, f"function {self.index}",
                                   self.type.params + self.func.locals, self.type.results)
        self.blocks = [_Block(_Label(), live=True)]  # the function body is the outermost block

    def run(self) -> MFunc:
        func, entry = self.func, len(self.out)
        zeros = tuple(0 if t in NUM_TYPES else None for t in func.locals)
        self.out.append(_Pending("enter", (zeros,), 1, func.offset, "entry"))
        for instr in func.body:
            self.lower(instr)
        self.checker.finish()
        # The function's final `end`: branches to the function label arrive here already unwound.
        self.blocks[0].target.pc = len(self.out)
        n = len(self.type.results)
        self.out.append(_Pending("return", (n, 0), 0, func.offset, "end"))
        return MFunc(self.index, self.type, entry, len(self.out), func.locals)

    # --- helpers ---

    def live(self) -> bool:
        return self.blocks[-1].live and not self.checker.ctrls[-1].unreachable

    def emit(self, instr: Instr, op: str, args: tuple = ()) -> None:
        fuel = 0 if instr.name in FREE_OPS else 1
        self.out.append(_Pending(op, args, fuel, instr.offset, instr.name))

    def branch(self, depth: int, height: int) -> tuple[_Label, int, int]:
        """Target and unwinding of a branch to label ``depth`` taken at stack ``height``."""
        frame = self.checker.label(depth)
        keep = len(frame.label_types)
        return self.blocks[-1 - depth].target, keep, height - keep - frame.height

    # --- one instruction ---

    def lower(self, instr: Instr) -> None:
        name = instr.name
        if name in ("block", "loop", "if", "else", "end"):
            self.structure(instr)
        elif self.live():
            self.operation(instr)
            self.checker.step(instr)
        else:
            self.checker.step(instr)

    def structure(self, instr: Instr) -> None:
        name, live = instr.name, self.live()
        if name in ("block", "loop", "if"):
            block = _Block(_Label(len(self.out)) if name == "loop" else _Label(), live)
            if name == "if" and live:
                block.else_target = _Label()
                self.emit(instr, "br_unless", (block.else_target,))
            self.checker.step(instr)
            self.blocks.append(block)
            return
        block = self.blocks[-1]
        if name == "else":
            if live:  # the then-arm falls through: skip the else-arm
                self.emit(instr, "jump", (block.target,))
            if block.else_target is not None:
                block.else_target.pc = len(self.out)
                block.else_target = None
            self.checker.step(instr)
            return
        self.checker.step(instr)  # end
        self.blocks.pop()
        if block.target.pc is None:
            block.target.pc = len(self.out)
        if block.else_target is not None:  # an `if` without `else`
            block.else_target.pc = len(self.out)

    def operation(self, instr: Instr) -> None:
        name, args = instr.name, instr.args
        height = len(self.checker.vals)
        if instr.op.is_float:
            where = f"func {self.index} +0x{instr.offset:x}"
            self.emit(instr, "unsupported", (f"unsupported: {name} at {where}",))
        elif name in NUMERIC:
            self.emit(instr, name)
        elif name in ("i32.const", "i64.const"):
            self.emit(instr, name, (args[0] & mask(BITS[name[:3]]),))
        elif name in LOADS or name in STORES:
            self.emit(instr, name, (args[1],))  # memarg: (align, offset); alignment is a hint
        elif name in ("select", "select_t"):
            self.emit(instr, "select")
        elif name == "br":
            self.emit(instr, "br", self.branch(args[0], height))
        elif name == "br_if":
            self.emit(instr, "br_if", self.branch(args[0], height - 1))
        elif name == "br_table":
            labels, default = args
            targets = tuple(self.branch(d, height - 1) for d in labels)
            self.emit(instr, "br_table", (targets, self.branch(default, height - 1)))
        elif name == "return":
            keep = len(self.checker.ctrls[0].end_types)
            self.emit(instr, "return", (keep, height - keep))
        elif name == "nop":
            pass
        elif name in _DIRECT:
            self.emit(instr, name, args if instr.op.imm not in (Imm.REFTYPE, Imm.MEMORY) else ())
        else:
            raise AssertionError(f"no lowering for {name}")  # the opcode table grew


def _resolve(value: object) -> object:
    """Replace every label in an operand (possibly nested in tuples) by its pc."""
    if isinstance(value, _Label):
        assert value.pc is not None, "branch to a label that was never placed"
        return value.pc
    if isinstance(value, tuple):
        return tuple(_resolve(v) for v in value)
    return value


def lower(module: Module) -> Program:
    """Lower a *validated* module. Its functions' code is laid out in index order."""
    ctx = module_context(module)
    pending: list[_Pending] = []
    funcs = []
    for i in range(len(module.funcs)):
        funcs.append(_FunctionLowering(module, ctx, i, pending).run())
    code = []
    for fn in funcs:
        for p in pending[fn.entry:fn.end]:
            code.append(MInstr(p.op, _resolve(p.args), p.fuel, fn.index, p.offset, p.origin))
    return Program(module, tuple(code), tuple(funcs))
