"""Unit tests of the validator on hand-built modules: the rules that are easy to get wrong."""

from __future__ import annotations

import pytest
import wasmtime

from wasmformer.errors import InvalidModule
from wasmformer.wasm import load_module
from wasmformer.wasm.module import (
    Data,
    Elem,
    Export,
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
)
from wasmformer.wasm.opcodes import OPS_BY_NAME
from wasmformer.wasm.validate import CodeChecker, module_context, validate


def ins(name: str, *args) -> Instr:
    return Instr(OPS_BY_NAME[name], tuple(args), offset=100)


def func_module(body: list[Instr], params=(), results=(), locals_=(), **fields) -> Module:
    """A module with one function of type params -> results and the given body."""
    types = (FuncType(tuple(params), tuple(results)),) + fields.pop("extra_types", ())
    return Module(types=types, funcs=(Func(0, tuple(locals_), tuple(body), 0),), **fields)


def assert_invalid(module: Module, message: str) -> InvalidModule:
    with pytest.raises(InvalidModule) as info:
        validate(module)
    assert info.value.message.startswith(message), info.value.message
    return info.value


# --- basic typing ---


def test_simple_function_validates():
    validate(func_module([ins("local.get", 0), ins("i32.const", 1), ins("i32.add")],
                         params=("i32",), results=("i32",)))


def test_wrong_operand_type():
    err = assert_invalid(func_module([ins("i64.const", 1), ins("i32.eqz")], results=("i32",)),
                         "type mismatch")
    assert "function 0" in err.where and "byte offset 100" in err.where


def test_leftover_value_and_missing_result():
    assert_invalid(func_module([ins("i32.const", 1)]), "type mismatch")
    assert_invalid(func_module([], results=("i32",)), "type mismatch")


def test_float_instructions_validate():
    validate(func_module([ins("f64.const", 0), ins("f64.sqrt"), ins("i64.trunc_sat_f64_s")],
                         results=("i64",)))


def test_unknown_local_and_global():
    assert_invalid(func_module([ins("local.get", 1), ins("drop")], params=("i32",)),
                   "unknown local")
    assert_invalid(func_module([ins("global.get", 0), ins("drop")]), "unknown global")


def test_global_set_immutable():
    glob = Global(GlobalType("i32", False), (ins("i32.const", 0),))
    assert_invalid(func_module([ins("i32.const", 1), ins("global.set", 0)], globals=(glob,)),
                   "global is immutable")
    mut = Global(GlobalType("i32", True), (ins("i32.const", 0),))
    validate(func_module([ins("i32.const", 1), ins("global.set", 0)], globals=(mut,)))


# --- polymorphic stack ---


def test_unreachable_makes_stack_polymorphic():
    validate(func_module([ins("unreachable"), ins("i32.add")], results=("i32",)))
    validate(func_module([ins("unreachable"), ins("select"), ins("i64.eqz")], results=("i32",)))


def test_polymorphic_stack_still_checks_known_values():
    assert_invalid(func_module([ins("unreachable"), ins("i64.const", 0), ins("i32.add")],
                               results=("i32",)), "type mismatch")


def test_unreachable_is_local_to_its_block():
    # After the block ends the enclosing frame is reachable again, so the i32 must be there.
    body = [ins("block", None), ins("unreachable"), ins("end"), ins("i32.eqz")]
    assert_invalid(func_module(body, results=("i32",)), "type mismatch")


def test_br_and_return_leave_unreachable_code():
    body = [ins("block", "i32"), ins("i32.const", 1), ins("br", 0), ins("i64.add"), ins("end")]
    assert_invalid(func_module(body, results=("i32",)), "type mismatch")  # i64.add pushes i64
    body = [ins("block", "i32"), ins("i32.const", 1), ins("br", 0), ins("i32.add"), ins("end")]
    validate(func_module(body, results=("i32",)))
    # After return, an f32 result that nobody checks is still typed within the dead code.
    validate(func_module([ins("i32.const", 7), ins("return"), ins("f32.neg"), ins("drop")],
                         results=("i32",)))


