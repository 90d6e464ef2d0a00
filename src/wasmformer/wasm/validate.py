"""Validation of a decoded WebAssembly 2.0 module (everything but SIMD).

Module-level rules (indices, limits, constant expressions, exports, start)
are checked section by section; function bodies and constant expressions are
typed by ``CodeChecker``, the operand/control stack algorithm of the spec's
appendix ("Validation Algorithm"), with unknown types after a branch makes the
rest of a block unreachable. Messages begin with the official test suite's
wording ("type mismatch", "unknown local", ...), so they can be compared.

``CodeChecker`` is usable on its own: feed it one instruction at a time with
``step`` and read ``vals``/``ctrls`` to know the static stack shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import NoReturn

from ..errors import InvalidModule
from .module import (
    NUM_TYPES,
    REF_TYPES,
    Expr,
    FuncType,
    GlobalType,
    Instr,
    Limits,
    MemType,
    Module,
    TableType,
    ValType,
)
from .opcodes import OPS_BY_NAME, Imm

UNKNOWN = None  # the type of a value popped from the polymorphic stack of unreachable code
MAX_PAGES = 65536  # 4 GiB of 64 KiB pages
CONST_OPS = frozenset({"i32.const", "i64.const", "f32.const", "f64.const",
                       "ref.null", "ref.func", "global.get"})


@dataclass(frozen=True, slots=True)
class Context:
    """What instructions may refer to: the spec's validation context C."""

    types: tuple[FuncType, ...]
    funcs: tuple[FuncType, ...]
    tables: tuple[TableType, ...]
    mems: tuple[MemType, ...]
    globals: tuple[GlobalType, ...]
    elems: tuple[ValType, ...]  # the reference type of each element segment
    datas: int  # number of data segments
    has_data_count: bool  # memory.init/data.drop need the data count section
    refs: frozenset[int]  # functions that ref.func may name in code ("declared")


@dataclass(slots=True)
class CtrlFrame:
    """One entry of the control stack: an open block, loop, if/else, or the function."""

    opcode: str  # 'func' | 'block' | 'loop' | 'if' | 'else'
    start_types: tuple[ValType, ...]
    end_types: tuple[ValType, ...]
    height: int  # operand stack height when the frame was entered (params excluded)
    unreachable: bool = False

    @property
    def label_types(self) -> tuple[ValType, ...]:
        """What a branch to this frame carries: a loop restarts, others exit."""
        return self.start_types if self.opcode == "loop" else self.end_types


def is_num(t: ValType | None) -> bool:
    return t is UNKNOWN or t in NUM_TYPES


def is_ref(t: ValType | None) -> bool:
    return t is UNKNOWN or t in REF_TYPES


