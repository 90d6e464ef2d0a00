"""Decode a WebAssembly 2.0 binary module (everything but SIMD) into ``Module``.

The decoder checks the *binary format* only: section layout, LEB128
encodings, names, type and flag bytes, instruction encodings and the
counts the format ties together (function/code, data count/data). Typing,
index ranges and constness are the validator's job. Any malformed input
raises ``MalformedModule`` whose message starts with the spec test suite's
wording and whose ``where`` names the section, function and byte offset.
"""

from __future__ import annotations

from collections.abc import Callable

from .module import (
    Data,
    Elem,
    Export,
    Expr,
    ExternKind,
    Func,
    FuncType,
    Global,
    GlobalType,
    Import,
    Instr,
    Limits,
    MemType,
    Module,
    TableType,
    ValType,
)
from .opcodes import OPS_BY_CODE, OPS_BY_NAME, PREFIX_FC, Imm
from .reader import Reader

MAGIC = b"\x00asm"
VERSION = b"\x01\x00\x00\x00"

VALTYPES = {0x7F: "i32", 0x7E: "i64", 0x7D: "f32", 0x7C: "f64", 0x70: "funcref", 0x6F: "externref"}
REFTYPES = {0x70: "funcref", 0x6F: "externref"}
V128 = 0x7B
PREFIX_SIMD = 0xFD
EMPTY_BLOCK = 0x40
FUNC_TYPE = 0x60
EXTERN_KINDS: tuple[ExternKind, ...] = ("func", "table", "memory", "global")

SECTION_NAMES = {
    0: "custom", 1: "type", 2: "import", 3: "function", 4: "table", 5: "memory", 6: "global",
    7: "export", 8: "start", 9: "element", 10: "code", 11: "data", 12: "data count",
}
# Non-custom sections must appear at most once, in this order (data count sits before code).
SECTION_RANK = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8, 9: 9, 12: 10, 10: 11, 11: 12}

MAX_TOTAL_LOCALS = 0xFFFF_FFFF  # the format's limit ("too many locals")
# Our limit: locals are expanded into a tuple, so a huge (legal) count would
# exhaust memory. 50000 is the limit wasmtime and the browsers' JS API enforce.
IMPL_MAX_LOCALS = 50_000

OP_END = 0x0B
OP_ELSE = 0x05
OP_IF = 0x04
IN_ELSE = -1  # block-stack marker: an `if` whose `else` has been seen
REF_FUNC = OPS_BY_NAME["ref.func"]


def decode(data: bytes) -> Module:
    """Decode the binary module ``data``; raises MalformedModule if it is malformed."""
    return _Decoder(bytes(data)).module()


# --- types ---


def read_valtype(r: Reader) -> ValType:
    at = r.pos
    b = r.byte()
    t = VALTYPES.get(b)
    if t is None:
        if b == V128:
            r.fail("unsupported value type v128: SIMD is not supported", at)
        r.fail(f"malformed value type 0x{b:02x}", at)
    return t


def read_reftype(r: Reader) -> ValType:
    at = r.pos
    b = r.byte()
    t = REFTYPES.get(b)
    if t is None:
        r.fail(f"malformed reference type 0x{b:02x}", at)
    return t


def read_limits(r: Reader) -> Limits:
    has_max = r.unsigned(1)  # the flag is a 1-bit LEB128: 0x02 is "integer too large"
    minimum = r.u32()
    return Limits(minimum, r.u32() if has_max else None)


def read_globaltype(r: Reader) -> GlobalType:
    valtype = read_valtype(r)
    at = r.pos
    mut = r.byte()
    if mut > 1:
        r.fail(f"malformed mutability 0x{mut:02x}", at)
    return GlobalType(valtype, mut == 1)


def read_functype(r: Reader) -> FuncType:
    at = r.pos
    if r.byte() != FUNC_TYPE:
        r.fail("malformed function type (expected 0x60)", at)
    params = tuple(read_valtype(r) for _ in range(r.u32()))
    results = tuple(read_valtype(r) for _ in range(r.u32()))
    return FuncType(params, results)


# --- instruction immediates, by Imm kind: each returns the Instr args tuple ---


def _blocktype(r: Reader) -> tuple:
    at = r.pos
    b = r.byte()
    if b == EMPTY_BLOCK:
        return (None,)
    if b in VALTYPES:
        return (VALTYPES[b],)
    if b == V128:
        r.fail("unsupported block type v128: SIMD is not supported", at)
    r.pos = at
    index = r.s33()  # a type index, written as a non-negative s33
    if index < 0:
        r.fail(f"malformed block type {index}", at)
    return (index,)


