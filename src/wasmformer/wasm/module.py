"""The decoded form of a WebAssembly module: frozen, typed dataclasses.

This is the boundary between the front end (``decode``, ``validate``) and
everything after it (``wasmformer.machine``). Nothing here is mutated after
decoding. Value types are the spec's names as strings:
'i32', 'i64', 'f32', 'f64', 'funcref', 'externref'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .opcodes import Op

ValType = str  # 'i32' | 'i64' | 'f32' | 'f64' | 'funcref' | 'externref'
NUM_TYPES = ("i32", "i64", "f32", "f64")
REF_TYPES = ("funcref", "externref")
ExternKind = Literal["func", "table", "memory", "global"]


@dataclass(frozen=True, slots=True)
class Instr:
    """One decoded instruction.

    ``args`` holds the immediates, by ``op.imm``:
      BLOCKTYPE: (blocktype,) where blocktype is None (empty), a ValType, or a type index (int)
      LABEL/FUNC/LOCAL/GLOBAL/TABLE/DATA/ELEM: (index,)
      BR_TABLE: (labels: tuple[int, ...], default: int)
      CALL_INDIRECT: (typeidx, tableidx)
      MEMARG: (align_log2, offset)
      MEMORY / MEMORY_COPY: ()            (the reserved zero bytes are checked by the decoder)
      I32/I64: (value,) as a signed Python int;  F32/F64: (bits,) the raw IEEE bits as an unsigned int
      REFTYPE: ('funcref' | 'externref',)
      SELECT_T: (tuple of ValType,)
      MEMORY_INIT: (dataidx,)
      TABLE_INIT: (elemidx, tableidx);  TABLE_COPY: (dst_table, src_table)
    ``offset`` is the byte offset of the opcode in the module binary.
    """

    op: Op
    args: tuple = ()
    offset: int = 0

    @property
    def name(self) -> str:
        return self.op.name


Expr = tuple[Instr, ...]  # a constant expression or a body, *without* its final `end`


@dataclass(frozen=True, slots=True)
class FuncType:
    params: tuple[ValType, ...]
    results: tuple[ValType, ...]


@dataclass(frozen=True, slots=True)
class Limits:
    min: int
    max: int | None = None


@dataclass(frozen=True, slots=True)
class TableType:
    elem: ValType  # 'funcref' | 'externref'
    limits: Limits


@dataclass(frozen=True, slots=True)
class MemType:
    limits: Limits  # in 64 KiB pages


@dataclass(frozen=True, slots=True)
class GlobalType:
    valtype: ValType
    mutable: bool


@dataclass(frozen=True, slots=True)
class Import:
    module: str
    name: str
    kind: ExternKind
    desc: int | TableType | MemType | GlobalType  # func: type index


@dataclass(frozen=True, slots=True)
class Export:
    name: str
    kind: ExternKind
    index: int


@dataclass(frozen=True, slots=True)
class Global:
    type: GlobalType
    init: Expr


@dataclass(frozen=True, slots=True)
class Func:
    """A function defined in the module (imports are in ``Module.imports``)."""

    type_index: int
    locals: tuple[ValType, ...]  # declared locals only, parameters excluded
    body: Expr  # without the final `end`
    offset: int  # byte offset of the function's code entry


@dataclass(frozen=True, slots=True)
class Elem:
    mode: Literal["active", "passive", "declarative"]
    reftype: ValType
    init: tuple[Expr, ...]  # one constant expression per element
    table: int = 0
    offset: Expr | None = None  # active only


@dataclass(frozen=True, slots=True)
class Data:
    mode: Literal["active", "passive"]
    init: bytes
    memory: int = 0
    offset: Expr | None = None  # active only


@dataclass(frozen=True, slots=True)
class Module:
    types: tuple[FuncType, ...] = ()
    imports: tuple[Import, ...] = ()
    funcs: tuple[Func, ...] = ()
    tables: tuple[TableType, ...] = ()
    mems: tuple[MemType, ...] = ()
    globals: tuple[Global, ...] = ()
    exports: tuple[Export, ...] = ()
    start: int | None = None
    elems: tuple[Elem, ...] = ()
    datas: tuple[Data, ...] = ()
    data_count: int | None = None
    customs: tuple[tuple[str, bytes], ...] = field(default=(), repr=False)

    # --- index spaces: imports first, then definitions, as the spec numbers them ---

    def imported(self, kind: ExternKind) -> tuple[Import, ...]:
        return tuple(i for i in self.imports if i.kind == kind)

    @property
    def func_types(self) -> tuple[FuncType, ...]:
        """The type of every function in the function index space."""
        imported = tuple(self.types[i.desc] for i in self.imported("func"))  # type: ignore[index]
        return imported + tuple(self.types[f.type_index] for f in self.funcs)

    @property
    def table_types(self) -> tuple[TableType, ...]:
        return tuple(i.desc for i in self.imported("table")) + self.tables  # type: ignore[return-value]

    @property
    def mem_types(self) -> tuple[MemType, ...]:
        return tuple(i.desc for i in self.imported("memory")) + self.mems  # type: ignore[return-value]

    @property
    def global_types(self) -> tuple[GlobalType, ...]:
        imported = tuple(i.desc for i in self.imported("global"))
        return imported + tuple(g.type for g in self.globals)  # type: ignore[return-value]

    @property
    def num_imported_funcs(self) -> int:
        return len(self.imported("func"))
