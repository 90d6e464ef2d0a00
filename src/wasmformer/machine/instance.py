"""Instantiation: a lowered module plus its run-time state, and ``invoke``.

``Instance(module, host=...)`` does what the spec's instantiation does, in
its order: resolve the imports through ``host`` (``LinkError`` when one is
missing or of the wrong type), create memories, tables and globals, evaluate
the element and data segments, copy the active ones into their table/memory
(a segment out of bounds traps, and the segments before it stay written),
drop the active and declarative ones, then run the start function. State
(memory, globals, tables, segments) persists across ``invoke`` calls.

Resource limits: ``HostLimits`` bounds what a program may allocate or how
deep it may recurse; a step budget (``max_steps``) and a wall-clock
``Deadline`` bound how long it runs. The start function runs under the
same step budget (its own count) and the instance's deadline.

Values cross this boundary as Python ints: arguments may be signed or
unsigned (they are masked to the parameter's width); i32/i64 results come
back *signed*, like wasmtime's Python API. f32/f64 travel as their raw bit
patterns (the machine never computes on them), references as ``None`` or an
opaque object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import InputError, LinkError, Trap
from ..wasm.module import (
    Expr,
    GlobalType,
    Import,
    Limits,
    MemType,
    Module,
    TableType,
    ValType,
)
from .lower import lower
from .reference import Deadline, ReferenceMachine
from .runtime import (
    MAX_PAGES,
    Extern,
    Function,
    Global,
    HostFunction,
    Memory,
    Table,
    WasmFunction,
)
from .semantics import BITS, mask, to_signed

_VALUE_BITS = {"i32": 32, "i64": 64, "f32": 32, "f64": 64}


class Host(Protocol):
    """Something that provides imports: ``None`` when it does not have ``module.name``."""

    def resolve(self, module: str, name: str, expected: Any) -> Extern | None: ...


@dataclass(frozen=True)
class HostLimits:
    """What this host allows beyond the module's own declarations."""

    max_call_depth: int = 50_000  # frames; deeper recursion traps "call stack exhausted"
    max_memory_pages: int = 16_384  # 1 GiB; memory.grow beyond it returns -1
    max_table_elements: int = 10_000_000  # ~80 MB of references; table.grow beyond: -1

    def __post_init__(self) -> None:
        if not 0 <= self.max_memory_pages <= MAX_PAGES:
            raise InputError(f"max_memory_pages must be 0..{MAX_PAGES} (4 GiB), "
                             f"not {self.max_memory_pages}")
        if self.max_call_depth < 1:
            raise InputError(f"max_call_depth must be positive, not {self.max_call_depth}")
        if self.max_table_elements < 0:
            raise InputError(f"max_table_elements must be 0 or more, "
                             f"not {self.max_table_elements}")