class CodeChecker:
    """Types an instruction sequence against a result type, one instruction per ``step``."""

    def __init__(self, ctx: Context, where: str, locals_: tuple[ValType, ...],
                 results: tuple[ValType, ...]):
        self.ctx = ctx
        self.where = where
        self.locals = locals_
        self.vals: list[ValType | None] = []
        self.ctrls: list[CtrlFrame] = []
        self.instr: Instr | None = None
        self.push_ctrl("func", (), results)

    # --- errors ---

    def fail(self, message: str) -> NoReturn:
        at = f"byte offset {self.instr.offset}" if self.instr is not None else "end of body"
        raise InvalidModule(message, f"{self.where}, {at}")

    # --- operand stack ---

    def push_val(self, t: ValType | None) -> None:
        self.vals.append(t)

    def push_vals(self, types: tuple | list) -> None:
        self.vals.extend(types)

    def pop_val(self) -> ValType | None:
        frame = self.ctrls[-1]
        if len(self.vals) == frame.height:
            if frame.unreachable:
                return UNKNOWN
            self.fail("type mismatch: operand stack is empty")
        return self.vals.pop()

    def pop_expect(self, expect: ValType | None) -> ValType | None:
        actual = self.pop_val()
        if actual != expect and actual is not UNKNOWN and expect is not UNKNOWN:
            self.fail(f"type mismatch: expected {expect}, got {actual}")
        return actual

    def pop_vals(self, types: tuple[ValType, ...]) -> list[ValType | None]:
        popped = [self.pop_expect(t) for t in reversed(types)]
        popped.reverse()
        return popped

    # --- control stack ---

    def push_ctrl(self, opcode: str, start: tuple[ValType, ...], end: tuple[ValType, ...]) -> None:
        self.ctrls.append(CtrlFrame(opcode, start, end, len(self.vals)))
        self.push_vals(start)

    def pop_ctrl(self) -> CtrlFrame:
        frame = self.ctrls[-1]
        self.pop_vals(frame.end_types)
        if len(self.vals) != frame.height:
            self.fail(f"type mismatch: {len(self.vals) - frame.height} extra value(s) "
                      f"at end of {frame.opcode}")
        self.ctrls.pop()
        return frame

    def label(self, depth: int) -> CtrlFrame:
        if depth >= len(self.ctrls):
            self.fail(f"unknown label {depth}")
        return self.ctrls[-1 - depth]

    def set_unreachable(self) -> None:
        frame = self.ctrls[-1]
        del self.vals[frame.height:]
        frame.unreachable = True

    # --- driving ---

    def step(self, instr: Instr) -> None:
        self.instr = instr
        op = instr.op
        handler = _HANDLERS.get(op.name)
        if handler is not None:
            handler(self, instr)
        elif op.params is not None and op.results is not None:
            self.apply_sig(op.params, op.results)
        else:
            self.fail(f"unsupported instruction {op.name}")

    def finish(self) -> None:
        """The implicit final `end`: the function frame must be the only one left, and close cleanly."""
        self.instr = None  # errors now are about the body as a whole
        if len(self.ctrls) != 1:
            self.fail(f"unclosed {self.ctrls[-1].opcode} at end of body")
        self.pop_ctrl()

    def apply_sig(self, params: tuple[ValType, ...], results: tuple[ValType, ...]) -> None:
        self.pop_vals(params)
        self.push_vals(results)

    # --- index lookups ---

    def func_type(self, x: int) -> FuncType:
        if x >= len(self.ctx.funcs):
            self.fail(f"unknown function {x}")
        return self.ctx.funcs[x]

    def type_at(self, x: int) -> FuncType:
        if x >= len(self.ctx.types):
            self.fail(f"unknown type {x}")
        return self.ctx.types[x]

    def table(self, x: int) -> TableType:
        if x >= len(self.ctx.tables):
            self.fail(f"unknown table {x}")
        return self.ctx.tables[x]

    def memory(self, x: int = 0) -> MemType:
        if x >= len(self.ctx.mems):
            self.fail(f"unknown memory {x}")
        return self.ctx.mems[x]

    def global_type(self, x: int) -> GlobalType:
        if x >= len(self.ctx.globals):
            self.fail(f"unknown global {x}")
        return self.ctx.globals[x]

    def local(self, x: int) -> ValType:
        if x >= len(self.locals):
            self.fail(f"unknown local {x}")
        return self.locals[x]

    def elem(self, x: int) -> ValType:
        if x >= len(self.ctx.elems):
            self.fail(f"unknown elem segment {x}")
        return self.ctx.elems[x]

    def data(self, x: int) -> None:
        if not self.ctx.has_data_count:
            self.fail("data count section required")
        if x >= self.ctx.datas:
            self.fail(f"unknown data segment {x}")

    def block_type(self, bt: None | ValType | int) -> FuncType:
        if bt is None:
            return FuncType((), ())
        if isinstance(bt, int):
            return self.type_at(bt)
        return FuncType((), (bt,))

    # --- control instructions ---

    def i_unreachable(self, instr: Instr) -> None:
        self.set_unreachable()

    def i_nop(self, instr: Instr) -> None:
        pass

    def i_block(self, instr: Instr) -> None:
        ft = self.block_type(instr.args[0])
        self.pop_vals(ft.params)
        self.push_ctrl(instr.op.name, ft.params, ft.results)

    i_loop = i_block

    def i_if(self, instr: Instr) -> None:
        self.pop_expect("i32")
        self.i_block(instr)

    def i_else(self, instr: Instr) -> None:
        if self.ctrls[-1].opcode != "if":
            self.fail("else without matching if")
        frame = self.pop_ctrl()
        self.push_ctrl("else", frame.start_types, frame.end_types)

    def i_end(self, instr: Instr) -> None:
        if len(self.ctrls) == 1:
            self.fail("end without matching block")
        frame = self.pop_ctrl()
        # An `if` without `else` has an implicit empty else branch: [t*] -> [t*].
        if frame.opcode == "if" and frame.start_types != frame.end_types:
            self.fail("type mismatch: if without else must leave its parameters unchanged")
        self.push_vals(frame.end_types)

    def i_br(self, instr: Instr) -> None:
        self.pop_vals(self.label(instr.args[0]).label_types)
        self.set_unreachable()

    def i_br_if(self, instr: Instr) -> None:
        self.pop_expect("i32")
        types = self.label(instr.args[0]).label_types
        self.pop_vals(types)
        self.push_vals(types)

    def i_br_table(self, instr: Instr) -> None:
        labels, default = instr.args
        self.pop_expect("i32")
        arity = len(self.label(default).label_types)
        for depth in labels:
            types = self.label(depth).label_types
            if len(types) != arity:
                self.fail("type mismatch: br_table targets have different arities")
            self.push_vals(self.pop_vals(types))
        self.pop_vals(self.label(default).label_types)
        self.set_unreachable()

    def i_return(self, instr: Instr) -> None:
        self.pop_vals(self.ctrls[0].end_types)
        self.set_unreachable()

    def i_call(self, instr: Instr) -> None:
        ft = self.func_type(instr.args[0])
        self.apply_sig(ft.params, ft.results)

    def i_call_indirect(self, instr: Instr) -> None:
        type_index, table_index = instr.args
        if self.table(table_index).elem != "funcref":
            self.fail(f"type mismatch: call_indirect through table {table_index} of externref")
        ft = self.type_at(type_index)
        self.pop_expect("i32")
        self.apply_sig(ft.params, ft.results)

    # --- reference instructions ---

    def i_ref_null(self, instr: Instr) -> None:
        self.push_val(instr.args[0])

    def i_ref_is_null(self, instr: Instr) -> None:
        if not is_ref(self.pop_val()):
            self.fail("type mismatch: ref.is_null needs a reference")
        self.push_val("i32")

    def i_ref_func(self, instr: Instr) -> None:
        x = instr.args[0]
        self.func_type(x)
        if x not in self.ctx.refs:
            self.fail(f"undeclared function reference {x}")
        self.push_val("funcref")

    # --- parametric instructions ---

    def i_drop(self, instr: Instr) -> None:
        self.pop_val()

    def i_select(self, instr: Instr) -> None:
        self.pop_expect("i32")
        t1 = self.pop_val()
        t2 = self.pop_val()
        if not (is_num(t1) and is_num(t2)):
            self.fail("type mismatch: select without a type needs numeric operands")
        if t1 != t2 and t1 is not UNKNOWN and t2 is not UNKNOWN:
            self.fail(f"type mismatch: select operands {t2} and {t1}")
        self.push_val(t2 if t1 is UNKNOWN else t1)

    def i_select_t(self, instr: Instr) -> None:
        types = instr.args[0]
        if len(types) != 1:
            self.fail(f"invalid result arity: typed select has {len(types)} types")
        t = types[0]
        self.pop_expect("i32")
        self.pop_expect(t)
        self.pop_expect(t)
        self.push_val(t)

    # --- variable instructions ---

    def i_local_get(self, instr: Instr) -> None:
        self.push_val(self.local(instr.args[0]))

    def i_local_set(self, instr: Instr) -> None:
        self.pop_expect(self.local(instr.args[0]))

    def i_local_tee(self, instr: Instr) -> None:
        t = self.local(instr.args[0])
        self.pop_expect(t)
        self.push_val(t)

    def i_global_get(self, instr: Instr) -> None:
        self.push_val(self.global_type(instr.args[0]).valtype)

    def i_global_set(self, instr: Instr) -> None:
        gt = self.global_type(instr.args[0])
        if not gt.mutable:
            self.fail(f"global is immutable: global {instr.args[0]}")
        self.pop_expect(gt.valtype)

    # --- table instructions ---

    def i_table_get(self, instr: Instr) -> None:
        t = self.table(instr.args[0]).elem
        self.apply_sig(("i32",), (t,))

    def i_table_set(self, instr: Instr) -> None:
        t = self.table(instr.args[0]).elem
        self.apply_sig(("i32", t), ())

    def i_table_size(self, instr: Instr) -> None:
        self.table(instr.args[0])
        self.push_val("i32")

    def i_table_grow(self, instr: Instr) -> None:
        t = self.table(instr.args[0]).elem
        self.apply_sig((t, "i32"), ("i32",))

    def i_table_fill(self, instr: Instr) -> None:
        t = self.table(instr.args[0]).elem
        self.apply_sig(("i32", t, "i32"), ())

    def i_table_copy(self, instr: Instr) -> None:
        dst, src = instr.args
        if self.table(dst).elem != self.table(src).elem:
            self.fail(f"type mismatch: table.copy from table {src} to table {dst}")
        self.apply_sig(("i32", "i32", "i32"), ())

    def i_table_init(self, instr: Instr) -> None:
        elem_index, table_index = instr.args
        if self.table(table_index).elem != self.elem(elem_index):
            self.fail(f"type mismatch: table.init of table {table_index} "
                      f"from elem segment {elem_index}")
        self.apply_sig(("i32", "i32", "i32"), ())

    def i_elem_drop(self, instr: Instr) -> None:
        self.elem(instr.args[0])

    # --- memory instructions ---

    def memory_access(self, instr: Instr) -> None:
        """Loads and stores: a memory must exist and the alignment hint fit the access."""
        self.memory()
        align_log2 = instr.args[0]
        if align_log2 >= 32 or (1 << align_log2) > instr.op.width:
            self.fail(f"alignment must not be larger than natural ({instr.op.width} bytes)")
        self.apply_sig(instr.op.params, instr.op.results)

    def memory_op(self, instr: Instr) -> None:
        """memory.size/grow/fill/copy: a memory must exist; the types are fixed."""
        self.memory()
        self.apply_sig(instr.op.params, instr.op.results)

    def i_memory_init(self, instr: Instr) -> None:
        self.memory()
        self.data(instr.args[0])
        self.apply_sig(instr.op.params, instr.op.results)

    def i_data_drop(self, instr: Instr) -> None:
        self.data(instr.args[0])