def _index(r: Reader) -> tuple:
    return (r.u32(),)


def _two_indices(r: Reader) -> tuple:
    first = r.u32()
    return (first, r.u32())


def _br_table(r: Reader) -> tuple:
    labels = tuple(r.u32() for _ in range(r.u32()))
    return (labels, r.u32())


def _zero_byte(r: Reader) -> None:
    at = r.pos
    if r.byte() != 0:
        r.fail("zero byte expected (reserved memory index)", at)


def _memory(r: Reader) -> tuple:
    _zero_byte(r)
    return ()


def _memory_copy(r: Reader) -> tuple:
    _zero_byte(r)
    _zero_byte(r)
    return ()


def _memory_init(r: Reader) -> tuple:
    data_index = r.u32()
    _zero_byte(r)
    return (data_index,)


def _i32(r: Reader) -> tuple:
    return (r.s32(),)


def _i64(r: Reader) -> tuple:
    return (r.s64(),)


def _f32(r: Reader) -> tuple:
    return (int.from_bytes(r.bytes(4), "little"),)


def _f64(r: Reader) -> tuple:
    return (int.from_bytes(r.bytes(8), "little"),)


def _reftype(r: Reader) -> tuple:
    return (read_reftype(r),)


def _select_t(r: Reader) -> tuple:
    return (tuple(read_valtype(r) for _ in range(r.u32())),)


IMM_READERS: dict[Imm, Callable[[Reader], tuple]] = {
    Imm.BLOCKTYPE: _blocktype,
    Imm.LABEL: _index,
    Imm.BR_TABLE: _br_table,
    Imm.FUNC: _index,
    Imm.CALL_INDIRECT: _two_indices,  # typeidx, tableidx (a u32 since reference types)
    Imm.LOCAL: _index,
    Imm.GLOBAL: _index,
    Imm.TABLE: _index,
    Imm.MEMARG: _two_indices,  # align, offset
    Imm.MEMORY: _memory,
    Imm.I32: _i32,
    Imm.I64: _i64,
    Imm.F32: _f32,
    Imm.F64: _f64,
    Imm.REFTYPE: _reftype,
    Imm.SELECT_T: _select_t,
    Imm.MEMORY_INIT: _memory_init,
    Imm.DATA: _index,
    Imm.MEMORY_COPY: _memory_copy,
    Imm.ELEM: _index,
    Imm.TABLE_INIT: _two_indices,
    Imm.TABLE_COPY: _two_indices,
}
assert set(IMM_READERS) == set(Imm) - {Imm.NONE}, "an immediate kind has no reader"


def _read_opcode(r: Reader) -> int:
    """The opcode at r.pos as an OPS_BY_CODE key; fails on SIMD and unknown prefixes."""
    at = r.pos
    code = r.byte()
    if code == PREFIX_FC:
        sub = r.u32()
        if sub > 0xFF or (PREFIX_FC << 8) | sub not in OPS_BY_CODE:
            r.fail(f"illegal opcode 0xfc {sub}", at)
        return (PREFIX_FC << 8) | sub
    if code == PREFIX_SIMD:
        r.fail("unsupported opcode 0xfd: SIMD instructions are not supported", at)
    return code


def read_expr(r: Reader, forbid_data_ops: bool = False) -> Expr:
    """Instructions up to the `end` that closes the expression (not included).

    Nested block/loop/if/else/end stay in the flat tuple; a stack of open
    blocks is kept only to find the final `end` and to place `else` correctly.
    ``forbid_data_ops``: memory.init/data.drop need a data count section.
    """
    instrs: list[Instr] = []
    blocks: list[int] = []  # opcodes of the open blocks (IN_ELSE for an if past its else)
    ops = OPS_BY_CODE
    none = Imm.NONE
    while True:
        at = r.pos
        code = _read_opcode(r)
        op = ops.get(code)
        if op is None:
            r.fail(f"illegal opcode 0x{code:02x}", at)
        imm = op.imm
        if imm is none:
            args: tuple = ()
            if code == OP_END:
                if not blocks:
                    return tuple(instrs)
                blocks.pop()
            elif code == OP_ELSE:
                if not blocks or blocks[-1] != OP_IF:
                    r.fail("END opcode expected, found `else` outside an `if`", at)
                blocks[-1] = IN_ELSE
        else:
            args = IMM_READERS[imm](r)
            if imm is Imm.BLOCKTYPE:
                blocks.append(code)
            elif forbid_data_ops and (imm is Imm.MEMORY_INIT or imm is Imm.DATA):
                r.fail(f"data count section required by {op.name}", at)
        instrs.append(Instr(op, args, at))