def test_unreachable_select_needs_numeric_operand():
    body = [ins("unreachable"), ins("ref.null", "externref"), ins("select"), ins("drop")]
    assert_invalid(func_module(body), "type mismatch")


# --- blocks ---


def test_multi_value_block_with_params():
    pair = FuncType(("i32", "i32"), ("i64", "i32"))
    body = [ins("i32.const", 1), ins("i32.const", 2), ins("block", 1),
            ins("i32.add"), ins("i64.extend_i32_u"), ins("i32.const", 3), ins("end"),
            ins("drop"), ins("drop")]
    validate(func_module(body, extra_types=(pair,)))


def test_loop_label_carries_params():
    # A branch to a loop goes back to its start, so it takes the loop's parameters.
    loop_t = FuncType(("i32",), ())
    body = [ins("i32.const", 1), ins("loop", 1), ins("br", 0), ins("end")]
    validate(func_module(body, extra_types=(loop_t,)))
    body = [ins("i32.const", 1), ins("loop", 1), ins("drop"), ins("br", 0), ins("end")]
    assert_invalid(func_module(body, extra_types=(loop_t,)), "type mismatch")


def test_if_without_else_needs_equal_params_and_results():
    body = [ins("i32.const", 1), ins("if", "i32"), ins("i32.const", 1), ins("end"), ins("drop")]
    assert_invalid(func_module(body), "type mismatch")
    body = [ins("i32.const", 1), ins("if", "i32"), ins("i32.const", 1), ins("else"),
            ins("i32.const", 2), ins("end"), ins("drop")]
    validate(func_module(body))
    same = FuncType(("i32",), ("i32",))
    body = [ins("i32.const", 5), ins("i32.const", 1), ins("if", 1), ins("end"), ins("drop")]
    validate(func_module(body, extra_types=(same,)))


def test_unknown_label_and_type():
    assert_invalid(func_module([ins("block", None), ins("br", 2), ins("end")]), "unknown label")
    assert_invalid(func_module([ins("block", 5), ins("end")]), "unknown type")


# --- br_table ---


def test_br_table_targets_must_share_arity():
    body = [ins("block", None), ins("block", "i32"), ins("i32.const", 0), ins("i32.const", 0),
            ins("br_table", (0,), 1), ins("end"), ins("drop"), ins("end")]
    assert_invalid(func_module(body), "type mismatch")


def test_br_table_checks_operands_against_every_target():
    body = [ins("block", "i32"), ins("block", "i64"), ins("i32.const", 1), ins("i32.const", 0),
            ins("br_table", (0,), 1), ins("end"), ins("drop"), ins("i32.const", 0), ins("end"),
            ins("drop")]
    assert_invalid(func_module(body), "type mismatch")


def test_br_table_same_arity_different_types_when_unreachable():
    # WebAssembly 2.0: on the polymorphic stack an unknown operand matches both i64 and i32.
    body = [ins("block", "i32"), ins("block", "i64"), ins("unreachable"),
            ins("br_table", (0,), 1), ins("end"), ins("drop"), ins("i32.const", 0), ins("end"),
            ins("drop")]
    validate(func_module(body))


# --- select ---


def test_typed_select_allows_references():
    body = [ins("ref.null", "funcref"), ins("ref.null", "funcref"), ins("i32.const", 0),
            ins("select_t", ("funcref",))]
    validate(func_module(body, results=("funcref",)))


def test_untyped_select_rejects_references():
    body = [ins("ref.null", "funcref"), ins("ref.null", "funcref"), ins("i32.const", 0),
            ins("select")]
    assert_invalid(func_module(body, results=("funcref",)), "type mismatch")


def test_select_operands_must_agree():
    body = [ins("i32.const", 0), ins("i64.const", 0), ins("i32.const", 0), ins("select"),
            ins("drop")]
    assert_invalid(func_module(body), "type mismatch")


def test_typed_select_needs_exactly_one_type():
    body = [ins("i32.const", 0), ins("i32.const", 0), ins("i32.const", 0),
            ins("select_t", ("i32", "i32"))]
    assert_invalid(func_module(body), "invalid result arity")


# --- ref.func declarations ---