def _handlers() -> dict[str, Callable[[CodeChecker, Instr], None]]:
    """Instruction name -> the method typing it; fixed-type instructions have none."""
    table: dict[str, Callable[[CodeChecker, Instr], None]] = {}
    for name, op in OPS_BY_NAME.items():
        method = getattr(CodeChecker, "i_" + name.replace(".", "_"), None)
        if method is not None:
            table[name] = method
        elif op.imm is Imm.MEMARG:
            table[name] = CodeChecker.memory_access
        elif name in ("memory.size", "memory.grow", "memory.fill", "memory.copy"):
            table[name] = CodeChecker.memory_op
    return table


_HANDLERS = _handlers()


# --- module level ---


def validate(module: Module) -> None:
    """Raise InvalidModule if ``module`` does not validate; return None if it does."""
    _check_type_indices(module)
    ctx = module_context(module)
    _check_tables(module)
    _check_mems(module)
    const_ctx = replace(ctx, globals=tuple(i.desc for i in module.imported("global")))
    _check_globals(module, const_ctx)
    _check_elems(module, const_ctx)
    _check_datas(module, const_ctx)
    _check_start(module, ctx)
    _check_exports(module, ctx)
    for i in range(len(module.funcs)):
        check_function(module, ctx, i)


def module_context(module: Module) -> Context:
    """The context C that function bodies are validated in (type indices must be checked first)."""
    return Context(
        types=module.types,
        funcs=module.func_types,
        tables=module.table_types,
        mems=module.mem_types,
        globals=module.global_types,
        elems=tuple(e.reftype for e in module.elems),
        datas=len(module.datas),
        has_data_count=module.data_count is not None,
        refs=_declared_refs(module),
    )


