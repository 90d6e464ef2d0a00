"""The one opcode table: every WebAssembly 2.0 instruction but SIMD, one row each.

A row holds the *format* facts of an instruction: its encoding, the kind of
immediate that follows it, its operand/result types where they are fixed, and
how many bytes a memory access touches. What an instruction *does* is defined
once, in ``wasmformer.machine``; this table only says how it is written and
typed, so the decoder and the validator both read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Imm(Enum):
    """The kind of immediate operand that follows an opcode in the binary."""

    NONE = "none"
    BLOCKTYPE = "blocktype"  # block, loop, if
    LABEL = "label"  # br, br_if
    BR_TABLE = "br_table"  # vec(labelidx) labelidx
    FUNC = "func"  # call, ref.func
    CALL_INDIRECT = "call_indirect"  # typeidx tableidx
    LOCAL = "local"
    GLOBAL = "global"
    TABLE = "table"  # table.get/set/size/grow/fill
    MEMARG = "memarg"  # align offset
    MEMORY = "memory"  # memory.size/grow, memory.fill: one 0x00 byte
    I32 = "i32"
    I64 = "i64"
    F32 = "f32"
    F64 = "f64"
    REFTYPE = "reftype"  # ref.null
    SELECT_T = "select_t"  # vec(valtype)
    MEMORY_INIT = "memory_init"  # dataidx 0x00
    DATA = "data"  # data.drop
    MEMORY_COPY = "memory_copy"  # 0x00 0x00
    ELEM = "elem"  # elem.drop
    TABLE_INIT = "table_init"  # elemidx tableidx
    TABLE_COPY = "table_copy"  # tableidx tableidx


@dataclass(frozen=True, slots=True)
class Op:
    """One instruction's format.

    ``code`` is the opcode byte, or ``(0xFC << 8) | sub`` for prefixed ones.
    ``params``/``results`` are value-type names ('i32', 'i64', 'f32', 'f64')
    when the instruction's type is fixed; ``None`` when the validator must
    type it specially (control, locals, select, references, tables...).
    ``width`` is the number of bytes a load/store touches (0 otherwise).
    ``is_float`` marks instructions that compute on f32/f64 values: they
    validate, but the integer machine cannot execute them.
    """

    code: int
    name: str
    imm: Imm
    params: tuple[str, ...] | None = None
    results: tuple[str, ...] | None = None
    width: int = 0
    is_float: bool = False


PREFIX_FC = 0xFC

_T = {"i": "i32", "I": "i64", "f": "f32", "F": "f64"}


def _sig(sig: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """'ii:i' -> (('i32','i32'), ('i32',)); letters: i=i32 I=i64 f=f32 F=f64."""
    params, results = sig.split(":")
    return tuple(_T[c] for c in params), tuple(_T[c] for c in results)


def _fixed(code: int, name: str, sig: str, imm: Imm = Imm.NONE, width: int = 0) -> Op:
    params, results = _sig(sig)
    is_float = "f32" in params + results or "f64" in params + results
    # Reinterpretations and conversions that only move bits are still float-typed.
    return Op(code, name, imm, params, results, width, is_float)


def _special(code: int, name: str, imm: Imm = Imm.NONE) -> Op:
    return Op(code, name, imm)


def _fc(sub: int) -> int:
    return (PREFIX_FC << 8) | sub


_ROWS: list[Op] = [
    # --- control ---
    _special(0x00, "unreachable"),
    _special(0x01, "nop"),
    _special(0x02, "block", Imm.BLOCKTYPE),
    _special(0x03, "loop", Imm.BLOCKTYPE),
    _special(0x04, "if", Imm.BLOCKTYPE),
    _special(0x05, "else"),
    _special(0x0B, "end"),
    _special(0x0C, "br", Imm.LABEL),
    _special(0x0D, "br_if", Imm.LABEL),
    _special(0x0E, "br_table", Imm.BR_TABLE),
    _special(0x0F, "return"),
    _special(0x10, "call", Imm.FUNC),
    _special(0x11, "call_indirect", Imm.CALL_INDIRECT),
    # --- reference ---
    _special(0xD0, "ref.null", Imm.REFTYPE),
    _special(0xD1, "ref.is_null"),
    _special(0xD2, "ref.func", Imm.FUNC),
    # --- parametric ---
    _special(0x1A, "drop"),
    _special(0x1B, "select"),
    _special(0x1C, "select_t", Imm.SELECT_T),
    # --- variable ---
    _special(0x20, "local.get", Imm.LOCAL),
    _special(0x21, "local.set", Imm.LOCAL),
    _special(0x22, "local.tee", Imm.LOCAL),
    _special(0x23, "global.get", Imm.GLOBAL),
    _special(0x24, "global.set", Imm.GLOBAL),
    # --- table ---
    _special(0x25, "table.get", Imm.TABLE),
    _special(0x26, "table.set", Imm.TABLE),
    _special(_fc(12), "table.init", Imm.TABLE_INIT),
    _special(_fc(13), "elem.drop", Imm.ELEM),
    _special(_fc(14), "table.copy", Imm.TABLE_COPY),
    _special(_fc(15), "table.grow", Imm.TABLE),
    _special(_fc(16), "table.size", Imm.TABLE),
    _special(_fc(17), "table.fill", Imm.TABLE),
    # --- memory: loads and stores (i32 address operand) ---
    _fixed(0x28, "i32.load", "i:i", Imm.MEMARG, 4),
    _fixed(0x29, "i64.load", "i:I", Imm.MEMARG, 8),
    _fixed(0x2A, "f32.load", "i:f", Imm.MEMARG, 4),
    _fixed(0x2B, "f64.load", "i:F", Imm.MEMARG, 8),
    _fixed(0x2C, "i32.load8_s", "i:i", Imm.MEMARG, 1),
    _fixed(0x2D, "i32.load8_u", "i:i", Imm.MEMARG, 1),
    _fixed(0x2E, "i32.load16_s", "i:i", Imm.MEMARG, 2),
    _fixed(0x2F, "i32.load16_u", "i:i", Imm.MEMARG, 2),
    _fixed(0x30, "i64.load8_s", "i:I", Imm.MEMARG, 1),
    _fixed(0x31, "i64.load8_u", "i:I", Imm.MEMARG, 1),
    _fixed(0x32, "i64.load16_s", "i:I", Imm.MEMARG, 2),
    _fixed(0x33, "i64.load16_u", "i:I", Imm.MEMARG, 2),
    _fixed(0x34, "i64.load32_s", "i:I", Imm.MEMARG, 4),
    _fixed(0x35, "i64.load32_u", "i:I", Imm.MEMARG, 4),
    _fixed(0x36, "i32.store", "ii:", Imm.MEMARG, 4),
    _fixed(0x37, "i64.store", "iI:", Imm.MEMARG, 8),
    _fixed(0x38, "f32.store", "if:", Imm.MEMARG, 4),
    _fixed(0x39, "f64.store", "iF:", Imm.MEMARG, 8),
    _fixed(0x3A, "i32.store8", "ii:", Imm.MEMARG, 1),
    _fixed(0x3B, "i32.store16", "ii:", Imm.MEMARG, 2),
    _fixed(0x3C, "i64.store8", "iI:", Imm.MEMARG, 1),
    _fixed(0x3D, "i64.store16", "iI:", Imm.MEMARG, 2),
    _fixed(0x3E, "i64.store32", "iI:", Imm.MEMARG, 4),
    _fixed(0x3F, "memory.size", ":i", Imm.MEMORY),
    _fixed(0x40, "memory.grow", "i:i", Imm.MEMORY),
    _fixed(_fc(8), "memory.init", "iii:", Imm.MEMORY_INIT),
    _fixed(_fc(9), "data.drop", ":", Imm.DATA),
    _fixed(_fc(10), "memory.copy", "iii:", Imm.MEMORY_COPY),
    _fixed(_fc(11), "memory.fill", "iii:", Imm.MEMORY),
    # --- constants ---
    _fixed(0x41, "i32.const", ":i", Imm.I32),
    _fixed(0x42, "i64.const", ":I", Imm.I64),
    _fixed(0x43, "f32.const", ":f", Imm.F32),
    _fixed(0x44, "f64.const", ":F", Imm.F64),
    # --- i32 comparisons ---
    _fixed(0x45, "i32.eqz", "i:i"),
    _fixed(0x46, "i32.eq", "ii:i"),
    _fixed(0x47, "i32.ne", "ii:i"),
    _fixed(0x48, "i32.lt_s", "ii:i"),
    _fixed(0x49, "i32.lt_u", "ii:i"),
    _fixed(0x4A, "i32.gt_s", "ii:i"),
    _fixed(0x4B, "i32.gt_u", "ii:i"),
    _fixed(0x4C, "i32.le_s", "ii:i"),
    _fixed(0x4D, "i32.le_u", "ii:i"),
    _fixed(0x4E, "i32.ge_s", "ii:i"),
    _fixed(0x4F, "i32.ge_u", "ii:i"),
    # --- i64 comparisons ---
    _fixed(0x50, "i64.eqz", "I:i"),
    _fixed(0x51, "i64.eq", "II:i"),
    _fixed(0x52, "i64.ne", "II:i"),
    _fixed(0x53, "i64.lt_s", "II:i"),
    _fixed(0x54, "i64.lt_u", "II:i"),
    _fixed(0x55, "i64.gt_s", "II:i"),
    _fixed(0x56, "i64.gt_u", "II:i"),
    _fixed(0x57, "i64.le_s", "II:i"),
    _fixed(0x58, "i64.le_u", "II:i"),
    _fixed(0x59, "i64.ge_s", "II:i"),
    _fixed(0x5A, "i64.ge_u", "II:i"),
    # --- float comparisons ---
    _fixed(0x5B, "f32.eq", "ff:i"),
    _fixed(0x5C, "f32.ne", "ff:i"),
    _fixed(0x5D, "f32.lt", "ff:i"),
    _fixed(0x5E, "f32.gt", "ff:i"),
    _fixed(0x5F, "f32.le", "ff:i"),
    _fixed(0x60, "f32.ge", "ff:i"),
    _fixed(0x61, "f64.eq", "FF:i"),
    _fixed(0x62, "f64.ne", "FF:i"),
    _fixed(0x63, "f64.lt", "FF:i"),
    _fixed(0x64, "f64.gt", "FF:i"),
    _fixed(0x65, "f64.le", "FF:i"),
    _fixed(0x66, "f64.ge", "FF:i"),
    # --- i32 arithmetic ---
    _fixed(0x67, "i32.clz", "i:i"),
    _fixed(0x68, "i32.ctz", "i:i"),
    _fixed(0x69, "i32.popcnt", "i:i"),
    _fixed(0x6A, "i32.add", "ii:i"),
    _fixed(0x6B, "i32.sub", "ii:i"),
    _fixed(0x6C, "i32.mul", "ii:i"),
    _fixed(0x6D, "i32.div_s", "ii:i"),
    _fixed(0x6E, "i32.div_u", "ii:i"),
    _fixed(0x6F, "i32.rem_s", "ii:i"),
    _fixed(0x70, "i32.rem_u", "ii:i"),
    _fixed(0x71, "i32.and", "ii:i"),
    _fixed(0x72, "i32.or", "ii:i"),
    _fixed(0x73, "i32.xor", "ii:i"),
    _fixed(0x74, "i32.shl", "ii:i"),
    _fixed(0x75, "i32.shr_s", "ii:i"),
    _fixed(0x76, "i32.shr_u", "ii:i"),
    _fixed(0x77, "i32.rotl", "ii:i"),
    _fixed(0x78, "i32.rotr", "ii:i"),
    # --- i64 arithmetic ---
    _fixed(0x79, "i64.clz", "I:I"),
    _fixed(0x7A, "i64.ctz", "I:I"),
    _fixed(0x7B, "i64.popcnt", "I:I"),
    _fixed(0x7C, "i64.add", "II:I"),
    _fixed(0x7D, "i64.sub", "II:I"),
    _fixed(0x7E, "i64.mul", "II:I"),
    _fixed(0x7F, "i64.div_s", "II:I"),
    _fixed(0x80, "i64.div_u", "II:I"),
    _fixed(0x81, "i64.rem_s", "II:I"),
    _fixed(0x82, "i64.rem_u", "II:I"),
    _fixed(0x83, "i64.and", "II:I"),
    _fixed(0x84, "i64.or", "II:I"),
    _fixed(0x85, "i64.xor", "II:I"),
    _fixed(0x86, "i64.shl", "II:I"),
    _fixed(0x87, "i64.shr_s", "II:I"),
    _fixed(0x88, "i64.shr_u", "II:I"),
    _fixed(0x89, "i64.rotl", "II:I"),
    _fixed(0x8A, "i64.rotr", "II:I"),
    # --- float arithmetic ---
    _fixed(0x8B, "f32.abs", "f:f"),
    _fixed(0x8C, "f32.neg", "f:f"),
    _fixed(0x8D, "f32.ceil", "f:f"),
    _fixed(0x8E, "f32.floor", "f:f"),
    _fixed(0x8F, "f32.trunc", "f:f"),
    _fixed(0x90, "f32.nearest", "f:f"),
    _fixed(0x91, "f32.sqrt", "f:f"),
    _fixed(0x92, "f32.add", "ff:f"),
    _fixed(0x93, "f32.sub", "ff:f"),
    _fixed(0x94, "f32.mul", "ff:f"),
    _fixed(0x95, "f32.div", "ff:f"),
    _fixed(0x96, "f32.min", "ff:f"),
    _fixed(0x97, "f32.max", "ff:f"),
    _fixed(0x98, "f32.copysign", "ff:f"),
    _fixed(0x99, "f64.abs", "F:F"),
    _fixed(0x9A, "f64.neg", "F:F"),
    _fixed(0x9B, "f64.ceil", "F:F"),
    _fixed(0x9C, "f64.floor", "F:F"),
    _fixed(0x9D, "f64.trunc", "F:F"),
    _fixed(0x9E, "f64.nearest", "F:F"),
    _fixed(0x9F, "f64.sqrt", "F:F"),
    _fixed(0xA0, "f64.add", "FF:F"),
    _fixed(0xA1, "f64.sub", "FF:F"),
    _fixed(0xA2, "f64.mul", "FF:F"),
    _fixed(0xA3, "f64.div", "FF:F"),
    _fixed(0xA4, "f64.min", "FF:F"),
    _fixed(0xA5, "f64.max", "FF:F"),
    _fixed(0xA6, "f64.copysign", "FF:F"),
    # --- conversions ---
    _fixed(0xA7, "i32.wrap_i64", "I:i"),
    _fixed(0xA8, "i32.trunc_f32_s", "f:i"),
    _fixed(0xA9, "i32.trunc_f32_u", "f:i"),
    _fixed(0xAA, "i32.trunc_f64_s", "F:i"),
    _fixed(0xAB, "i32.trunc_f64_u", "F:i"),
    _fixed(0xAC, "i64.extend_i32_s", "i:I"),
    _fixed(0xAD, "i64.extend_i32_u", "i:I"),
    _fixed(0xAE, "i64.trunc_f32_s", "f:I"),
    _fixed(0xAF, "i64.trunc_f32_u", "f:I"),
    _fixed(0xB0, "i64.trunc_f64_s", "F:I"),
    _fixed(0xB1, "i64.trunc_f64_u", "F:I"),
    _fixed(0xB2, "f32.convert_i32_s", "i:f"),
    _fixed(0xB3, "f32.convert_i32_u", "i:f"),
    _fixed(0xB4, "f32.convert_i64_s", "I:f"),
    _fixed(0xB5, "f32.convert_i64_u", "I:f"),
    _fixed(0xB6, "f32.demote_f64", "F:f"),
    _fixed(0xB7, "f64.convert_i32_s", "i:F"),
    _fixed(0xB8, "f64.convert_i32_u", "i:F"),
    _fixed(0xB9, "f64.convert_i64_s", "I:F"),
    _fixed(0xBA, "f64.convert_i64_u", "I:F"),
    _fixed(0xBB, "f64.promote_f32", "f:F"),
    _fixed(0xBC, "i32.reinterpret_f32", "f:i"),
    _fixed(0xBD, "i64.reinterpret_f64", "F:I"),
    _fixed(0xBE, "f32.reinterpret_i32", "i:f"),
    _fixed(0xBF, "f64.reinterpret_i64", "I:F"),
    # --- sign extension ---
    _fixed(0xC0, "i32.extend8_s", "i:i"),
    _fixed(0xC1, "i32.extend16_s", "i:i"),
    _fixed(0xC2, "i64.extend8_s", "I:I"),
    _fixed(0xC3, "i64.extend16_s", "I:I"),
    _fixed(0xC4, "i64.extend32_s", "I:I"),
    # --- saturating float-to-int ---
    _fixed(_fc(0), "i32.trunc_sat_f32_s", "f:i"),
    _fixed(_fc(1), "i32.trunc_sat_f32_u", "f:i"),
    _fixed(_fc(2), "i32.trunc_sat_f64_s", "F:i"),
    _fixed(_fc(3), "i32.trunc_sat_f64_u", "F:i"),
    _fixed(_fc(4), "i64.trunc_sat_f32_s", "f:I"),
    _fixed(_fc(5), "i64.trunc_sat_f32_u", "f:I"),
    _fixed(_fc(6), "i64.trunc_sat_f64_s", "F:I"),
    _fixed(_fc(7), "i64.trunc_sat_f64_u", "F:I"),
]

OPS_BY_CODE: dict[int, Op] = {op.code: op for op in _ROWS}
OPS_BY_NAME: dict[str, Op] = {op.name: op for op in _ROWS}

assert len(OPS_BY_CODE) == len(_ROWS) and len(OPS_BY_NAME) == len(_ROWS), "duplicate opcode row"