def test_ref_func_must_be_declared():
    body = [ins("ref.func", 0), ins("drop")]
    assert_invalid(func_module(body), "undeclared function reference")
    validate(func_module(body, exports=(Export("f", "func", 0),)))
    declared = Elem("declarative", "funcref", ((ins("ref.func", 0),),))
    validate(func_module(body, elems=(declared,)))
    in_global = Global(GlobalType("funcref", False), (ins("ref.func", 0),))
    validate(func_module(body, globals=(in_global,)))


def test_ref_func_unknown_function():
    assert_invalid(func_module([ins("ref.func", 3), ins("drop")]), "unknown function")


# --- constant expressions ---


def imported_global(mutable: bool) -> Import:
    return Import("env", "g", "global", GlobalType("i32", mutable))


def test_constant_expression_rules():
    ok = Global(GlobalType("i32", False), (ins("i32.const", 1),))
    validate(Module(globals=(ok,)))
    not_const = Global(GlobalType("i32", False), (ins("i32.const", 1), ins("i32.eqz")))
    assert_invalid(Module(globals=(not_const,)), "constant expression required")
    wrong_type = Global(GlobalType("i32", False), (ins("i64.const", 1),))
    assert_invalid(Module(globals=(wrong_type,)), "type mismatch")
    two = Global(GlobalType("i32", False), (ins("i32.const", 1), ins("i32.const", 1)))
    assert_invalid(Module(globals=(two,)), "type mismatch")
    empty = Global(GlobalType("i32", False), ())
    assert_invalid(Module(globals=(empty,)), "type mismatch")


def test_constant_global_get_only_of_immutable_imports():
    get0 = Global(GlobalType("i32", False), (ins("global.get", 0),))
    validate(Module(imports=(imported_global(False),), globals=(get0,)))
    assert_invalid(Module(imports=(imported_global(True),), globals=(get0,)),
                   "constant expression required")
    # A defined global is not visible to constant expressions (WebAssembly 2.0).
    get1 = Global(GlobalType("i32", False), (ins("global.get", 1),))
    assert_invalid(Module(imports=(imported_global(False),), globals=(get0, get1)),
                   "unknown global")


def test_data_and_elem_offsets():
    mem = (MemType(Limits(1)),)
    validate(Module(mems=mem, datas=(Data("active", b"x", 0, (ins("i32.const", 0),)),)))
    assert_invalid(Module(mems=mem, datas=(Data("active", b"x", 0, (ins("i64.const", 0),)),)),
                   "type mismatch")
    assert_invalid(Module(datas=(Data("active", b"x", 0, (ins("i32.const", 0),)),)),
                   "unknown memory")
    table = (TableType("externref", Limits(1)),)
    funcs_elem = Elem("active", "funcref", (), 0, (ins("i32.const", 0),))
    assert_invalid(Module(tables=table, elems=(funcs_elem,)), "type mismatch")
    bad_init = Elem("passive", "externref", ((ins("ref.null", "funcref"),),))
    assert_invalid(Module(elems=(bad_init,)), "type mismatch")


# --- memory, tables, module level ---


def test_memory_access_rules():
    mem = (MemType(Limits(1)),)
    load = [ins("i32.const", 0), ins("i32.load8_u", 0, 0), ins("drop")]
    validate(func_module(load, mems=mem))
    assert_invalid(func_module(load), "unknown memory")
    too_aligned = [ins("i32.const", 0), ins("i32.load16_s", 2, 0), ins("drop")]
    assert_invalid(func_module(too_aligned, mems=mem), "alignment must not be larger than natural")


def test_data_segment_instructions_need_data_count():
    mem = (MemType(Limits(1)),)
    datas = (Data("passive", b"abc"),)
    body = [ins("data.drop", 0)]
    validate(func_module(body, mems=mem, datas=datas, data_count=1))
    assert_invalid(func_module(body, mems=mem, datas=datas), "data count section required")
    assert_invalid(func_module([ins("data.drop", 1)], mems=mem, datas=datas, data_count=1),
                   "unknown data segment")


def test_call_indirect_needs_funcref_table():
    body = [ins("i32.const", 0), ins("call_indirect", 0, 0)]
    validate(func_module(body, tables=(TableType("funcref", Limits(1)),)))
    assert_invalid(func_module(body, tables=(TableType("externref", Limits(1)),)),
                   "type mismatch")
    assert_invalid(func_module(body), "unknown table")


