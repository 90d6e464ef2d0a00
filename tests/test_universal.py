"""The universal interpreter graph (wasmformer.universal.interpreter) against the reference
token machine: the program is only in the prompt, the graph is the same for every program.

- the exact evaluator, generating greedily from prompt + invocation header, reproduces the
  token machine's trace token for token (several invocations continue one stream);
- the compiled torch model (float64, proven exact by the numerics guard) gives the same
  tokens, by a causal forward over the whole stream and by KV-cached decoding;
- every ALU opcode on edge and random operands (slow: all of them, from locals and from
  the stack);
- random straight-line programs in the subset (slow).

The default run uses a graph with only the ALU ops its evaluator programs need (the exact
evaluator is slow); the torch tests use the full ALU.
"""

from __future__ import annotations

import functools
import random
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from alu_harness import edge_values, random_value  # noqa: E402
from universal_programs import (  # noqa: E402
    OUTCOMES,
    PROGRAMS,
    TRAP_PROGRAMS,
    Stream,
    check_evaluator,
    check_model,
    generate_with_cache,
    make_stream,
    stream,
)

from wasmformer.compiler import CompiledModel, compile_graph  # noqa: E402
from wasmformer.graph import GraphError  # noqa: E402
from wasmformer.machine import Instance, TokenMachine, prompt_tokens, vocab  # noqa: E402
from wasmformer.machine.wasi import WasiHost  # noqa: E402
from wasmformer.model import NumericsError, analyse, build_model  # noqa: E402
from wasmformer.toolchain import program_bytes  # noqa: E402
from wasmformer.universal.alu import ALU_OPS  # noqa: E402
from wasmformer.universal.interpreter import build_universal_graph, supported  # noqa: E402
from wasmformer.universal.limits import Limits  # noqa: E402
from wasmformer.wasm import load_module  # noqa: E402

EVALUATED = ("sum_to", "sum_squares")  # the default run's evaluator programs (all: slow)
MAX_LEN = 2048


def ops_of(*names: str) -> tuple[str, ...]:
    return tuple(sorted({fi.op for n in names for fi in stream(n).fused.code
                         if fi.op in ALU_OPS}))


@functools.cache
def small_graph():
    return build_universal_graph(Limits(max_len=MAX_LEN, ops=ops_of(*EVALUATED)))[0]


@functools.cache
def full_graph():
    return build_universal_graph(Limits(max_len=MAX_LEN))[0]


@functools.cache
def full_compiled() -> CompiledModel:
    return compile_graph(full_graph())


@functools.cache
def full_model():
    return build_model(full_compiled(), torch.float64)


# --- coverage of the programs ---


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_programs_are_in_the_subset(name: str) -> None:
    s = stream(name)
    assert supported(s.fused) == []
    assert all(t.outcome == "halt" for t in s.traces)
    assert len(s.tokens) <= MAX_LEN
    Limits(max_len=MAX_LEN).check(s.fused, len(s.tokens))


def test_supported_names_what_is_missing() -> None:
    s = make_stream("fill", """(module (memory 1)
      (func (export "f") (param i32) (result i32)
        (i32.store (local.get 0) (i32.const 7))
        (memory.fill (local.get 0) (i32.const 1) (i32.const 2))
        (i32.load (local.get 0))))""", [("f", [8])])
    missing = supported(s.fused)
    assert any("memory.fill" in m for m in missing)
    assert not any("store" in m or "load" in m for m in missing)


# --- the exact evaluator ---


@pytest.mark.parametrize("name", EVALUATED)
def test_evaluator_generates_the_trace(name: str) -> None:
    assert check_evaluator(small_graph(), stream(name)) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_full_graph_evaluator_generates_the_trace(name: str) -> None:
    assert check_evaluator(full_graph(), stream(name)) > 0


# --- the torch model ---


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_model_float64_gives_the_trace(name: str) -> None:
    assert check_model(full_model(), stream(name)) > 0


