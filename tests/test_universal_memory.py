"""Linear memory and globals in the universal interpreter graph (universal/memory.py,
universal/globals.py), against the reference token machine.

- every integer load and store, at unaligned random addresses over bytes written by
  other stores, read back wider and narrower (the compiled float64 model);
- the programs ``memory`` and ``globals`` of universal_programs (test_universal runs them
  on the model; here the exact evaluator, slow);
- the out-of-bounds node (info["traps"]["MEMORY_OOB"]) against the token machine's traps;
- Limits refuses a memory, an offset or a global count the keys are not built for.
"""

from __future__ import annotations

import functools
import random
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from universal_programs import Stream, check_evaluator, check_model, make_stream, stream  # noqa: E402

from wasmformer.compiler import compile_graph  # noqa: E402
from wasmformer.graph import Evaluator, GraphError  # noqa: E402
from wasmformer.machine import Instance, TokenMachine, prompt_tokens, vocab  # noqa: E402
from wasmformer.machine.semantics import LOADS, STORES  # noqa: E402
from wasmformer.model import NumericsError, build_model  # noqa: E402
from wasmformer.toolchain import program_bytes  # noqa: E402
from wasmformer.universal.interpreter import build_universal_graph, supported  # noqa: E402
from wasmformer.universal.limits import Limits  # noqa: E402
from wasmformer.wasm import load_module  # noqa: E402

MAX_LEN = 2048
# the ALU ops the access programs below use (a smaller graph compiles faster)
OPS = ("i32.add", "i32.wrap_i64", "i64.add", "i64.xor")


@functools.cache
def model():
    g = build_universal_graph(Limits(max_len=MAX_LEN, ops=OPS))[0]
    return build_model(compile_graph(g), torch.float64)


def access_stream(op: str, cases: int, seed: int) -> Stream:
    """``op`` at random unaligned addresses: a load over bytes two i64 stores wrote (and
    never-written bytes past them); a store over them, read back by an i64 load."""
    t = op[:3]
    if op in LOADS:
        body = f"""(i64.store (local.get $a) (local.get $v))
          (i64.store offset=8 (local.get $a) (i64.xor (local.get $v) (i64.const -1)))
          ({op} offset=3 (i32.add (local.get $a) (local.get $k)))"""  # past a + 15: unwritten
        result = t
    else:
        value = "(local.get $v)" if t == "i64" else "(i32.wrap_i64 (local.get $v))"
        body = f"""(i64.store (local.get $a) (i64.const 0x0102030405060708))
          ({op} offset=1 (i32.add (local.get $a) (local.get $k)) {value})
          (i64.load (local.get $a))"""
        result = "i64"
    wat = f"""(module (memory 1)
      (func (export "f") (param $a i32) (param $k i32) (param $v i64) (result {result})
        {body}))"""
    rng = random.Random(seed)
    calls = [("f", [rng.randrange(0, 65000), rng.randrange(0, 8), rng.randrange(2**64)])
             for _ in range(cases)]
    return make_stream(op, wat, calls)


ACCESSES = sorted(LOADS) + sorted(STORES)
# the default run: a signed i64 load and a narrow i64 store (a forward costs seconds; the
# program "memory" of test_universal covers most other widths in the default run)
SOME = ("i64.load32_s", "i64.store16")


@pytest.mark.parametrize("op", SOME)
def test_access_model(op: str) -> None:
    s = access_stream(op, cases=4, seed=len(op))
    assert supported(s.fused) == []
    Limits(max_len=MAX_LEN).check(s.fused, len(s.tokens))
    assert check_model(model(), s) > 0


@pytest.mark.slow
@pytest.mark.parametrize("op", ACCESSES)
def test_every_access_model(op: str) -> None:
    assert check_model(model(), access_stream(op, cases=12, seed=7 * len(op))) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["memory", "globals"])
def test_memory_programs_evaluator(name: str) -> None:
    g = build_universal_graph(Limits(max_len=MAX_LEN, ops=("i32.add", "i32.sub", "i32.mul",
                                                           "i32.lt_u", "i64.add",
                                                           "i64.extend_i32_u")))[0]
    assert check_evaluator(g, stream(name)) > 0


def test_out_of_bounds_node() -> None:
    """The node is 1 where the next token is an access's first byte and the access is out
    of bounds (there the token machine writes TRAP MEMORY_OOB), 0 at every position before
    it in the invocation's trace (in-bounds loads and stores included)."""
    wat = """(module (memory 1)
      (func (export "f") (param $a i32) (result i32)
        (i32.store8 (local.get $a) (i32.const 5))
        (i32.load offset=1 (local.get $a))))"""
    inst = Instance(load_module(program_bytes(wat).wasm))
    tm = TokenMachine(inst)
    tokens = prompt_tokens(inst, tm.fused, tm.func_index)
    segments = []  # (first predicted position, end, trap position or None)
    for arg in (65531, 65532, 65536):  # in bounds; the load traps; the store traps
        trace = tm.invoke("f", [arg])
        start = len(tokens) + len(trace.step_tokens(0)) - 1
        tokens += trace.tokens
        trap = (tokens.index(vocab.tok("TRAP"), start) if trace.outcome == "trap" else None)
        segments.append((start, len(tokens), trap))
    assert [t is None for *_, t in segments] == [True, False, False]
    g, info = build_universal_graph(Limits(max_len=MAX_LEN, ops=()))
    ev = Evaluator(g)
    for t in tokens:
        ev.feed(t)
    oob = ev.values(info["traps"]["MEMORY_OOB"])
    for start, end, trap in segments:
        before = (end - 1 if trap is None else trap - 1)
        assert oob[start:before] == [0] * (before - start)
        if trap is not None:
            assert oob[trap - 1] == 1


def test_limits_refuse_what_the_keys_do_not_cover() -> None:
    s = stream("memory")
    Limits(max_len=MAX_LEN, mem_bits=16).check(s.fused, len(s.tokens))
    two = make_stream("two", """(module (memory 2)
      (func (export "f") (result i32) (i32.load (i32.const 0))))""", [("f", [])])
    with pytest.raises(GraphError, match="mem_bits"):
        Limits(max_len=MAX_LEN, mem_bits=16).check(two.fused, len(two.tokens))
    far = make_stream("far", """(module (memory 1)
      (func (export "f") (param i32) (result i32) (i32.load offset=70000 (local.get 0))))""",
                      [])
    with pytest.raises(GraphError, match="offset"):
        Limits(max_len=MAX_LEN, mem_bits=16).check(far.fused, 10)
    with pytest.raises(GraphError, match="mem_bits"):
        Limits(mem_bits=40)


@pytest.mark.slow
def test_float64_refuses_memory_beyond_the_proven_range() -> None:
    """mem_bits 20 at max_len 2048: the memory read's scores reach 2**53.3, over float64
    scores' 2**53 (int64 scores prove it: docs/UNIVERSAL.md)."""
    g = build_universal_graph(Limits(max_len=MAX_LEN, ops=("i32.add",), mem_bits=20))[0]
    with pytest.raises(NumericsError, match="mem_read"):
        build_model(compile_graph(g), torch.float64)
