"""The machine: semantics edge cases, lowering, the reference executor, instantiation, WASI.

Fuel (executed-instruction) counts are compared with wasmtime's on small
programs that exercise every rule of the count.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from wasmformer.errors import BudgetExceeded, LinkError, Trap
from wasmformer.machine import (
    NUMERIC,
    HostLimits,
    Instance,
    ProcExit,
    WasiHost,
    lower,
)
from wasmformer.machine.semantics import LOADS, STORES, sign_extend, store_bits, to_signed
from wasmformer.wasm import load_module
from wasmformer.wasm.opcodes import OPS_BY_NAME

I32_MIN, I64_MIN = 0x8000_0000, 0x8000_0000_0000_0000
M32, M64 = 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF


def module(wat: str):
    return load_module(wasmtime.wat2wasm(wat))


def instance(wat: str, **kw) -> Instance:
    return Instance(module(wat), **kw)


def trap_reason(fn, *args) -> str:
    with pytest.raises(Trap) as info:
        fn(*args)
    return info.value.reason


# --- semantics: the table itself ---


def test_division_traps_and_overflow():
    for t, m, lo in (("i32", M32, I32_MIN), ("i64", M64, I64_MIN)):
        for op in ("div_s", "div_u", "rem_s", "rem_u"):
            assert trap_reason(NUMERIC[f"{t}.{op}"], 7, 0) == "integer divide by zero"
        assert trap_reason(NUMERIC[f"{t}.div_s"], lo, m) == "integer overflow"
        assert NUMERIC[f"{t}.rem_s"](lo, m) == 0  # INT_MIN rem -1 does not trap
        assert NUMERIC[f"{t}.div_u"](lo, m) == 0


def test_signed_division_rounds_toward_zero():
    div, rem = NUMERIC["i32.div_s"], NUMERIC["i32.rem_s"]
    assert to_signed(div(-7 & M32, 2), 32) == -3
    assert to_signed(rem(-7 & M32, 2), 32) == -1
    assert to_signed(div(7, -2 & M32), 32) == -3
    assert to_signed(rem(7, -2 & M32), 32) == 1
    assert to_signed(NUMERIC["i64.div_s"](-7 & M64, -2 & M64), 64) == 3


def test_shift_counts_are_taken_modulo_the_width():
    assert NUMERIC["i32.shl"](1, 33) == 2
    assert NUMERIC["i32.shr_u"](0x8000_0000, 63) == 1
    assert NUMERIC["i32.shr_s"](0x8000_0000, 31) == M32
    assert NUMERIC["i64.shl"](1, 64) == 1
    assert NUMERIC["i64.shr_s"](I64_MIN, 65) == 0xC000_0000_0000_0000
    assert NUMERIC["i32.shl"](5, 32) == 5


def test_rotations():
    assert NUMERIC["i32.rotl"](0x8000_0001, 1) == 3
    assert NUMERIC["i32.rotr"](3, 1) == 0x8000_0001
    assert NUMERIC["i32.rotl"](0x1234_5678, 36) == 0x2345_6781
    assert NUMERIC["i64.rotr"](1, 64) == 1
    assert NUMERIC["i64.rotl"](I64_MIN, 1) == 1


def test_bit_counts_of_zero_and_full():
    for t, n in (("i32", 32), ("i64", 64)):
        assert NUMERIC[f"{t}.clz"](0) == n
        assert NUMERIC[f"{t}.ctz"](0) == n
        assert NUMERIC[f"{t}.popcnt"](0) == 0
        full = (1 << n) - 1
        assert NUMERIC[f"{t}.clz"](full) == 0
        assert NUMERIC[f"{t}.ctz"](1 << (n - 1)) == n - 1
        assert NUMERIC[f"{t}.popcnt"](full) == n


def test_comparisons_are_signed_or_unsigned():
    assert NUMERIC["i32.lt_s"](M32, 0) == 1
    assert NUMERIC["i32.lt_u"](M32, 0) == 0
    assert NUMERIC["i64.ge_s"](I64_MIN, 0) == 0
    assert NUMERIC["i64.eqz"](0) == 1


def test_width_changes_and_sign_extension():
    assert NUMERIC["i32.wrap_i64"](0x1_2345_6789) == 0x2345_6789
    assert NUMERIC["i64.extend_i32_s"](0x8000_0000) == 0xFFFF_FFFF_8000_0000
    assert NUMERIC["i64.extend_i32_u"](0x8000_0000) == 0x8000_0000
    assert NUMERIC["i32.extend8_s"](0x80) == 0xFFFF_FF80
    assert NUMERIC["i32.extend8_s"](0x1_7F) == 0x7F
    assert NUMERIC["i32.extend16_s"](0x8000) == 0xFFFF_8000
    assert NUMERIC["i64.extend32_s"](0x8000_0000) == 0xFFFF_FFFF_8000_0000
    assert sign_extend(0xFF, 8, 64) == M64


def test_load_and_store_facts():
    assert LOADS["i64.load32_s"][0] == 4 and LOADS["i64.load32_s"][1](0x8000_0000) == (
        0xFFFF_FFFF_8000_0000)
    assert LOADS["i32.load16_u"][1] is None
    assert STORES["i64.store16"] == 2
    assert store_bits(0x1234_5678, 1) == 0x78


# --- loads and stores through memory, every width and signedness ---

MEMORY_WAT = """(module (memory 1 3)
  (func (export "store64") (param i32 i64) (i64.store (local.get 0) (local.get 1)))
  %s)"""
LOAD_FUNCS = "\n".join(
    f'(func (export "{name}") (param i32) (result {name[:3]}) ({name} (local.get 0)))'
    for name in LOADS
) + "\n" + "\n".join(
    f'(func (export "{name}") (param i32 {name[:3]}) ({name} (local.get 0) (local.get 1)))'
    for name in STORES
)


def test_every_load_and_store_width_matches_wasmtime():
    wat = MEMORY_WAT % LOAD_FUNCS
    ours = instance(wat)
    store = wasmtime.Store()
    theirs = wasmtime.Instance(store, wasmtime.Module(store.engine, wat), []).exports(store)
    pattern = 0x8182_83F4_F5F6_F7F8
    for name in LOADS:
        for address in (0, 1, 5, 65528):
            ours.invoke("store64", [address, pattern])
            theirs["store64"](store, address, to_signed(pattern, 64))
            assert ours.invoke(name, [address]) == [theirs[name](store, address)], name
    for name in STORES:
        ours.invoke(name, [8, -2])
        theirs[name](store, 8, -2)
        assert ours.invoke("i64.load", [8]) == [theirs["i64.load"](store, 8)], name


def test_out_of_bounds_accesses_trap():
    inst = instance(MEMORY_WAT % LOAD_FUNCS)
    assert inst.invoke("i64.load", [65536 - 8]) == [0]
    assert trap_reason(inst.invoke, "i64.load", [65536 - 7]) == "out of bounds memory access"
    assert trap_reason(inst.invoke, "i32.load8_u", [65536]) == "out of bounds memory access"
    assert trap_reason(inst.invoke, "i32.load8_u", [-1]) == "out of bounds memory access"


def test_memory_grow_honours_the_maximum_and_the_host_limit():
    wat = """(module (memory 1 %s)
      (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
      (func (export "size") (result i32) (memory.size))
      (func (export "last") (result i32) (i32.load8_u (i32.const 131071))))"""
    inst = instance(wat % "3")
    assert inst.invoke("grow", [1]) == [1]
    assert inst.invoke("size") == [2]
    assert inst.invoke("last") == [0]
    assert inst.invoke("grow", [2]) == [-1]
    assert inst.invoke("grow", [1]) == [2]
    assert inst.invoke("grow", [0]) == [3]
    assert inst.invoke("grow", [-1]) == [-1]
    small = instance(wat % "", limits=HostLimits(max_memory_pages=2))
    assert small.invoke("grow", [2]) == [-1]
    assert small.invoke("grow", [1]) == [1]
    with pytest.raises(LinkError, match="host limit"):
        instance("(module (memory 3))", limits=HostLimits(max_memory_pages=2))


# --- control: branches unwind the operand stack ---


def test_branches_unwind_values_left_on_the_stack():
    inst = instance("""(module
      (func (export "br") (result i32)
        (i32.const 1) (i32.const 2)
        (block (result i32) (i32.const 3) (i32.const 4) (i32.const 5) (br 0))
        (i32.add) (i32.add))
      (func (export "br_if") (param i32) (result i32)
        (block (result i32) (i32.const 10) (i32.const 20) (i32.const 30)
          (br_if 0 (local.get 0)) (drop) (drop)))
      (func (export "two_levels") (result i64)
        (block (result i64) (i64.const 9)
          (block (i64.const 1) (i64.const 2) (i64.const 7) (br 1)) (drop) (i64.const 0)))
      (func (export "return_deep") (result i32 i32)
        (i32.const 1) (block (i32.const 2) (i32.const 3) (i32.const 4) (return)) (unreachable)))""")
    assert inst.invoke("br") == [8]
    assert inst.invoke("br_if", [1]) == [30]
    assert inst.invoke("br_if", [0]) == [10]
    assert inst.invoke("two_levels") == [7]
    assert inst.invoke("return_deep") == [3, 4]


def test_multi_value_blocks_loops_and_functions():
    inst = instance("""(module
      (type $pair (func (param i32 i32) (result i32 i32)))
      (func $swap (param i32 i32) (result i32 i32) (local.get 1) (local.get 0))
      (func (export "swap") (param i32 i32) (result i32 i32)
        (call $swap (local.get 0) (local.get 1)))
      (func (export "block") (result i32 i32 i32)
        (i32.const 1) (i32.const 2) (block (type $pair) (call $swap)) (i32.const 3))
      (func (export "if") (param i32) (result i32 i32)
        (i32.const 5) (i32.const 6)
        (if (type $pair) (local.get 0) (then (call $swap)) (else (drop) (i32.const 0))))
      (func (export "sum_to") (param i32) (result i32)
        (i32.const 0) (local.get 0)
        (loop (param i32 i32) (result i32)
          (local.set 0) (local.get 0) (i32.add)
          (local.get 0) (i32.const 1) (i32.sub)
          (local.tee 0) (local.get 0) (br_if 0) (drop))))""")
    assert inst.invoke("swap", [1, 2]) == [2, 1]
    assert inst.invoke("block") == [2, 1, 3]
    assert inst.invoke("if", [1]) == [6, 5]
    assert inst.invoke("if", [0]) == [5, 0]
    assert inst.invoke("sum_to", [100]) == [5050]


def test_br_table_picks_the_default_past_the_end():
    inst = instance("""(module (func (export "f") (param i32) (result i32)
      (block (block (block (block (br_table 0 1 2 3 (local.get 0)))
        (return (i32.const 10))) (return (i32.const 11))) (return (i32.const 12)))
      (i32.const 13)))""")
    assert [inst.invoke("f", [i])[0] for i in (0, 1, 2, 3, 4, -1)] == [10, 11, 12, 13, 13, 13]


def test_callee_locals_are_zeroed_and_recursion_works():
    inst = instance("""(module
      (func $g (result i32) (local i32 i64) (local.get 0) (local.set 0 (i32.const 5)))
      (func (export "twice") (result i32) (call $g) (call $g) (i32.add))
      (func $fac (export "fac") (param i64) (result i64)
        (if (result i64) (i64.eqz (local.get 0)) (then (i64.const 1))
          (else (i64.mul (local.get 0) (call $fac (i64.sub (local.get 0) (i64.const 1))))))))""")
    assert inst.invoke("twice") == [0]
    assert inst.invoke("fac", [20]) == [2432902008176640000]
    assert inst.invoke("fac", [21]) == [to_signed(51090942171709440000 % 2**64, 64)]


def test_call_depth_is_limited():
    wat = '(module (func $f (export "f") (param i32) (result i32) (call $f (local.get 0))))'
    inst = instance(wat, limits=HostLimits(max_call_depth=100))
    assert trap_reason(inst.invoke, "f", [0]) == "call stack exhausted"
    counter = instance("""(module (func $d (export "d") (param i32) (result i32)
      (if (result i32) (local.get 0) (then (i32.add (i32.const 1)
        (call $d (i32.sub (local.get 0) (i32.const 1))))) (else (i32.const 0)))))""",
        limits=HostLimits(max_call_depth=100))
    assert counter.invoke("d", [100]) == [100]
    assert trap_reason(counter.invoke, "d", [101]) == "call stack exhausted"


def test_call_indirect_checks():
    inst = instance("""(module
      (type $v_i (func (result i32))) (type $i_i (func (param i32) (result i32)))
      (table 4 funcref)
      (elem (i32.const 0) $seven $inc)
      (func $seven (type $v_i) (i32.const 7))
      (func $inc (type $i_i) (i32.add (local.get 0) (i32.const 1)))
      (func (export "call") (param i32) (result i32) (call_indirect (type $v_i) (local.get 0))))""")
    assert inst.invoke("call", [0]) == [7]
    assert trap_reason(inst.invoke, "call", [1]) == "indirect call type mismatch"
    assert trap_reason(inst.invoke, "call", [2]).startswith("uninitialized element")
    assert trap_reason(inst.invoke, "call", [4]).startswith("undefined element")


def test_unreachable_and_unsupported_float_instructions():
    inst = instance("""(module
      (func (export "u") (unreachable))
      (func (export "f") (result i32) (i32.trunc_f64_s (f64.add (f64.const 1) (f64.const 2))))
      (func (export "dead_float") (result i32) (return (i32.const 4)) (f64.const 1) (drop)))""")
    assert trap_reason(inst.invoke, "u") == "unreachable"
    reason = trap_reason(inst.invoke, "f")
    assert reason.startswith("unsupported: f64.const at func 1 +0x"), reason
    assert inst.invoke("dead_float") == [4]


# --- lowering ---


def test_lowering_removes_structure_and_resolves_branches():
    program = lower(module("""(module (func (param i32) (result i32)
      (block (result i32) (i32.const 1) (i32.const 2) (br_if 0 (local.get 0)) (drop))))"""))
    ops = [(i.op, i.args, i.fuel) for i in program.code]
    assert ops == [
        ("enter", ((),), 1),
        ("i32.const", (1,), 1),
        ("i32.const", (2,), 1),
        ("local.get", (0,), 1),
        ("br_if", (6, 1, 1), 1),  # to the end of the block, keeping 1 value and dropping 1
        ("drop", (), 0),
        ("return", (1, 0), 0),
    ]
    assert program.funcs[0].entry == 0 and program.funcs[0].end == 7
    assert program.code[4].origin == "br_if" and program.code[4].where.startswith("func 0 +0x")


def test_numeric_instructions_lower_one_for_one():
    program = lower(module("""(module (func (result i64)
      (i64.extend_i32_s (i32.wrap_i64 (i64.clz (i64.const -1))))
      (drop (i32.add (i32.const -1) (i32.const 2)))))"""))
    ops = [i.op for i in program.code]
    assert ops == ["enter", "i64.const", "i64.clz", "i32.wrap_i64", "i64.extend_i32_s",
                   "i32.const", "i32.const", "i32.add", "drop", "return"]
    assert program.code[1].args == (2**64 - 1,)  # constants are stored unsigned


# --- instantiation and state ---


def test_state_persists_and_values_cross_as_signed_ints():
    inst = instance("""(module
      (global $n (export "n") (mut i64) (i64.const -5))
      (func (export "bump") (param i64) (result i64)
        (global.set $n (i64.add (global.get $n) (local.get 0))) (global.get $n)))""")
    assert inst.invoke("bump", [1]) == [-4]
    assert inst.invoke("bump", [2**64 - 1]) == [-5]  # unsigned arguments are accepted
    assert inst.global_value("n") == -5


def test_segments_initialise_memory_and_tables():
    inst = instance("""(module (memory 1) (data (i32.const 16) "\\2a\\00\\00\\00")
      (table 2 funcref) (elem (i32.const 1) $k) (func $k (result i32) (i32.const 9))
      (func (export "get") (result i32) (i32.load (i32.const 16)))
      (func (export "k") (result i32) (call_indirect (result i32) (i32.const 1))))""")
    assert inst.invoke("get") == [42]
    assert inst.invoke("k") == [9]


def test_out_of_bounds_segments_trap_at_instantiation():
    with pytest.raises(Trap, match="out of bounds memory access"):
        instance('(module (memory 1) (data (i32.const 65535) "ab"))')
    with pytest.raises(Trap, match="out of bounds table access"):
        instance("(module (table 1 funcref) (elem (i32.const 1) $f) (func $f))")


def test_start_function_runs_at_instantiation():
    inst = instance("""(module (global $g (mut i32) (i32.const 0))
      (func $s (global.set $g (i32.const 77))) (start $s)
      (func (export "g") (result i32) (global.get $g)))""")
    assert inst.invoke("g") == [77]


def test_missing_imports_are_link_errors():
    with pytest.raises(LinkError, match="unknown import: env.f"):
        instance('(module (import "env" "f" (func)))')
    with pytest.raises(LinkError, match="unknown import: wasi_snapshot_preview1.fd_write"):
        instance('(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32))))')


def test_step_budget():
    inst = instance('(module (func (export "spin") (loop (br 0))))')
    with pytest.raises(BudgetExceeded, match="step budget of 1000"):
        inst.invoke("spin", max_steps=1000)
    assert inst.last_instructions == 1000


# --- fuel: the executed-instruction count, as wasmtime counts it ---

FUEL_PROGRAMS = {
    "empty": ("(func (export \"f\"))", []),
    "nop_drop": ("(func (export \"f\") nop (drop (i32.const 1)) nop)", []),
    "blocks": ("(func (export \"f\") (block (loop (block nop))))", []),
    "if_else": ("(func (export \"f\") (param i32) (result i32) (if (result i32) (local.get 0)"
                " (then (i32.const 1)) (else (i32.const 2))))", [0]),
    "if_no_else": ("(func (export \"f\") (param i32) (if (local.get 0) (then nop)))", [1]),
    "return": ("(func (export \"f\") (result i32) (block (return (i32.const 5))) (i32.const 6))", []),
    "br_if_loop": ("(func (export \"f\") (result i32) (local i32) (loop $l (local.set 0 (i32.add"
                   " (local.get 0) (i32.const 1))) (br_if $l (i32.lt_u (local.get 0) (i32.const 10))))"
                   " (local.get 0))", []),
    "br_table": ("(func (export \"f\") (param i32) (block (block (block (br_table 0 1 2"
                 " (local.get 0))))))", [7]),
    "calls": ("(func $g (param i32) (result i32) (i32.mul (local.get 0) (i32.const 2)))"
              " (type $t (func (param i32) (result i32))) (table 1 funcref) (elem (i32.const 0) $g)"
              " (func (export \"f\") (result i32) (call $g (call_indirect (type $t) (i32.const 3)"
              " (i32.const 0))))", []),
    "select_globals": ("(global $g (mut i32) (i32.const 1)) (func (export \"f\") (result i32)"
                       " (global.set $g (select (i32.const 1) (i32.const 2) (global.get $g)))"
                       " (global.get $g))", []),
    "bulk_memory": ("(memory 1) (data \"abcdefgh\") (func (export \"f\")"
                    " (memory.fill (i32.const 0) (i32.const 7) (i32.const 100))"
                    " (memory.copy (i32.const 200) (i32.const 0) (i32.const 50))"
                    " (memory.init 0 (i32.const 300) (i32.const 1) (i32.const 5)) (data.drop 0))", []),
    "grow": ("(memory 1 10) (func (export \"f\") (result i32) (drop (memory.grow (i32.const 3)))"
             " (drop (memory.grow (i32.const 100))) (drop (memory.grow (i32.const 1000)))"
             " (memory.size))", []),
    "tables": ("(table 2 funcref) (func $z) (elem func $z $z $z) (func (export \"f\") (result i32)"
               " (drop (table.grow (ref.null func) (i32.const 5))) (table.fill (i32.const 0)"
               " (ref.func $z) (i32.const 4)) (table.copy (i32.const 1) (i32.const 0) (i32.const 3))"
               " (table.init 0 (i32.const 2) (i32.const 0) (i32.const 3)) (elem.drop 0)"
               " (table.set (i32.const 0) (table.get (i32.const 1))) (table.size))", []),
}


def wasmtime_fuel(wat: str, args: list) -> tuple[list, int]:
    config = wasmtime.Config()
    config.consume_fuel = True
    store = wasmtime.Store(wasmtime.Engine(config))
    store.set_fuel(10**9)
    inst = wasmtime.Instance(store, wasmtime.Module(store.engine, wat), [])
    before = store.get_fuel()
    result = inst.exports(store)["f"](store, *args)
    results = [] if result is None else list(result) if isinstance(result, tuple) else [result]
    return results, before - store.get_fuel()


@pytest.mark.parametrize("name", sorted(FUEL_PROGRAMS))
def test_fuel_matches_wasmtime(name):
    body, args = FUEL_PROGRAMS[name]
    wat = f"(module {body})"
    inst = instance(wat)
    results = inst.invoke("f", args)
    assert (results, inst.last_instructions) == wasmtime_fuel(wat, args)


# --- WASI ---

HELLO = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 8) "hello\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 8)) (i32.store (i32.const 4) (i32.const 6))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
    (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 20)))
    (i32.store (i32.const 24) (call $write (i32.const 5) (i32.const 0) (i32.const 1) (i32.const 20)))
    (i32.store (i32.const 28) (call $open (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
      (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 0)))
    (call $exit (i32.const 3))))"""


def test_wasi_output_exit_and_errors():
    host = WasiHost()
    inst = instance(HELLO, host=host)
    with pytest.raises(ProcExit) as info:
        inst.invoke("_start")
    assert info.value.code == 3
    assert bytes(host.stdout_bytes) == b"hello\n" and bytes(host.stderr_bytes) == b"hello\n"
    memory = inst.memory.data
    assert int.from_bytes(memory[20:24], "little") == 6  # bytes written
    assert int.from_bytes(memory[24:28], "little") == 8  # EBADF
    assert int.from_bytes(memory[28:32], "little") == 52  # ENOSYS
    assert inst.last_instructions > 0


def test_wasi_streams_to_callbacks():
    chunks: list[bytes] = []
    with pytest.raises(ProcExit):
        instance(HELLO, host=WasiHost(stdout=chunks.append)).invoke("_start")
    assert chunks == [b"hello\n"]


def test_docs_table_names_every_integer_instruction():
    doc = (Path(__file__).parent.parent / "docs" / "MACHINE.md").read_text()
    missing = [name for name, op in OPS_BY_NAME.items() if not op.is_float and f"`{name}" not in doc]
    assert not missing
