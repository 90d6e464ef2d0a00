"""Unit tests of the binary decoder: LEB128, a hand-built module, errors, truncation."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasmformer.errors import MalformedModule
from wasmformer.wasm.decode import decode
from wasmformer.wasm.module import (
    Data,
    Export,
    GlobalType,
    Import,
    Limits,
    MemType,
    TableType,
)
from wasmformer.wasm.reader import Reader

# --- tiny encoders, written independently of the decoder ---

HEADER = b"\x00asm\x01\x00\x00\x00"
I32, I64, FUNCREF, EXTERNREF = 0x7F, 0x7E, 0x70, 0x6F
END = b"\x0b"


def uleb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def sleb(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        done = (n == 0 and not b & 0x40) or (n == -1 and b & 0x40)
        out.append(b | (0 if done else 0x80))
        if done:
            return bytes(out)


def vec(items: list[bytes]) -> bytes:
    return uleb(len(items)) + b"".join(items)


def name(s: str) -> bytes:
    raw = s.encode()
    return uleb(len(raw)) + raw


def section(section_id: int, payload: bytes) -> bytes:
    return bytes([section_id]) + uleb(len(payload)) + payload


def body(code: bytes, locals_: bytes = b"\x00") -> bytes:
    """A code entry: size, local groups (default none), code, end."""
    entry = locals_ + code + END
    return uleb(len(entry)) + entry


def one_func_module(code: bytes, locals_: bytes = b"\x00", extra_before_code: bytes = b"") -> bytes:
    """Type () -> (), one function with ``code`` as its body, a memory and a table."""
    return (
        HEADER
        + section(1, vec([b"\x60\x00\x00"]))
        + section(3, vec([b"\x00"]))
        + section(4, vec([bytes([FUNCREF, 0x00, 0x01])]))
        + section(5, vec([b"\x00\x01"]))
        + extra_before_code
        + section(10, vec([body(code, locals_)]))
    )


def reader(raw: bytes) -> Reader:
    return Reader(raw, where="test")


# --- LEB128 ---


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (b"\x00", 0),
        (b"\x7f", 127),
        (b"\x80\x01", 128),
        (b"\x80\x80\x80\x80\x00", 0),  # padded zero: 5 bytes is allowed
        (b"\xff\xff\xff\xff\x0f", 0xFFFF_FFFF),
    ],
)
def test_u32_accepts(raw: bytes, value: int) -> None:
    r = reader(raw)
    assert r.u32() == value
    assert r.at_end


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xff\xff\xff\x1f", "integer too large"),  # bit 32 set
        (b"\x80\x80\x80\x80\x10", "integer too large"),
        (b"\x80\x80\x80\x80\x80\x00", "integer representation too long"),
        (b"\x80\x80", "unexpected end"),
    ],
)
def test_u32_rejects(raw: bytes, message: str) -> None:
    with pytest.raises(MalformedModule, match=message):
        reader(raw).u32()


@pytest.mark.parametrize(
    ("raw", "bits", "value"),
    [
        (b"\x7f", 32, -1),
        (b"\x40", 32, -64),
        (b"\x3f", 32, 63),
        (b"\xff\xff\xff\xff\x07", 32, 2**31 - 1),
        (b"\x80\x80\x80\x80\x78", 32, -(2**31)),
        (b"\xff\xff\xff\xff\x7f", 32, -1),  # padded -1
        (b"\xff\xff\xff\xff\x0f", 33, 2**32 - 1),
        (b"\x80\x80\x80\x80\x70", 33, -(2**32)),
        (b"\xff" * 9 + b"\x00", 64, 2**63 - 1),
        (b"\x80" * 9 + b"\x7f", 64, -(2**63)),
    ],
)
def test_signed_accepts(raw: bytes, bits: int, value: int) -> None:
    r = reader(raw)
    assert r.signed(bits) == value
    assert r.at_end


@pytest.mark.parametrize(
    ("raw", "bits", "message"),
    [
        (b"\xff\xff\xff\xff\x0f", 32, "integer too large"),  # sign bit clear, unused bits set
        (b"\x80\x80\x80\x80\x70", 32, "integer too large"),  # sign bit clear, unused bits set
        (b"\xff\xff\xff\xff\x4f", 32, "integer too large"),
        (b"\xff\xff\xff\xff\x1f", 33, "integer too large"),
        (b"\xff" * 9 + b"\x01", 64, "integer too large"),
        (b"\x80" * 9 + b"\x7e", 64, "integer too large"),
        (b"\xff" * 10 + b"\x7f", 64, "integer representation too long"),
        (b"\x80\x80\x80\x80\x80\x00", 32, "integer representation too long"),
    ],
)
def test_signed_rejects(raw: bytes, bits: int, message: str) -> None:
    with pytest.raises(MalformedModule, match=message):
        reader(raw).signed(bits)


@given(st.integers(0, 2**32 - 1))
def test_u32_round_trip(n: int) -> None:
    assert reader(uleb(n)).u32() == n


@given(st.integers(-(2**63), 2**63 - 1))
def test_s64_round_trip(n: int) -> None:
    assert reader(sleb(n)).s64() == n


@given(st.integers(-(2**31), 2**31 - 1))
def test_s32_round_trip(n: int) -> None:
    assert reader(sleb(n)).s32() == n


def test_limits_flag_is_a_one_bit_leb() -> None:
    mem = lambda limits: HEADER + section(5, vec([limits]))  # noqa: E731
    assert decode(mem(b"\x01\x02\x03")).mems == (MemType(Limits(2, 3)),)
    with pytest.raises(MalformedModule, match="integer too large"):
        decode(mem(b"\x02\x00"))
    with pytest.raises(MalformedModule, match="integer representation too long"):
        decode(mem(b"\x81\x00\x00"))


# --- a hand-built module using every section ---


def full_module() -> bytes:
    types = section(1, vec([b"\x60\x01\x7f\x01\x7f", b"\x60\x00\x00"]))
    imports = section(2, vec([
        name("env") + name("f") + b"\x00" + uleb(1),
        name("env") + name("t") + b"\x01" + bytes([EXTERNREF, 0x01, 0x00, 0x05]),
        name("env") + name("m") + b"\x02" + b"\x00\x01",
        name("env") + name("g") + b"\x03" + bytes([I64, 0x00]),
    ]))
    funcs = section(3, vec([uleb(0), uleb(1)]))
    tables = section(4, vec([bytes([FUNCREF, 0x00, 0x02])]))
    globals_ = section(6, vec([bytes([I32, 0x01]) + b"\x41" + sleb(-5) + END]))
    exports = section(7, vec([name("run") + b"\x00" + uleb(1), name("mem") + b"\x02" + uleb(0)]))
    start = section(8, uleb(2))
    elems = section(9, vec([
        b"\x00" + b"\x41\x00" + END + vec([uleb(1), uleb(2)]),  # kind 0: active, table 0, funcidx
        b"\x05" + bytes([FUNCREF]) + vec([b"\xd0\x70" + END]),  # kind 5: passive, exprs
        b"\x03\x00" + vec([uleb(2)]),  # kind 3: declarative funcidx
    ]))
    data_count = section(12, uleb(2))
    codes = section(10, vec([
        body(b"\x20\x00\x41" + sleb(1000) + b"\x6a", locals_=vec([uleb(2) + bytes([I64])])),
        body(b"\x02\x40\x41\x00\x04\x7f\x41\x01\x05\x41\x02\x0b\x1a\x0b\xfc\x09\x01"),
    ]))
    datas = section(11, vec([
        b"\x00\x41\x10" + END + vec([b"h", b"i"]),  # active, memory 0
        b"\x01" + vec([b"!"]),  # passive
    ]))
    custom = section(0, name("note") + b"anything")
    return (HEADER + custom + types + imports + funcs + tables + globals_ + exports + start
            + elems + data_count + codes + custom + datas + custom)


def test_full_module_decodes() -> None:
    m = decode(full_module())
    assert [(t.params, t.results) for t in m.types] == [(("i32",), ("i32",)), ((), ())]
    assert m.imports == (
        Import("env", "f", "func", 1),
        Import("env", "t", "table", TableType("externref", Limits(0, 5))),
        Import("env", "m", "memory", MemType(Limits(1))),
        Import("env", "g", "global", GlobalType("i64", False)),
    )
    assert m.tables == (TableType("funcref", Limits(2)),)
    assert m.globals[0].type == GlobalType("i32", True)
    assert [(i.name, i.args) for i in m.globals[0].init] == [("i32.const", (-5,))]
    assert m.exports == (Export("run", "func", 1), Export("mem", "memory", 0))
    assert m.start == 2
    assert m.data_count == 2
    assert m.customs == (("note", b"anything"),) * 3

    e0, e1, e2 = m.elems
    assert (e0.mode, e0.table, e0.reftype) == ("active", 0, "funcref")
    assert [[(i.name, i.args) for i in expr] for expr in e0.init] == [[("ref.func", (1,))], [("ref.func", (2,))]]
    assert [(i.name, i.args) for i in e0.offset] == [("i32.const", (0,))]
    assert (e1.mode, e1.reftype, e1.offset) == ("passive", "funcref", None)
    assert [(i.name, i.args) for i in e1.init[0]] == [("ref.null", ("funcref",))]
    assert e2.mode == "declarative"

    f0, f1 = m.funcs
    assert f0.type_index == 0 and f0.locals == ("i64", "i64")
    assert [(i.name, i.args) for i in f0.body] == [
        ("local.get", (0,)), ("i32.const", (1000,)), ("i32.add", ())]
    assert [i.name for i in f1.body] == [
        "block", "i32.const", "if", "i32.const", "else", "i32.const", "end", "drop", "end", "data.drop"]
    assert f1.body[0].args == (None,) and f1.body[2].args == ("i32",)
    assert f1.body[-1].args == (1,)

    assert m.datas == (
        Data("active", b"hi", 0, m.datas[0].offset),
        Data("passive", b"!"),
    )
    assert [i.args for i in m.datas[0].offset] == [(16,)]


def test_instruction_offsets_are_module_offsets() -> None:
    data = full_module()
    m = decode(data)
    for func in m.funcs:
        for instr in func.body:
            first_byte = instr.op.code >> 8 if instr.op.code > 0xFF else instr.op.code
            assert data[instr.offset] == first_byte
    first = m.funcs[0]
    assert data[first.body[0].offset : first.body[0].offset + 2] == b"\x20\x00"  # local.get 0
    # The entry starts with its size; the body follows the size and the local groups.
    size = data[first.offset]
    assert data[first.offset + size] == END[0]


def test_every_element_and_data_kind() -> None:
    expr0 = b"\x41\x00" + END
    elems = [
        b"\x00" + expr0 + vec([uleb(0)]),
        b"\x01\x00" + vec([uleb(0)]),
        b"\x02" + uleb(0) + expr0 + b"\x00" + vec([uleb(0)]),
        b"\x03\x00" + vec([uleb(0)]),
        b"\x04" + expr0 + vec([b"\xd2\x00" + END]),
        b"\x05\x6f" + vec([b"\xd0\x6f" + END]),
        b"\x06" + uleb(0) + expr0 + b"\x70" + vec([b"\xd2\x00" + END]),
        b"\x07\x70" + vec([b"\xd2\x00" + END]),
    ]
    datas = [b"\x00" + expr0 + vec([b"a"]), b"\x01" + vec([b"b"]), b"\x02\x00" + expr0 + vec([b"c"])]
    m = decode(one_func_module(b"", extra_before_code=section(9, vec(elems)))
               + section(11, vec(datas)))
    assert [e.mode for e in m.elems] == ["active", "passive", "active", "declarative"] * 2
    assert [e.reftype for e in m.elems] == ["funcref"] * 5 + ["externref", "funcref", "funcref"]
    assert all(e.init and e.init[0][0].name in ("ref.func", "ref.null") for e in m.elems)
    assert [(d.mode, d.init) for d in m.datas] == [("active", b"a"), ("passive", b"b"), ("active", b"c")]
    with pytest.raises(MalformedModule, match="malformed elements segment kind"):
        decode(one_func_module(b"", extra_before_code=section(9, vec([b"\x08\x00"]))))
    with pytest.raises(MalformedModule, match="malformed element kind"):
        decode(one_func_module(b"", extra_before_code=section(9, vec([b"\x01\x01\x00"]))))
    with pytest.raises(MalformedModule, match="malformed data segment kind"):
        decode(HEADER + section(11, vec([b"\x03"])))


@pytest.mark.parametrize(
    ("code", "args"),
    [
        (b"\x02\x40\x0b", (None,)),
        (b"\x02\x7e\x42\x00\x0b\x1a", ("i64",)),
        (b"\x02\x6f\xd0\x6f\x0b\x1a", ("externref",)),
        (b"\x02\x00\x0b", (0,)),  # type index 0 as s33
        (b"\x02\x80\x00\x0b", (0,)),  # padded s33
    ],
)
def test_block_types(code: bytes, args: tuple) -> None:
    assert decode(one_func_module(code)).funcs[0].body[0].args == args


def test_negative_block_type_index_is_malformed() -> None:
    with pytest.raises(MalformedModule, match="malformed block type"):
        decode(one_func_module(b"\x02\x80\x7f\x0b"))  # s33 -128


def test_immediates() -> None:
    code = (
        b"\x41\x00\x11\x00\x01"  # call_indirect type 0, table 1 (a u32 since 2.0)
        + b"\x41\x00\x0e\x02\x00\x01\x02"  # br_table [0 1] 2
        + b"\x41\x00\x28\x02\x80\x01"  # i32.load align=2 offset=128
        + b"\x43\x00\x00\x80\x3f\x44" + bytes(7) + b"\xf0"  # f32.const 1.0, f64.const
        + b"\x1c\x01\x7e"  # select (result i64)
        + b"\xfc\x80\x00"  # i32.trunc_sat_f32_s with a padded sub-opcode
        + b"\x3f\x00\x40\x00"  # memory.size, memory.grow
        + b"\xfc\x0a\x00\x00\xfc\x0b\x00"  # memory.copy, memory.fill
        + b"\xfc\x0c\x01\x00\xfc\x0e\x00\x01"  # table.init 1 0, table.copy 0 1
    )
    got = [(i.name, i.args) for i in decode(one_func_module(code)).funcs[0].body]
    assert got == [
        ("i32.const", (0,)), ("call_indirect", (0, 1)),
        ("i32.const", (0,)), ("br_table", ((0, 1), 2)),
        ("i32.const", (0,)), ("i32.load", (2, 128)),
        ("f32.const", (0x3F800000,)), ("f64.const", (0xF000000000000000,)),
        ("select_t", (("i64",),)),
        ("i32.trunc_sat_f32_s", ()),
        ("memory.size", ()), ("memory.grow", ()),
        ("memory.copy", ()), ("memory.fill", ()),
        ("table.init", (1, 0)), ("table.copy", (0, 1)),
    ]


# --- errors name what and where ---


def test_illegal_opcode_names_function_and_offset() -> None:
    data = one_func_module(b"\x01\x01\xf3")
    offset = data.rindex(b"\xf3")
    with pytest.raises(MalformedModule) as caught:
        decode(data)
    assert caught.value.message.startswith("illegal opcode 0xf3")
    assert caught.value.where == f"code section, function 0, byte offset {offset}"


def test_function_index_counts_imports() -> None:
    data = (HEADER + section(1, vec([b"\x60\x00\x00"]))
            + section(2, vec([name("a") + name("b") + b"\x00\x00"]))
            + section(3, vec([b"\x00"])) + section(10, vec([body(b"\xff")])))
    with pytest.raises(MalformedModule, match="illegal opcode 0xff") as caught:
        decode(data)
    assert "function 1," in caught.value.where


def test_simd_is_reported_as_unsupported() -> None:
    data = one_func_module(b"\xfd\x0c" + bytes(16))
    with pytest.raises(MalformedModule, match="SIMD") as caught:
        decode(data)
    simd_at = data.index(b"\xfd")
    assert caught.value.where.endswith(f"byte offset {simd_at}")
    with pytest.raises(MalformedModule, match="v128"):
        decode(one_func_module(b"", locals_=vec([b"\x01\x7b"])))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "unexpected end"),
        (b"\x00asm\x02\x00\x00\x00", "unknown binary version"),
        (b"\x00ASM\x01\x00\x00\x00", "magic header not detected"),
        (HEADER + b"\x0d\x00", "malformed section id"),
        (HEADER + b"\x01\x05\x00", "length out of bounds"),
        (HEADER + section(1, b"\x00\x00"), "section size mismatch"),
        (HEADER + section(5, b"\x00") + section(4, b"\x00"), "unexpected content after last section"),
        (HEADER + section(8, b"\x00") + section(8, b"\x00"), "unexpected content after last section"),
        (HEADER + section(10, b"\x00") + section(12, b"\x00"), "unexpected content after last section"),
        (HEADER + section(0, b"\x02\xc0\x80"), "malformed UTF-8 encoding"),  # overlong NUL
        (HEADER + section(0, b"\x03\xed\xa0\x80"), "malformed UTF-8 encoding"),  # surrogate
        (HEADER + section(0, b"\x04\xf4\x90\x80\x80"), "malformed UTF-8 encoding"),  # > U+10FFFF
        (HEADER + section(2, vec([name("a") + name("b") + b"\x04"])), "malformed import kind"),
        (HEADER + section(7, vec([name("a") + b"\x04\x00"])), "malformed export kind"),
        (HEADER + section(6, vec([b"\x7f\x02\x41\x00\x0b"])), "malformed mutability"),
        (HEADER + section(4, vec([b"\x7f\x00\x00"])), "malformed reference type"),
        (HEADER + section(1, vec([b"\x61\x00\x00"])), "malformed function type"),
        (HEADER + section(1, vec([b"\x60\x01\x40\x00"])), "malformed value type"),
        (HEADER + section(3, vec([b"\x00"])), "function and code section have inconsistent lengths"),
        (HEADER + section(10, vec([body(b"")])), "function and code section have inconsistent lengths"),
        (HEADER + section(12, b"\x01"), "data count and data section have inconsistent lengths"),
        (HEADER + section(12, b"\x01") + section(11, b"\x00"),
         "data count and data section have inconsistent lengths"),
        (HEADER + section(6, vec([b"\x7f\x00\x41\x00"])), "unexpected end of section or function"),
    ],
)
def test_malformed_messages(data: bytes, message: str) -> None:
    with pytest.raises(MalformedModule) as caught:
        decode(data)
    assert caught.value.message.startswith(message), str(caught.value)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (b"\x3f\x01", "zero byte expected"),
        (b"\x41\x00\x40\x80\x00", "zero byte expected"),  # a padded zero is not the zero byte
        (b"\xfc\x0a\x00\x01", "zero byte expected"),
        (b"\x05", "END opcode expected"),  # else outside if
        (b"\x02\x40\x05\x0b", "END opcode expected"),  # else inside a block
        (b"\x04\x40\x05\x05\x0b", "END opcode expected"),  # two elses
        (b"\x02\x40", "unexpected end"),  # body's final end closes the block, no end left
        (b"\xfc\x12", "illegal opcode 0xfc 18"),
        (b"\xfc\x80\x02", "illegal opcode 0xfc 256"),
        (b"\xd0\x7f", "malformed reference type"),
        (b"\x41\x80\x80\x80\x80\x10", "integer too large"),
    ],
)
def test_malformed_bodies(code: bytes, message: str) -> None:
    with pytest.raises(MalformedModule) as caught:
        decode(one_func_module(code))
    assert caught.value.message.startswith(message), str(caught.value)
    assert "code section, function 0" in caught.value.where


def test_data_count_required_by_memory_init_and_data_drop() -> None:
    for code in (b"\x41\x00\x41\x00\x41\x00\xfc\x08\x00\x00", b"\xfc\x09\x00"):
        with pytest.raises(MalformedModule, match="data count section required"):
            decode(one_func_module(code) + section(11, vec([b"\x01\x00"])))
        with_count = one_func_module(code, extra_before_code=section(12, b"\x01"))
        assert decode(with_count + section(11, vec([b"\x01\x00"]))).data_count == 1


def test_locals() -> None:
    groups = vec([uleb(2) + bytes([I32]), uleb(0) + bytes([I64]), uleb(1) + b"\x7c"])
    assert decode(one_func_module(b"", locals_=groups)).funcs[0].locals == ("i32", "i32", "f64")
    too_many = vec([uleb(2**32 - 1) + bytes([I32]), uleb(1) + bytes([I64])])
    with pytest.raises(MalformedModule, match="too many locals"):
        decode(one_func_module(b"", locals_=too_many))
    beyond_ours = vec([uleb(10**6) + bytes([I32])])
    with pytest.raises(MalformedModule, match="too many locals.*implementation"):
        decode(one_func_module(b"", locals_=beyond_ours))


def test_custom_sections_anywhere() -> None:
    custom = section(0, name("x"))
    m = decode(HEADER + custom + section(1, vec([b"\x60\x00\x00"])) + custom + custom)
    assert len(m.customs) == 3 and len(m.types) == 1
    with pytest.raises(MalformedModule, match="length out of bounds"):
        decode(HEADER + section(0, b"\x05ab"))


# --- robustness: every malformed input is MalformedModule, never another exception ---


def _section_ends(data: bytes) -> set[int]:
    """Byte offsets where a section ends (a prefix ending there may be a valid module)."""
    ends, pos = {len(HEADER)}, len(HEADER)
    while pos < len(data):
        r = Reader(data, pos + 1)
        size = r.u32()
        pos = r.pos + size
        ends.add(pos)
    return ends


def test_every_truncation_is_malformed() -> None:
    data = full_module()
    boundaries = _section_ends(data)
    for n in range(len(data)):
        if n in boundaries:
            try:  # a section boundary: fine as long as only MalformedModule can come out
                decode(data[:n])
            except MalformedModule:
                pass
            continue
        with pytest.raises(MalformedModule):
            decode(data[:n])


def test_random_corruptions_raise_only_malformed() -> None:
    rng = random.Random(20240501)
    base = full_module()
    for _ in range(3000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.choice((0x00, 0x01, 0x0B, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        try:
            decode(bytes(data))
        except MalformedModule:
            pass