def test_model_kv_cache_decoding() -> None:
    s = stream("sum_to")  # two invocations on one cache
    want = [t.tokens[len(t.step_tokens(0)):] for t in s.traces]
    assert generate_with_cache(full_model(), s) == want


def test_numerics() -> None:
    compiled = full_compiled()
    report = analyse(compiled.program, torch.float64)
    assert report.exact, report.summary()
    with pytest.raises(NumericsError):  # the content-keyed lookups need float64
        build_model(compiled, torch.float32)


def test_model_card() -> None:
    card = full_compiled().card
    print(f"\nuniversal graph, full ALU, max_len {MAX_LEN}:\n{card}")
    # a guard against growth, not a goal (heads: 31 before traps, br_table, call_indirect
    # and multi-value returns; 52 and 10 layers before division, whose stages add 2 layers,
    # the i64 stage's 8 far window heads and the quotient's 2 digit reads; 62 before the
    # unsupported trap, whose payload is the record's X)
    assert card.layers <= 12 and card.heads <= 64
    assert card.vocab_size == vocab.SIZE


def test_limits_are_checked() -> None:
    s = stream("sum_to")
    with pytest.raises(GraphError, match="max_len"):
        Limits(max_len=100).check(s.fused, len(s.tokens))
    body = " ".join("local.get 0 i32.const 1 i32.add local.set 0" for _ in range(300))
    big = make_stream("big", f"""(module (func (export "f") (param i32) (result i32)
        {body} local.get 0))""", [("f", [1])])
    with pytest.raises(GraphError, match="pcs"):  # 300 records: over 1-byte pcs
        Limits(pc_bytes=1).check(big.fused, 10)


# --- traps ---


@functools.cache
def graph_for(*names: str):
    """A graph with only the ALU ops ``names`` use (the exact evaluator is slow)."""
    return build_universal_graph(Limits(max_len=MAX_LEN, ops=ops_of(*names)))[0]


@pytest.mark.parametrize("name", sorted(TRAP_PROGRAMS))
def test_trap_programs_are_in_the_subset(name: str) -> None:
    s = stream(name)
    assert supported(s.fused) == []
    assert [t.outcome for t in s.traces] == OUTCOMES[name]
    Limits(max_len=MAX_LEN).check(s.fused, len(s.tokens))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TRAP_PROGRAMS))
def test_evaluator_traps_and_runs_again(name: str) -> None:
    assert check_evaluator(graph_for(name), stream(name)) > 0


@pytest.mark.parametrize("name", sorted(TRAP_PROGRAMS))
def test_model_float64_traps_and_runs_again(name: str) -> None:
    assert check_model(full_model(), stream(name)) > 0


@pytest.mark.slow
def test_evaluator_br_table() -> None:
    assert check_evaluator(graph_for("switch"), stream("switch")) > 0


def test_supported_names_uncovered_control_flow() -> None:
    s = make_stream("uncovered", """(module
      (type $t (func (result i32))) (type $u (func (result i32)))
      (table 2 funcref) (table 1 funcref)
      (func $k (type $t) i32.const 1)
      (func (export "f") (param i32) (result i32)
        (block $b (result i32)
          (i32.const 5)
          (br_table $b $b (i32.const 7) (local.get 0))))
      (func (export "g") (param i32) (result i32)
        (call_indirect 1 (type $u) (local.get 0))))""", [])
    missing = " | ".join(supported(s.fused))
    assert "br_table moving 1 kept values" in missing
    assert "call_indirect with 2 tables" in missing
    assert "duplicate function types" in missing


