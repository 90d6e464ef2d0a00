"""The universal model's ALU: every circuit against machine.semantics, bit for bit.

Operands are fed as byte tokens and gathered by relative-position lookups (see
``alu_harness``); the exact evaluator checks every result byte on edge and random
operands; each op's depth, units and number magnitudes are as stated; a few op graphs
and one graph of all ops side by side are compiled, and the torch model (float64 and
float32) must emit exactly the evaluator's / the semantics' bytes.
"""

from __future__ import annotations

import functools
import random
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from wasmformer.compiler import compile_graph
from wasmformer.graph import Evaluator, Ffn, GraphError, Linear
from wasmformer.machine.semantics import NUMERIC
from wasmformer.model import build_model
from wasmformer.universal import ALU_OPS, MISSING, Operand, cost
from wasmformer.universal.alu import DIVISION

sys.path.insert(0, str(Path(__file__).parent))

import alu_harness as H  # noqa: E402

F32_LIMIT = 2**24


def test_the_table_covers_every_integer_instruction() -> None:
    assert set(ALU_OPS) == set(NUMERIC) and not MISSING
    assert set(DIVISION) <= set(ALU_OPS)


# The shallow ops (all but division, tested on their own below, by ``alu_harness.circuit``).
SHALLOW = sorted(set(ALU_OPS) - set(DIVISION))

# Ops with the same operand sizes share one graph, so one evaluator pass (and one set of
# operand lookups) checks them all on the same stream.
GROUPS: dict[tuple[int, ...], list[str]] = {}
for _name in SHALLOW:
    GROUPS.setdefault(ALU_OPS[_name].params, []).append(_name)


@pytest.mark.parametrize("params", sorted(GROUPS), ids=str)
def test_circuits_equal_the_semantics(params: tuple[int, ...]) -> None:
    """Every window of ``total`` bytes in the stream is a test case (edges come first)."""
    h = H.build(GROUPS[params])
    total = h.total
    stream = H.operand_stream(params, random.Random(str(params)), cases=60)
    checked = 0
    for start in range(0, len(stream) - total + 1, 3 * total):  # chunks overlap by total
        chunk = stream[start:start + 4 * total]
        ev = Evaluator(h.graph)
        for t in chunk + [H.selector(0)]:
            ev.feed(t)
        for op, result in zip(h.ops, h.results, strict=True):
            columns = [ev.values(x) for x in result]
            for p in range(total, len(chunk) + 1):
                window = chunk[p - total:p]
                got = [column[p] for column in columns]
                assert got == H.expected(op, window), f"{op.name} on bytes {window}"
        checked += len(chunk) + 1 - total
    assert checked >= 60 * total


# op family -> hidden units (i32, i64), as stated in universal/alu.py
STATED_UNITS = {
    "add": (30, 62), "sub": (31, 63), "mul": (256, 896), "eqz": (1, 1),
    "clz": (32, 64), "ctz": (32, 64), "popcnt": (0, 0), "and": (32, 64), "or": (36, 72),
    "xor": (36, 72), **dict.fromkeys(("shl", "shr_u", "shr_s"), (47, 113)),
    "rotl": (48, 128), "rotr": (48, 128), "eq": (15, 27), "ne": (16, 28),
    **dict.fromkeys(("lt_s", "lt_u", "gt_s", "gt_u", "le_s", "le_u", "ge_s", "ge_u"),
                    (14, 26)),
    **dict.fromkeys(("wrap_i64", "extend_i32_s", "extend_i32_u", "extend8_s", "extend16_s",
                     "extend32_s"), (0, 0)),
}


@pytest.fixture(scope="module", params=SHALLOW)
def harness(request) -> H.Harness:
    return H.build([request.param])


