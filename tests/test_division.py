"""Division across trace tokens (universal/stages.py): the stage tokens define the division
(semantics.division_stages), and every div/rem op's graph generates them and the result
exactly as the token machine writes them, on edge and random operands from locals and from
the stack, traps included (slow: the exact evaluator)."""

from __future__ import annotations

import functools
import random
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from universal_programs import Stream, check_evaluator, make_stream  # noqa: E402

from wasmformer.machine import vocab  # noqa: E402
from wasmformer.machine.semantics import (  # noqa: E402
    DIVISION_OPS,
    NUMERIC,
    division_stage_count,
    division_stages,
    to_signed,
)
from wasmformer.universal.interpreter import build_universal_graph, supported  # noqa: E402
from wasmformer.universal.limits import Limits  # noqa: E402

MAX_LEN = 2048
BITS = {"i32": 32, "i64": 64}


def edge_pairs(bits: int) -> list[tuple[int, int]]:
    """Operand pairs at the edges: zero and one, ±1, INT_MIN, INT_MAX, all ones, a
    dividend below the divisor, powers of two, a zero divisor and INT_MIN / -1 (traps)."""
    m = (1 << bits) - 1
    top, most = 1 << (bits - 1), (1 << (bits - 1)) - 1
    return [(0, 1), (m, 1), (top, m), (most, 2), (7, 100), (m, m), (top, 3), (5, 0),
            (1 << (bits - 2), (1 << (bits // 2)) + 1), (12345, top), (m - 6, 16)]


def division_stream(op: str, cases: int, seed: int) -> Stream:
    t = op[:3]
    bits = BITS[t]
    wat = f"""(module
      (func (export "ll") (param {t} {t}) (result {t}) ({op} (local.get 0) (local.get 1)))
      (func (export "ss") (param {t} {t}) (result {t}) (local {t} {t})
        ({op} (local.tee 2 (local.get 0)) (local.tee 3 (local.get 1)))))"""
    rng = random.Random(seed)
    pairs = edge_pairs(bits)
    rng.shuffle(pairs)
    pairs.insert(1, (5, 0))  # a trap among the first cases (the stream goes on after it)
    while len(pairs) < cases:
        pairs.append((rng.getrandbits(bits), rng.getrandbits(rng.randint(1, bits)) or 1))
    calls = [("ll" if i % 2 == 0 else "ss", [to_signed(a, bits), to_signed(b, bits)])
             for i, (a, b) in enumerate(pairs[:cases])]
    return make_stream(op, wat, calls)


@functools.cache
def graph_of(op: str):
    return build_universal_graph(Limits(max_len=MAX_LEN, ops=(op,)))[0]


def test_stages_define_the_division() -> None:
    """The stage bytes are a long division: the digits are the quotient's nibbles and the
    last stage's remainder is the remainder's magnitude; the count is per width."""
    rng = random.Random(1)
    for op in DIVISION_OPS:
        bits = BITS[op[:3]]
        n = bits // 8
        for _ in range(200):
            a, b = rng.getrandbits(bits), rng.getrandbits(rng.randint(1, bits)) or 1
            out = division_stages(op, a, b)
            assert len(out) == division_stage_count(op) == 2 * n * (n + 1)
            x, y = a, b
            if op.endswith("_s"):
                x, y = abs(to_signed(a, bits)), abs(to_signed(b, bits))
            digits = out[::n + 1]
            assert sum(d << (4 * (2 * n - 1 - s)) for s, d in enumerate(digits)) == x // y
            assert int.from_bytes(bytes(out[-n:]), "little") == x % y
            if op.endswith("rem_u") or op.endswith("div_u"):
                want = NUMERIC[op](a, b)
                assert want == (x % y if "rem" in op else x // y)


@pytest.mark.slow  # the exact evaluator: 2-4 minutes per op on a loaded 2-core machine
@pytest.mark.parametrize("op", DIVISION_OPS)
def test_division_op_evaluator(op: str) -> None:
    """The exact graph evaluator generates every stage token and the result (or the trap);
    the default run's check is the compiled model: tests/test_engine.py
    ::test_division_through_the_engine."""
    cases = 6 if op.startswith("i32") else 3
    s = division_stream(op, cases, seed=len(op))
    assert not supported(s.fused, Limits(max_len=MAX_LEN, ops=(op,)))
    start = time.time()
    generated = check_evaluator(graph_of(op), s)
    print(f"{op}: {generated} tokens generated in {time.time() - start:.1f} s")
    completed = [t for t in s.traces if t.outcome == "halt"]
    assert completed and len(completed) < len(s.traces)  # divisions and traps
    stage_tokens = sum(vocab.stage_byte(x) is not None for t in completed for x in t.tokens)
    assert stage_tokens == len(completed) * division_stage_count(op)
    assert generated >= stage_tokens


@pytest.mark.slow
def test_division_results_set_and_tee_locals() -> None:
    """A division's value set or teed into a local, read back after other locals were
    written: only the result's last byte is a write (stage tokens carry no keys), at depth 1."""
    wat = """(module
      (func $f (param $a i64) (param $b i64) (result i64) (local $q i64) (local $r i64)
        (local.set $r (i64.const 5))
        (local.set $q (i64.div_u (local.get $a) (local.get $b)))
        (i64.add (i64.add (local.get $q) (local.get $r))
                 (local.tee $r (i64.rem_s (local.get $a) (local.get $b)))))
      (func (export "g") (param i64 i64) (result i64) (call $f (local.get 0) (local.get 1))))"""
    s = make_stream("set_tee", wat, [("g", [1000, 7]), ("g", [-(1 << 40) - 3, 1 << 20])])
    g = build_universal_graph(Limits(max_len=MAX_LEN, ops=("i64.add", "i64.div_u",
                                                             "i64.rem_s")))[0]
    assert check_evaluator(g, s) > 2 * 2 * division_stage_count("i64.div_u")