def test_host_call_is_recognisable() -> None:
    """At a host call the graph writes ``CALL ff ff ff`` (the import's FUNCS entry): the
    engine recognises it, drops those tokens and splices the host call's (docs/UNIVERSAL.md)."""
    wat = """(module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (func (export "_start") (local i32)
        (local.set 0 (i32.add (i32.const 40) (i32.const 2)))
        (call $exit (local.get 0))))"""
    inst = Instance(load_module(program_bytes(wat).wasm), host=WasiHost())
    tm = TokenMachine(inst)
    prompt = prompt_tokens(inst, tm.fused, tm.func_index)
    tr = tm.invoke("_start")
    assert tr.outcome == "exit" and tr.step_tokens(len(tr.pcs) - 1)[-5] == vocab.tok("EXIT")
    before_call = prompt + tr.tokens[:tr.ends[-2]]
    model = full_model()
    cache = model.new_cache()
    with torch.no_grad():
        logits = model.run(torch.tensor([before_call]), 0, cache)[0, -1]
        got = []
        for _ in range(4):
            got.append(int(logits.argmax()))
            logits = model.step(torch.tensor([got[-1]]), cache)[0]
    assert got == [vocab.tok("CALL"), 0xFF, 0xFF, 0xFF]


def test_model_kv_cache_decoding_after_a_trap() -> None:
    s = stream("unreachable")
    want = [t.tokens[len(t.step_tokens(0)):] for t in s.traces]
    assert generate_with_cache(full_model(), s) == want


# --- every ALU op ---

TYPE = {4: "i32", 8: "i64"}


def op_stream(op: str, cases: int, seed: int) -> Stream:
    """``op`` applied to operands from locals and from the stack, on edge and random values."""
    spec = ALU_OPS[op]
    params = [TYPE[n] for n in spec.params]
    result = TYPE[spec.result]
    decl = " ".join(f"(param {t})" for t in params)
    temps = " ".join(f"(local {t})" for t in params)
    locals_ = " ".join(f"(local.get {i})" for i in range(len(params)))
    stacked = " ".join(f"(local.tee {len(params) + i} (local.get {i}))"
                       for i in range(len(params)))
    wat = f"""(module
      (func (export "ll") {decl} (result {result}) ({op} {locals_}))
      (func (export "ss") {decl} (result {result}) {temps} ({op} {stacked})))"""
    rng = random.Random(seed)
    columns = []
    for n in spec.params:
        edges = edge_values(n)
        rng.shuffle(edges)
        columns.append(edges)
    calls = []
    for i in range(cases):
        args = [c[i] if i < len(c) else random_value(rng, n)
                for c, n in zip(columns, spec.params, strict=True)]
        calls.append(("ll" if i % 2 == 0 else "ss", args))
    return make_stream(op, wat, calls)


@pytest.mark.slow
@pytest.mark.parametrize("op", Limits().ops)
def test_every_alu_op_model(op: str) -> None:
    assert check_model(full_model(), op_stream(op, cases=24, seed=len(op))) > 0


@pytest.mark.slow
@pytest.mark.parametrize("op", Limits().ops)
def test_every_alu_op_evaluator(op: str) -> None:
    g = build_universal_graph(Limits(max_len=MAX_LEN, ops=(op,)))[0]
    assert check_evaluator(g, op_stream(op, cases=4, seed=len(op) + 1)) > 0


@pytest.mark.slow
def test_division_in_a_graph_that_names_it() -> None:
    """Division is in the default graph (across its stage tokens, stages.py), and in a graph
    that names only the ops a program needs: unsigned and signed, from locals, a trap."""
    wat = """(module (func (export "d") (param $a i32) (param $b i32) (result i32)
      (i32.add (i32.div_u (local.get $a) (local.get $b))
               (i32.rem_s (local.get $a) (local.get $b)))))"""
    s = make_stream("div", wat, [("d", [100, 7]), ("d", [-100, 7]), ("d", [0xFFFFFFFF, 3]),
                                 ("d", [5, 0])])
    assert not supported(s.fused)  # the default graph has division
    limits = Limits(max_len=MAX_LEN, ops=("i32.add", "i32.div_u", "i32.rem_s"))
    assert not supported(s.fused, limits)
    g = build_universal_graph(limits)[0]
    assert check_evaluator(g, s) > 0


# --- random straight-line programs ---