# --- the module ---


class _Decoder:
    def __init__(self, data: bytes):
        self.data = data
        self.types: list[FuncType] = []
        self.imports: list[Import] = []
        self.func_type_indices: list[int] = []
        self.funcs: list[Func] = []
        self.tables: list[TableType] = []
        self.mems: list[MemType] = []
        self.globals: list[Global] = []
        self.exports: list[Export] = []
        self.start: int | None = None
        self.elems: list[Elem] = []
        self.datas: list[Data] = []
        self.data_count: int | None = None
        self.customs: list[tuple[str, bytes]] = []
        self.seen: set[int] = set()  # non-custom section ids present

    def module(self) -> Module:
        r = Reader(self.data)
        self._header(r)
        rank = 0
        while not r.at_end:
            at = r.pos
            section_id = r.byte()
            if section_id not in SECTION_NAMES:
                r.fail(f"malformed section id {section_id}", at)
            name = SECTION_NAMES[section_id]
            r.where = f"{name} section"
            size = r.length()
            if section_id != 0:
                if SECTION_RANK[section_id] <= rank:
                    r.fail(f"unexpected content after last section: {name} section "
                           "is repeated or out of order", at)
                rank = SECTION_RANK[section_id]
                self.seen.add(section_id)
            section = Reader(self.data, r.pos, r.pos + size, f"{name} section")
            self._section(section_id, section)
            section.where = f"{name} section"
            if section.pos != section.end:
                section.fail(f"section size mismatch: {size} bytes declared, "
                             f"{section.pos - r.pos} used")
            r.pos = section.end
            r.where = ""
        self._check_counts(r)
        return Module(
            types=tuple(self.types), imports=tuple(self.imports), funcs=tuple(self.funcs),
            tables=tuple(self.tables), mems=tuple(self.mems), globals=tuple(self.globals),
            exports=tuple(self.exports), start=self.start, elems=tuple(self.elems),
            datas=tuple(self.datas), data_count=self.data_count, customs=tuple(self.customs),
        )

    def _header(self, r: Reader) -> None:
        if r.bytes(4) != MAGIC:
            r.fail("magic header not detected", 0)
        if r.bytes(4) != VERSION:
            r.fail("unknown binary version (only version 1 is supported)", 4)

    def _check_counts(self, r: Reader) -> None:
        """Counts that the format ties across sections, once all sections are read."""
        if 10 not in self.seen and self.func_type_indices:
            r.fail("function and code section have inconsistent lengths: "
                   f"{len(self.func_type_indices)} functions declared, no code section")
        if 11 not in self.seen and self.data_count:
            r.fail("data count and data section have inconsistent lengths: "
                   f"data count {self.data_count}, no data section")

    def _section(self, section_id: int, r: Reader) -> None:
        if section_id == 0:
            name = r.name()
            self.customs.append((name, r.bytes(r.end - r.pos)))
        elif section_id == 1:
            self.types = [read_functype(r) for _ in range(r.u32())]
        elif section_id == 2:
            self.imports = [self._import(r) for _ in range(r.u32())]
        elif section_id == 3:
            self.func_type_indices = [r.u32() for _ in range(r.u32())]
        elif section_id == 4:
            self.tables = [self._tabletype(r) for _ in range(r.u32())]
        elif section_id == 5:
            self.mems = [MemType(read_limits(r)) for _ in range(r.u32())]
        elif section_id == 6:
            self.globals = [self._global(r, i) for i in range(r.u32())]
        elif section_id == 7:
            self.exports = [self._export(r) for _ in range(r.u32())]
        elif section_id == 8:
            self.start = r.u32()
        elif section_id == 9:
            self.elems = [self._elem(r, i) for i in range(r.u32())]
        elif section_id == 10:
            self._code_section(r)
        elif section_id == 11:
            self._data_section(r)
        else:
            self.data_count = r.u32()

    # --- entries ---

    @staticmethod
    def _tabletype(r: Reader) -> TableType:
        elem = read_reftype(r)
        return TableType(elem, read_limits(r))

    def _import(self, r: Reader) -> Import:
        module = r.name()
        name = r.name()
        at = r.pos
        kind = r.byte()
        if kind == 0:
            desc: int | TableType | MemType | GlobalType = r.u32()
        elif kind == 1:
            desc = self._tabletype(r)
        elif kind == 2:
            desc = MemType(read_limits(r))
        elif kind == 3:
            desc = read_globaltype(r)
        else:
            r.fail(f"malformed import kind 0x{kind:02x}", at)
        return Import(module, name, EXTERN_KINDS[kind], desc)

    @staticmethod
    def _export(r: Reader) -> Export:
        name = r.name()
        at = r.pos
        kind = r.byte()
        if kind >= len(EXTERN_KINDS):
            r.fail(f"malformed export kind 0x{kind:02x}", at)
        return Export(name, EXTERN_KINDS[kind], r.u32())

    @staticmethod
    def _global(r: Reader, i: int) -> Global:
        r.where = f"global section, global {i}"
        gtype = read_globaltype(r)
        return Global(gtype, read_expr(r))

    def _elem(self, r: Reader, i: int) -> Elem:
        """Element segment kinds 0-7: bit 0 passive/declarative, bit 1 explicit
        table (active) or declarative, bit 2 elements as expressions."""
        r.where = f"element section, segment {i}"
        at = r.pos
        flags = r.u32()
        if flags > 7:
            r.fail(f"malformed elements segment kind {flags}", at)
        table, offset = 0, None
        if flags & 1:
            mode = "declarative" if flags & 2 else "passive"
        else:
            mode = "active"
            if flags & 2:
                table = r.u32()
            offset = read_expr(r)
        if flags & 4:
            reftype = "funcref" if flags == 4 else read_reftype(r)
            init = tuple(read_expr(r) for _ in range(r.u32()))
        else:
            if flags != 0:
                kind_at = r.pos
                if r.byte() != 0x00:
                    r.fail("malformed element kind (only 0x00, funcref, exists)", kind_at)
            reftype = "funcref"
            init = tuple(self._ref_func(r) for _ in range(r.u32()))
        return Elem(mode, reftype, init, table, offset)  # type: ignore[arg-type]

    @staticmethod
    def _ref_func(r: Reader) -> Expr:
        """A bare function index in an element segment, as the expression `ref.func i`."""
        at = r.pos
        return (Instr(REF_FUNC, (r.u32(),), at),)

    def _code_section(self, r: Reader) -> None:
        at = r.pos
        count = r.u32()
        if count != len(self.func_type_indices):
            r.fail("function and code section have inconsistent lengths: "
                   f"{len(self.func_type_indices)} functions, {count} bodies", at)
        first_index = sum(1 for imp in self.imports if imp.kind == "func")
        for i, type_index in enumerate(self.func_type_indices):
            r.where = f"code section, function {first_index + i}"
            self.funcs.append(self._func(r, type_index))

    def _func(self, r: Reader, type_index: int) -> Func:
        entry = r.pos
        size = r.length()
        start = r.pos
        local_types = self._locals(r)
        body = read_expr(r, forbid_data_ops=self.data_count is None)
        if r.pos != start + size:
            r.fail(f"section size mismatch: function body is {r.pos - start} bytes, "
                   f"its size says {size}")
        return Func(type_index, local_types, body, entry)

    @staticmethod
    def _locals(r: Reader) -> tuple[ValType, ...]:
        groups: list[tuple[int, ValType]] = []
        total = 0
        for _ in range(r.u32()):
            at = r.pos
            n = r.u32()
            total += n
            if total > MAX_TOTAL_LOCALS:
                r.fail(f"too many locals: more than {MAX_TOTAL_LOCALS}", at)
            groups.append((n, read_valtype(r)))
        if total > IMPL_MAX_LOCALS:
            r.fail(f"too many locals: {total} declared, this implementation "
                   f"supports at most {IMPL_MAX_LOCALS}")
        return tuple(t for n, t in groups for _ in range(n))

    def _data_section(self, r: Reader) -> None:
        at = r.pos
        count = r.u32()
        if self.data_count is not None and count != self.data_count:
            r.fail("data count and data section have inconsistent lengths: "
                   f"data count {self.data_count}, {count} segments", at)
        self.datas = [self._data(r, i) for i in range(count)]

    @staticmethod
    def _data(r: Reader, i: int) -> Data:
        r.where = f"data section, segment {i}"
        at = r.pos
        flags = r.u32()
        if flags == 1:
            return Data("passive", r.bytes(r.length()))
        if flags not in (0, 2):
            r.fail(f"malformed data segment kind {flags}", at)
        memory = r.u32() if flags == 2 else 0
        offset = read_expr(r)
        return Data("active", r.bytes(r.length()), memory, offset)


__all__ = ["decode", "read_expr", "read_valtype"]