def _declared_refs(module: Module) -> frozenset[int]:
    """Functions named outside function bodies: the only ones ref.func may take in code."""
    exprs: list[Expr] = [g.init for g in module.globals]
    for e in module.elems:
        exprs.extend(e.init)
        if e.offset is not None:
            exprs.append(e.offset)
    refs = {ins.args[0] for expr in exprs for ins in expr if ins.op.name == "ref.func"}
    refs.update(x.index for x in module.exports if x.kind == "func")
    return frozenset(refs)


def check_function(module: Module, ctx: Context, i: int) -> CodeChecker:
    """Validate defined function ``i`` (0 = first non-imported); returns the finished checker."""
    func = module.funcs[i]
    ft = module.types[func.type_index]
    index = module.num_imported_funcs + i
    checker = CodeChecker(ctx, f"function {index}", ft.params + func.locals, ft.results)
    for instr in func.body:
        checker.step(instr)
    checker.finish()
    return checker


def check_const_expr(ctx: Context, expr: Expr, t: ValType, where: str) -> None:
    """A constant expression: only constant instructions, and it leaves exactly one ``t``."""
    for instr in expr:
        name = instr.op.name
        at = f"{where}, byte offset {instr.offset}"
        if name not in CONST_OPS:
            raise InvalidModule(f"constant expression required: {name} is not constant", at)
        if name == "global.get":
            x = instr.args[0]
            if x >= len(ctx.globals):
                raise InvalidModule(f"unknown global {x}", at)
            if ctx.globals[x].mutable:
                raise InvalidModule(f"constant expression required: global {x} is mutable", at)
    checker = CodeChecker(ctx, where, (), (t,))
    for instr in expr:
        checker.step(instr)
    checker.finish()