def test_depth_and_units_are_as_stated(harness: H.Harness) -> None:
    op, result = harness.ops[0], harness.results[0]
    c = cost(harness.graph, result)
    assert c.depth == op.depth, f"{op.name}: depth {c.depth}, stated {op.depth}"
    assert c.units == STATED_UNITS[op.name.split(".")[1]][op.params[0] // 8], op.name


def test_intermediates_stay_below_2_24(harness: H.Harness) -> None:
    """Bound every FFN of the circuit from the declared ranges: each gate and value (as a
    dot product, any order), each hidden product and each partial sum of the output stays
    below 2**24, and the declared ranges hold the result bytes tightly."""
    _check_magnitudes(harness.graph)
    for x in harness.results[0]:
        assert x.range.integer and 0 <= x.range.lo and x.range.hi <= 255


def _check_magnitudes(g) -> None:
    for op in g.ops:
        if not isinstance(op, Ffn):
            continue
        total = Fraction(0)
        for u in op.units:
            gate, value = _magnitude(u.gate), _magnitude(u.value)
            assert gate < F32_LIMIT and value < F32_LIMIT, op.name
            total += abs(Fraction(u.weight)) * gate * value
        assert total < F32_LIMIT, f"{op.name}: partial sums up to {total}"


def _magnitude(x: Linear) -> Fraction:
    return sum((abs(Fraction(c)) * max(-n.range.lo, n.range.hi) for n, c in x.terms),
               Fraction(abs(x.bias)))


def test_operands_must_be_bytes_and_bits() -> None:
    g = H.build(["i32.add"]).graph
    byte = g.node("byte")
    with pytest.raises(GraphError, match="8 bits per byte"):
        Operand.of([byte] * 4, [g.node("bit0")] * 31)
    with pytest.raises(GraphError, match="want 0..1"):
        Operand.of([byte] * 4, [byte] * 32)
    four = Operand.of([byte] * 4, [g.node("bit0")] * 32)
    with pytest.raises(GraphError, match="operands of"):
        ALU_OPS["i64.add"](g, four, four)


# ---- the compiled model ------------------------------------------------------------------

COMPILED = ["i32.add", "i64.add", "i32.xor", "i32.shl", "i64.shl", "i32.mul", "i64.mul",
            "i32.lt_s", "i64.lt_s"]


@pytest.fixture(scope="module", params=COMPILED)
def compiled_case(request):
    """A compiled op graph and a token sequence of ``a b S_k`` chunks with the
    evaluator's predictions on it."""
    h = H.build([request.param], max_len=320, merged=True)
    op = h.ops[0]
    rng = random.Random(request.param)
    tokens, checks = [], []  # checks: (position, expected byte)
    while len(tokens) + h.total + 1 <= 320:
        args = [rng.choice(H.edge_values(n)) if rng.random() < 0.3 else H.random_value(rng, n)
                for n in op.params]
        window = [b for v, n in zip(args, op.params, strict=True) for b in H.value_bytes(v, n)]
        k = rng.randrange(op.result)
        tokens += window + [H.selector(k)]
        checks.append((len(tokens) - 1, H.expected(op, window)[k]))
    ev = Evaluator(h.graph)
    want = [ev.append(t) for t in tokens]
    return h, compile_graph(h.graph), tokens, want, checks


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_model_emits_the_result_bytes(compiled_case, dtype) -> None:
    h, compiled, tokens, want, checks = compiled_case
    for p, byte in checks:
        assert want[p] == byte
    # build_model's numerics guard proves these graphs exact in both dtypes (it refuses
    # otherwise); the comparison below checks the proof's conclusion on real operands.
    model = build_model(compiled, dtype)
    with torch.no_grad():
        got = model(torch.tensor([tokens])).argmax(-1)[0].tolist()
    wrong = [p for p, (a, b) in enumerate(zip(got, want, strict=True)) if a != b]
    assert not wrong, f"{h.ops[0].name} {dtype}: tokens differ at positions {wrong[:10]}"


# ---- all ops side by side ----------------------------------------------------------------


COMBINED_SEQUENCES = 1  # each holds one random case of every op (986 tokens)


@pytest.fixture(scope="module")
def combined():
    """Every op on the same 16-byte window, their pending last layers summed into the one
    emitting node under op_j + byte_k - 1; tokens: for each op, windows then a selector."""
    h = H.build(SHALLOW, max_len=2048, merged=True)
    rng = random.Random(58)
    batch, checks = [], []  # checks: (sequence, position, op name, expected byte)
    for i in range(COMBINED_SEQUENCES):
        tokens = []
        for j, op in enumerate(h.ops):
            args = [H.random_value(rng, n) for n in op.params]
            window = [b for v, n in zip(args, op.params, strict=True)
                      for b in H.value_bytes(v, n)]
            window = [rng.randrange(256) for _ in range(h.total - len(window))] + window
            k = rng.randrange(op.result)
            tokens += window + [H.selector(k, j)]
            checks.append((i, len(tokens) - 1, op.name,
                           H.expected(op, window[-sum(op.params):])[k]))
        batch.append(tokens)
    return h, compile_graph(h.graph), batch, checks


def test_combined_graph_selects_at_no_extra_depth(combined) -> None:
    h, compiled, _, _ = combined
    assert cost(h.graph, [h.graph.node("emit")]).depth == max(ALU_OPS[x].depth for x in SHALLOW)
    assert len(compiled.blocks) == 4  # operand lookups sit in block 1 beside the first FFNs
    emit = h.graph.writer(h.graph.node("emit"))
    total = sum(abs(Fraction(u.weight)) * _magnitude(u.gate) * _magnitude(u.value)
                for u in emit.units)
    assert total < F32_LIMIT


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_combined_model_computes_every_op(combined, dtype) -> None:
    _, compiled, batch, checks = combined
    model = build_model(compiled, dtype)
    with torch.no_grad():
        got = model(torch.tensor(batch)).argmax(-1).tolist()
    wrong = [(name, got[i][p], byte) for i, p, name, byte in checks if got[i][p] != byte]
    assert not wrong, f"{dtype}: {wrong[:5]}"


# ---- division -----------------------------------------------------------------------------

# op family -> (depth, hidden units, FFN nodes) for i32 and i64, as stated in universal/alu.py
DIVISION_COST = {
    "div_u": ((13, 7023, 904), (29, 23129, 2576)),
    "rem_u": ((16, 8230, 970), (32, 25574, 2694)),
    "div_s": ((15, 7181, 1122), (31, 23441, 2872)),
    "rem_s": ((18, 8387, 1173), (34, 25885, 2975)),
}


# the default run checks these (building an i64 circuit takes seconds); slow runs all
QUICK_DIVISION = ("i32.div_s", "i32.rem_u")
division_circuit = functools.cache(H.circuit)


def _division_params():
    return [name if name in QUICK_DIVISION else pytest.param(name, marks=pytest.mark.slow)
            for name in DIVISION]


def division_cases(n: int, rng: random.Random, randoms: int) -> list[tuple[int, int]]:
    """The edges the brief names (0, +-1, INT_MIN, INT_MAX, divisors 1 and -1, a dividend
    below the divisor, powers of two and 2**k +- 1) paired up, then random pairs."""
    m, top = (1 << (8 * n)) - 1, 1 << (8 * n - 1)
    edges = [x & m for x in (0, 1, 2, 3, 7, 10, 255, 256, 257, 0xFFFF, 0x10001, top - 1, top,
                             top + 1, m, m - 1, m - 9, (1 << (8 * n - 8)) + 1, (1 << 31) - 1,
                             (1 << 32) + 1, 0xFF00FF)]
    dividends, divisors = ((0, 1, m, top, top - 1, 12345), (1, m, 2, m - 1, 7)) if n == 4 \
        else ((0, m, top, 12345), (1, m, 7))
    cases = [(a, b) for a in dividends for b in divisors]
    cases += [(1, 2), (5, 9), (top, m), (top, 1), (m, m), (m - 1, m), (6, 3), (7, 0)]
    cases += [(rng.choice(edges), rng.choice(edges)) for _ in range(10 if n == 4 else 4)]
    cases += [(H.random_value(rng, n), H.random_value(rng, n)) for _ in range(randoms)]
    cases += [(H.random_value(rng, n), rng.randrange(1, 300)) for _ in range(randoms // 2)]
    return cases


def check_division(c: H.Circuit, cases: list[tuple[int, int]]) -> int:
    """Every case: the result bytes are the semantics', or the semantics trap and exactly
    that reason's flag is 1. Returns the number of traps seen."""
    trapped = 0
    for a, b in cases:
        got, flags = c(a, b)
        want, reason = H.outcome(c.op, [a, b])
        if reason is None:
            assert got == want and not any(flags.values()), (c.op.name, a, b, got, want, flags)
        else:
            trapped += 1
            assert flags[reason] == 1 and sum(flags.values()) == 1, (c.op.name, a, b, flags)
    return trapped


@pytest.mark.parametrize("name", _division_params())
def test_division_equals_the_semantics(name: str) -> None:
    division = division_circuit(name)
    n = division.op.params[0]
    cases = division_cases(n, random.Random(division.op.name), randoms=4 if n == 8 else 6)
    trapped = check_division(division, cases)
    assert trapped >= 1  # b == 0 is among the cases (and INT_MIN / -1 for div_s)
    assert set(division.traps) == ({"DIV_BY_ZERO", "INT_OVERFLOW"}
                                   if division.op.name.endswith("div_s") else {"DIV_BY_ZERO"})


@pytest.mark.parametrize("name", _division_params())
def test_division_depth_units_and_magnitudes(name: str) -> None:
    division = division_circuit(name)
    op = division.op
    c = cost(division.graph, division.result)
    stated = DIVISION_COST[op.name.split(".")[1]][op.params[0] // 8]
    assert (c.depth, c.units, c.nodes) == stated, op.name
    assert c.depth == op.depth
    _check_magnitudes(division.graph)
    for x in division.result:
        assert x.range.integer and 0 <= x.range.lo and x.range.hi <= 255
    assert max(cost(division.graph, [f]).depth for f in division.traps.values()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", DIVISION)
def test_division_sweep(name: str) -> None:
    """Many more operand pairs: the harness's edge values paired at random, random pairs."""
    division = division_circuit(name)
    n = division.op.params[0]
    rng = random.Random(division.op.name + "sweep")
    edges = H.edge_values(n)
    cases = [(rng.choice(edges), rng.choice(edges)) for _ in range(300 if n == 4 else 150)]
    cases += division_cases(n, rng, randoms=100 if n == 4 else 60)
    assert check_division(division, cases) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", DIVISION)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_division_torch_model(name: str, dtype) -> None:
    """The compiled model of one division op (the harness's token stream: ``a b S_k``) emits
    the semantics' bytes, in both dtypes (the numerics guard proves them exact first)."""
    h = H.build([name], max_len=160, merged=True)
    op, n = h.ops[0], h.ops[0].params[0]
    rng = random.Random(name)
    tokens, checks = [], []
    cases = division_cases(n, rng, randoms=8)
    rng.shuffle(cases)
    for a, b in cases:
        want, reason = H.outcome(op, [a, b])
        if reason is not None:
            continue
        k = rng.randrange(n)
        if len(tokens) + 2 * n + 1 > 160:
            break
        tokens += H.value_bytes(a, n) + H.value_bytes(b, n) + [H.selector(k)]
        checks.append((len(tokens) - 1, want[k]))
    model = build_model(compile_graph(h.graph), dtype)
    with torch.no_grad():
        got = model(torch.tensor([tokens])).argmax(-1)[0].tolist()
    wrong = [(p, got[p], byte) for p, byte in checks if got[p] != byte]
    assert len(checks) >= 8 and not wrong, wrong[:5]