def test_table_copy_and_init_types():
    tables = (TableType("funcref", Limits(1)), TableType("externref", Limits(1)))
    copy = [ins("i32.const", 0), ins("i32.const", 0), ins("i32.const", 0), ins("table.copy", 0, 1)]
    assert_invalid(func_module(copy, tables=tables), "type mismatch")
    elems = (Elem("passive", "funcref", ()),)
    init = [ins("i32.const", 0), ins("i32.const", 0), ins("i32.const", 0)]
    validate(func_module(init + [ins("table.init", 0, 0)], tables=tables, elems=elems))
    assert_invalid(func_module(init + [ins("table.init", 0, 1)], tables=tables, elems=elems),
                   "type mismatch")
    assert_invalid(func_module([ins("elem.drop", 1)], elems=elems), "unknown elem segment")


def test_limits_and_memories():
    assert_invalid(Module(mems=(MemType(Limits(65537)),)), "memory size must be at most 65536")
    assert_invalid(Module(mems=(MemType(Limits(2, 1)),)),
                   "size minimum must not be greater than maximum")
    assert_invalid(Module(tables=(TableType("funcref", Limits(2, 1)),)),
                   "size minimum must not be greater than maximum")
    assert_invalid(Module(mems=(MemType(Limits(1)), MemType(Limits(1)))), "multiple memories")
    validate(Module(mems=(MemType(Limits(0, 65536)),)))


def test_start_function_and_exports():
    assert_invalid(func_module([ins("i32.const", 0)], results=("i32",), start=0),
                   "start function")
    validate(func_module([], start=0))
    assert_invalid(func_module([], start=1), "unknown function")
    dup = (Export("a", "func", 0), Export("a", "func", 0))
    assert_invalid(func_module([], exports=dup), "duplicate export name")
    assert_invalid(func_module([], exports=(Export("m", "memory", 0),)), "unknown memory")


# --- the checker as a reusable stack tracker ---


def test_checker_exposes_static_stack_height():
    module = func_module([], params=("i32",))
    checker = CodeChecker(module_context(module), "function 0", ("i32",), ())
    heights = []
    for instr in [ins("local.get", 0), ins("i32.const", 2), ins("i32.mul"), ins("drop")]:
        checker.step(instr)
        heights.append(len(checker.vals))
    checker.finish()
    assert heights == [1, 2, 1, 0]


# --- end to end, from text through the real decoder ---


def test_error_names_function_and_byte_offset_of_instruction():
    wasm = wasmtime.wat2wasm(
        "(module (func) (func (i32.const 0) (i64.const 1) (i32.add) (drop)))")
    with pytest.raises(InvalidModule) as info:
        load_module(wasm)
    assert info.value.message.startswith("type mismatch")
    where = info.value.where
    assert where.startswith("function 1, byte offset ")
    assert wasm[int(where.rsplit(" ", 1)[1])] == 0x6A  # the i32.add opcode


def test_missing_result_is_reported_at_end_of_body():
    wasm = wasmtime.wat2wasm("(module (func (result i32) (nop)))")
    with pytest.raises(InvalidModule, match="type mismatch") as info:
        load_module(wasm)
    assert info.value.where == "function 0, end of body"


def test_real_module_with_imports_validates():
    wasm = wasmtime.wat2wasm("""
      (module
        (import "env" "f" (func $f (param i32) (result i32)))
        (import "env" "g" (global $g i32))
        (memory 1) (table 2 funcref)
        (global $h (mut i32) (global.get $g))
        (elem (i32.const 0) $f $main)
        (data (i32.const 8) "hi")
        (func $main (export "main") (param i32) (result i32)
          (block (result i32)
            (br_table 0 0 (local.get 0) (local.get 0)))
          (call_indirect (param i32) (result i32) (i32.const 1))
          (global.set $h)
          (i32.load8_u offset=8 (i32.const 0))
          (call $f)))
    """)
    module = load_module(wasm)
    assert module.num_imported_funcs == 1