def _check_type_indices(module: Module) -> None:
    for n, imp in enumerate(module.imports):
        if imp.kind == "func" and imp.desc >= len(module.types):  # type: ignore[operator]
            raise InvalidModule(f"unknown type {imp.desc}", f"import {n} ({imp.module}.{imp.name})")
    for i, func in enumerate(module.funcs):
        if func.type_index >= len(module.types):
            raise InvalidModule(f"unknown type {func.type_index}",
                                f"function {module.num_imported_funcs + i}")


def _check_limits(limits: Limits, bound: int, what: str, where: str) -> None:
    if limits.min > bound or (limits.max is not None and limits.max > bound):
        raise InvalidModule(what, where)
    if limits.max is not None and limits.min > limits.max:
        raise InvalidModule("size minimum must not be greater than maximum", where)


def _check_tables(module: Module) -> None:
    for n, tt in enumerate(module.table_types):
        _check_limits(tt.limits, 2**32 - 1, "table size must be at most 2^32-1", f"table {n}")


def _check_mems(module: Module) -> None:
    mems = module.mem_types
    if len(mems) > 1:
        raise InvalidModule("multiple memories", f"{len(mems)} memories")
    for n, mt in enumerate(mems):
        _check_limits(mt.limits, MAX_PAGES, "memory size must be at most 65536 pages (4GiB)",
                      f"memory {n}")


def _check_globals(module: Module, const_ctx: Context) -> None:
    first = len(const_ctx.globals)  # defined globals follow the imported ones
    for n, g in enumerate(module.globals):
        check_const_expr(const_ctx, g.init, g.type.valtype, f"global {first + n}")


def _check_elems(module: Module, const_ctx: Context) -> None:
    for n, e in enumerate(module.elems):
        where = f"elem segment {n}"
        for init in e.init:
            check_const_expr(const_ctx, init, e.reftype, where)
        if e.mode != "active":
            continue
        if e.table >= len(const_ctx.tables):
            raise InvalidModule(f"unknown table {e.table}", where)
        if const_ctx.tables[e.table].elem != e.reftype:
            raise InvalidModule(f"type mismatch: {e.reftype} segment for a table of "
                                f"{const_ctx.tables[e.table].elem}", where)
        check_const_expr(const_ctx, e.offset or (), "i32", f"{where} offset")


def _check_datas(module: Module, const_ctx: Context) -> None:
    for n, d in enumerate(module.datas):
        if d.mode != "active":
            continue
        where = f"data segment {n}"
        if d.memory >= len(const_ctx.mems):
            raise InvalidModule(f"unknown memory {d.memory}", where)
        check_const_expr(const_ctx, d.offset or (), "i32", f"{where} offset")


def _check_start(module: Module, ctx: Context) -> None:
    if module.start is None:
        return
    if module.start >= len(ctx.funcs):
        raise InvalidModule(f"unknown function {module.start}", "start section")
    ft = ctx.funcs[module.start]
    if ft.params or ft.results:
        raise InvalidModule("start function must have type [] -> []",
                            f"start section, function {module.start}")


def _check_exports(module: Module, ctx: Context) -> None:
    spaces = {"func": ("function", len(ctx.funcs)), "table": ("table", len(ctx.tables)),
              "memory": ("memory", len(ctx.mems)), "global": ("global", len(ctx.globals))}
    seen: set[str] = set()
    for n, x in enumerate(module.exports):
        where = f"export {n} ({x.name!r})"
        noun, count = spaces[x.kind]
        if x.index >= count:
            raise InvalidModule(f"unknown {noun} {x.index}", where)
        if x.name in seen:
            raise InvalidModule("duplicate export name", where)
        seen.add(x.name)