class Instance:
    def __init__(self, module: Module, *, host: Host | None = None,
                 limits: HostLimits = HostLimits(), max_steps: int | None = None,
                 deadline: Deadline | None = None):
        self.module = module
        self.host = host  # what resolved the imports (an engine's host calls use it)
        self.program = lower(module)
        self.limits = limits
        self.deadline = deadline  # the wall-clock budget of every run without its own
        self.instructions = 0  # WebAssembly instructions executed so far (wasmtime fuel count)
        self.last_instructions = 0  # ... by the latest invoke()
        self.functions: list[Function] = []
        self.tables: list[Table] = []
        self.memory: Memory | None = None
        self.globals: list[Global] = []
        self._link(host)
        self._define()
        self.exports: dict[str, Extern] = {x.name: self._extern(x.kind, x.index)
                                           for x in module.exports}
        self.machine = ReferenceMachine(self, limits.max_call_depth)
        self._init_segments()
        if module.start is not None:
            self.machine.call(self.functions[module.start], [], max_steps, deadline)

    # --- instantiation ---

    def _link(self, host: Host | None) -> None:
        for imp in self.module.imports:
            expected = self.module.types[imp.desc] if imp.kind == "func" else imp.desc
            ext = host.resolve(imp.module, imp.name, expected) if host is not None else None
            if ext is None:
                raise LinkError(f"unknown import: {imp.module}.{imp.name} ({imp.kind})")
            _check_import(imp, expected, ext)
            if imp.kind == "func":
                self.functions.append(ext)  # type: ignore[arg-type]
            elif imp.kind == "table":
                self.tables.append(ext)  # type: ignore[arg-type]
            elif imp.kind == "global":
                self.globals.append(ext)  # type: ignore[arg-type]
            else:
                self.memory = ext  # type: ignore[assignment]

    def _define(self) -> None:
        m = self.module
        first = m.num_imported_funcs
        self.functions += [WasmFunction(m.types[f.type_index], self, first + i)
                           for i, f in enumerate(m.funcs)]
        for t in m.tables:
            if t.limits.min > self.limits.max_table_elements:
                raise LinkError(f"table of {t.limits.min} elements exceeds the host limit of "
                                f"{self.limits.max_table_elements} elements")
            self.tables.append(Table(t.elem, [None] * t.limits.min, t.limits.max,
                                     self.limits.max_table_elements))
        for mt in m.mems:
            if mt.limits.min > self.limits.max_memory_pages:
                raise LinkError(f"memory of {mt.limits.min} pages exceeds the host limit of "
                                f"{self.limits.max_memory_pages} pages")
            self.memory = Memory.new(mt.limits.min, mt.limits.max, self.limits.max_memory_pages)
        for g in m.globals:
            self.globals.append(Global(g.type, self.eval_const(g.init)))

    def eval_const(self, expr: Expr) -> Any:
        """The value of a constant expression (validation guarantees its shape)."""
        stack: list = []
        for ins in expr:
            name, args = ins.name, ins.args
            if name in ("i32.const", "i64.const", "f32.const", "f64.const"):
                stack.append(args[0] & mask(_VALUE_BITS[name[:3]]))
            elif name == "ref.null":
                stack.append(None)
            elif name == "ref.func":
                stack.append(self.functions[args[0]])
            elif name == "global.get":
                stack.append(self.globals[args[0]].value)
            else:
                raise AssertionError(f"not a constant instruction: {name}")
        return stack[-1]

    def _init_segments(self) -> None:
        m = self.module
        self.elems: list[tuple] = [tuple(self.eval_const(e) for e in seg.init) for seg in m.elems]
        self.datas: list[bytes] = [d.init for d in m.datas]
        for i, seg in enumerate(m.elems):
            if seg.mode == "active":
                start, table = self.eval_const(seg.offset or ()), self.tables[seg.table]
                if start + len(self.elems[i]) > len(table.elems):
                    raise Trap("out of bounds table access")
                table.elems[start:start + len(self.elems[i])] = self.elems[i]
            if seg.mode != "passive":
                self.elems[i] = ()
        for i, data in enumerate(m.datas):
            if data.mode == "active":
                start = self.eval_const(data.offset or ())
                memory = self.memory.data  # type: ignore[union-attr]
                if start + len(data.init) > len(memory):
                    raise Trap("out of bounds memory access")
                memory[start:start + len(data.init)] = data.init
                self.datas[i] = b""

    def _extern(self, kind: str, index: int) -> Extern:
        if kind == "func":
            return self.functions[index]
        if kind == "table":
            return self.tables[index]
        if kind == "memory":
            return self.memory  # type: ignore[return-value]
        return self.globals[index]

    # --- use ---

    def invoke(self, name: str, args: Sequence[Any] = (), *, max_steps: int | None = None,
               deadline: Deadline | None = None) -> list:
        """Call the exported function ``name``; its results (i32/i64 as signed ints).

        Budgets: ``max_steps`` instructions, and ``deadline`` (default: the instance's).
        """
        f = self.exports.get(name)
        if not isinstance(f, WasmFunction | HostFunction):
            raise LinkError(f"no exported function named {name!r}")
        params = f.type.params
        if len(args) != len(params):
            raise ValueError(f"{name} takes {len(params)} argument(s), got {len(args)}")
        values = [_to_value(v, t) for v, t in zip(args, params, strict=True)]
        before = self.instructions
        try:
            results = self.machine.call(f, values, max_steps, deadline or self.deadline)
        finally:
            self.last_instructions = self.instructions - before
        return [_from_value(v, t) for v, t in zip(results, f.type.results, strict=True)]

    def global_value(self, name: str) -> Any:
        """The value of the exported global ``name`` (i32/i64 signed)."""
        g = self.exports.get(name)
        if not isinstance(g, Global):
            raise LinkError(f"no exported global named {name!r}")
        return _from_value(g.value, g.type.valtype)


def _to_value(v: Any, t: ValType) -> Any:
    return v & mask(_VALUE_BITS[t]) if t in _VALUE_BITS else v


def _from_value(v: Any, t: ValType) -> Any:
    return to_signed(v, BITS[t]) if t in BITS else v


# --- import matching (the spec's "external type matching") ---


def _limits_match(actual_min: int, actual_max: int | None, expected: Limits) -> bool:
    if actual_min < expected.min:
        return False
    return expected.max is None or (actual_max is not None and actual_max <= expected.max)


def _check_import(imp: Import, expected: Any, ext: Extern) -> None:
    ok = False
    if imp.kind == "func":
        ok = isinstance(ext, WasmFunction | HostFunction) and ext.type == expected
    elif imp.kind == "table":
        assert isinstance(expected, TableType)
        ok = (isinstance(ext, Table) and ext.elem_type == expected.elem
              and _limits_match(len(ext.elems), ext.max_size, expected.limits))
    elif imp.kind == "memory":
        assert isinstance(expected, MemType)
        ok = isinstance(ext, Memory) and _limits_match(ext.pages, ext.max_pages, expected.limits)
    elif imp.kind == "global":
        assert isinstance(expected, GlobalType)
        ok = isinstance(ext, Global) and ext.type == expected
    if not ok:
        raise LinkError(f"incompatible import type: {imp.module}.{imp.name} ({imp.kind})")