BINARY = ("add", "sub", "mul", "and", "xor", "shl", "rotr", "lt_u", "ge_s", "ne")
UNARY = {"i32": ("i32.eqz", "i32.clz", "i32.popcnt", "i64.extend_i32_s", "i32.extend8_s"),
         "i64": ("i64.eqz", "i32.wrap_i64", "i64.ctz", "i64.extend16_s")}
LOCALS = ("i32", "i64", "i32", "i64")


@st.composite
def straight_line(draw) -> str:
    """A well-typed body over the subset (locals, constants, stack) that leaves one i32."""
    stack: list[str] = []
    body: list[str] = []
    for _ in range(draw(st.integers(1, 14))):
        choices = ["get", "const"] + (["unary", "set"] if stack else [])
        if len(stack) >= 2 and stack[-1] == stack[-2]:
            choices.append("binary")
        kind = draw(st.sampled_from(choices))
        if kind == "get":
            k = draw(st.integers(0, 3))
            body.append(f"local.get {k}")
            stack.append(LOCALS[k])
        elif kind == "const":
            t = draw(st.sampled_from(("i32", "i64")))
            v = draw(st.sampled_from((0, 1, 7, 255, -1, -2**31, 2**31 - 1, 0x12345)))
            body.append(f"{t}.const {v}")
            stack.append(t)
        elif kind == "unary":
            op = draw(st.sampled_from(UNARY[stack[-1]]))
            body.append(op)
            stack[-1] = "i32" if op in ("i32.eqz", "i64.eqz", "i32.wrap_i64", "i32.clz",
                                        "i32.popcnt", "i32.extend8_s") else "i64"
        elif kind == "binary":
            t = stack.pop()
            op = draw(st.sampled_from(BINARY))
            body.append(f"{t}.{op}")
            stack[-1] = "i32" if op in ("lt_u", "ge_s", "ne") else t
        else:
            k = draw(st.sampled_from([k for k in range(4) if LOCALS[k] == stack[-1]]))
            tee = draw(st.booleans())
            body.append(f"local.{'tee' if tee else 'set'} {k}")
            if not tee:
                stack.pop()
    while len(stack) > 1:  # `drop` disappears in the fused program: heights account for it
        body.append("drop")
        stack.pop()
    if not stack:
        body.append("local.get 0")
    elif stack[0] == "i64":
        body.append("i32.wrap_i64")
    return "\n".join(body)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(straight_line(), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1))
def test_random_straight_line(body: str, a: int, b: int) -> None:
    wat = f"""(module (func (export "f") (param i32 i64) (result i32) (local i32 i64)
      {body}))"""
    s = make_stream("random", wat, [("f", [a, b])])
    assert supported(s.fused) == []
    assert check_model(full_model(), s) > 0


def _largest(weight: torch.Tensor) -> tuple[int, ...]:
    """The index of a weight the model certainly uses: the largest in magnitude."""
    return tuple(int(i) for i in torch.unravel_index(weight.abs().argmax(), weight.shape))


@pytest.mark.parametrize("where", ["embedding", "attention", "ffn", "unembedding"])
def test_a_perturbed_universal_weight_is_caught(where: str) -> None:
    """Break the universal model on purpose (one weight's sign flipped): the differential
    check against the token machine must fail, so it would catch a real construction bug.
    (Not every weight matters to every program: the largest weight of several FFNs sits in
    circuits, such as the multiplier, that this program never enables.)"""
    import copy

    model = copy.deepcopy(full_model())
    weight = {"embedding": model.wte.weight,
              "attention": model.blocks[1].attn.query.weight,
              # its 5th FFN's gates: decoding the record (its largest down weight is a
              # clamped key's square for keys beyond every query, which no read meets)
              "ffn": model.blocks[4].ffn.gate.weight,
              "unembedding": model.lm_head.weight}[where]
    with torch.no_grad():
        weight[_largest(weight)] *= -1
    s = stream("memory")
    with pytest.raises(AssertionError, match="position"):
        check_model(model, s)
