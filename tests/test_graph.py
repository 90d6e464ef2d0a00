"""The graph DSL and its exact evaluator: primitives, helpers, ranges, margins, examples."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from wasmformer.graph import (
    EvaluationError,
    Evaluator,
    Ffn,
    Graph,
    GraphError,
    Linear,
    Lookup,
    MarginError,
    Mean,
    Range,
    generate,
)
from wasmformer.graph import functions as F
from wasmformer.graph.examples import (
    MemoryVocab,
    memory,
    memory_reference,
    running_sum,
    running_sum_reference,
)
from wasmformer.graph.output import emit_selected, emit_token_id

# ---- fixtures: a vocabulary whose token t carries query t // 10 and key t % 10 ----------


def pair_graph(strict: bool = False) -> tuple[Graph, Lookup]:
    g = Graph(vocab_size=100, max_len=64)
    query = g.token_feature("q", [t // 10 for t in range(100)])
    key = g.token_feature("k", [t % 10 for t in range(100)])
    lk = g.lookup("lk", query, key, [g.position(), 2 * key + 1], strict=strict)
    return g, lk


def run(g: Graph, tokens: list[int]) -> Evaluator:
    ev = Evaluator(g)
    for t in tokens:
        ev.feed(t)
    return ev


def tok(query: int, key: int) -> int:
    return 10 * query + key


def found_positions(tokens: list[int], strict: bool = False) -> list[int]:
    g, lk = pair_graph(strict)
    return run(g, tokens).values(lk.results[0])


# ---- linear maps and ranges -----------------------------------------------------------


def test_linear_operators_normalise() -> None:
    g = Graph(4)
    a = g.token_feature("a", [0, 1, 2, 3])
    b = g.token_feature("b", [5, 5, -5, 0])
    x = 2 * a - b + 1 - a + b / 2
    assert x.terms == ((a, 1), (b, Fraction(-1, 2)))
    assert x.bias == 1
    assert (a - a).terms == () and (a - a).bias == 0
    assert -a == Linear(((a, -1),), 0)
    assert g.linear({b: 3, a: 0}, 2) == 3 * b + 2
    assert g.one() == Linear((), 1)


def test_linear_ranges_are_derived() -> None:
    g = Graph(4)
    a = g.token_feature("a", [0, 1, 2, 3])
    b = g.token_feature("b", [5, 5, -5, 0])
    assert a.range == Range(0, 3, integer=True)
    assert (2 * a - b + 1).range == Range(-4, 12, integer=True)
    assert (a / 2).range == Range(0, Fraction(3, 2), integer=False)


def test_floats_and_products_are_refused() -> None:
    g = Graph(2)
    a = g.token_feature("a", [0, 1])
    with pytest.raises(GraphError):
        g.token_feature("f", [0.5, 1])
    with pytest.raises(GraphError):
        _ = a * 0.5
    with pytest.raises(GraphError):
        _ = a * a


def test_range_rounds_integer_ends_and_refuses_empty() -> None:
    assert Range(Fraction(1, 2), Fraction(7, 2), integer=True) == Range(1, 3, integer=True)
    with pytest.raises(GraphError):
        Range(3, 2)
    assert Range(0, 5).meet(Range(2, 9, integer=True)) == Range(2, 5, integer=True)


# ---- graph construction -----------------------------------------------------------------


def test_names_are_unique_and_nodes_belong_to_their_graph() -> None:
    g, other = Graph(2), Graph(2)
    a = g.token_feature("a", [0, 1])
    with pytest.raises(GraphError):
        g.token_feature("a", [1, 0])
    foreign = other.token_feature("x", [0, 1])
    with pytest.raises(GraphError):
        g.mean("m", foreign)
    with pytest.raises(GraphError):
        g.token_feature("short", [1])
    assert g.fresh_name("a") == "a#2"
    assert g.node("a") is a


def test_nodes_and_ops_are_topological_with_writers() -> None:
    g, lk = pair_graph()
    m = g.mean("m", lk.results[1])
    f = F.step(g, lk.matched_key, 3)
    assert [n.name for n in g.nodes] == ["q", "k", "position", "lk.key", "lk.0", "lk.1", "m",
                                         f.name]
    assert all(n.index == i for i, n in enumerate(g.nodes))
    assert [type(op) for op in g.ops] == [Lookup, Mean, Ffn]
    assert g.writer(lk.results[0]) is lk and g.writer(m).output is m
    assert g.writer(g.node("q")) is None
    assert tuple(lk) == lk.outputs and lk.reads[0] == Linear(((g.node("q"), 1),), 0)


def test_lookup_needs_integer_query_and_key() -> None:
    g = Graph(3)
    a = g.token_feature("a", [0, 1, 2])
    with pytest.raises(GraphError):
        g.lookup("bad", a / 2, a, [a])


# ---- lookups ----------------------------------------------------------------------------


def test_lookup_exact_match_and_values() -> None:
    tokens = [tok(0, 3), tok(0, 5), tok(5, 7), tok(3, 1)]
    g, lk = pair_graph()
    ev = run(g, tokens)
    assert ev.values(lk.matched_key) == [3, 3, 5, 3]
    assert ev.values(lk.results[0]) == [0, 0, 1, 0]
    assert ev.values(lk.results[1]) == [7, 7, 11, 7]


def test_lookup_tie_goes_to_the_latest_position() -> None:
    # key 3 at positions 0, 2, 3; the read at position 4 must see position 3, not 0 or 2
    tokens = [tok(0, 3), tok(0, 8), tok(0, 3), tok(0, 3), tok(3, 9)]
    assert found_positions(tokens)[4] == 3
    # equidistant keys (4 and 6 around query 5): the later one, whichever it is
    assert found_positions([tok(0, 4), tok(0, 6), tok(5, 0)])[2] == 1
    assert found_positions([tok(0, 6), tok(0, 4), tok(5, 0)])[2] == 1


def test_lookup_picks_the_nearest_key_on_a_miss() -> None:
    g, lk = pair_graph()
    ev = run(g, [tok(0, 1), tok(0, 9), tok(0, 6), tok(7, 0)])
    assert ev.values(lk.matched_key)[3] == 6  # |7-6| < |7-9| < |7-1|, and 0 is further
    assert ev.values(lk.results[0])[3] == 2


def test_lookup_strict_excludes_the_current_position() -> None:
    tokens = [tok(3, 3), tok(3, 3), tok(1, 1)]
    assert found_positions(tokens) == [0, 1, 2]
    assert found_positions(tokens, strict=True) == [0, 0, 1]  # position 0: no candidate -> 0
    g, lk = pair_graph(strict=True)
    ev = run(g, [tok(9, 9)])
    assert [ev.values(n)[0] for n in lk] == [0, 0, 0]


# ---- means and ffns -----------------------------------------------------------------------


def test_mean_is_exact_and_strict_is_shifted() -> None:
    g = Graph(10)
    d = g.token_feature("d", list(range(10)))
    m, s = g.mean("m", d), g.mean("s", 3 * d - 1, strict=True)
    ev = run(g, [1, 2, 4, 0])
    assert ev.values(m) == [1, Fraction(3, 2), Fraction(7, 3), Fraction(7, 4)]
    assert ev.values(s) == [0, 2, Fraction(7, 2), 6]  # means of [], [2], [2, 5], [2, 5, 11]
    assert m.range == Range(0, 9) and s.range == Range(-1, 26)


def test_ffn_sums_gated_units() -> None:
    g = Graph(7)
    x = g.token_feature("x", [-3, -2, -1, 0, 1, 2, 3])
    f = g.ffn("f", [(2, x, x + 1), (Fraction(1, 2), -x, g.one())])
    ev = run(g, list(range(7)))
    expected = [2 * max(v, 0) * (v + 1) + Fraction(max(-v, 0), 2) for v in range(-3, 4)]
    assert ev.values(f) == expected
    # interval arithmetic: 2 * [0, 3] * [-2, 4] + 1/2 * [0, 3] (sound, not tight below)
    assert f.range == Range(-12, Fraction(51, 2))
    assert all(f.range.contains(v) for v in expected)


def test_declared_range_is_checked_by_the_evaluator() -> None:
    g = Graph(5)
    x = g.token_feature("x", [0, 1, 2, 3, 4])
    f = g.ffn("f", [(1, x, 1)], range=Range(0, 2, integer=True))
    ev = run(g, [0, 1, 2])
    assert ev.values(f) == [0, 1, 2]
    with pytest.raises(EvaluationError, match="outside its range"):
        ev.feed(3)
    with pytest.raises(GraphError):
        g.ffn("g", [(1, x, 1)], range=Range(10, 20))  # misses the derived 0..4


# ---- helpers -----------------------------------------------------------------------------


def integers_graph(lo: int, hi: int) -> tuple[Graph, object]:
    g = Graph(vocab_size=hi - lo + 1)
    return g, g.token_feature("x", list(range(lo, hi + 1)))


def check_helper(lo: int, hi: int, build, expect) -> None:
    """Build a helper on x in lo..hi and compare it with ``expect(x)`` at every integer."""
    g, x = integers_graph(lo, hi)
    node = build(g, x)
    ev = run(g, list(range(hi - lo + 1)))
    assert ev.values(node) == [expect(v) for v in range(lo, hi + 1)]


def test_step_and_equals() -> None:
    check_helper(-6, 6, lambda g, x: F.step(g, x, 2), lambda v: int(v >= 2))
    check_helper(-6, 6, lambda g, x: F.equals(g, x, -1), lambda v: int(v == -1))
    check_helper(-6, 6, lambda g, x: F.equals(g, 2 * x, 4, times=x - 7),
                 lambda v: v - 7 if v == 2 else 0)


def test_piecewise_linear_and_clamp() -> None:
    points = [(-2, 5), (0, 1), (1, 1), (4, Fraction(-1, 2))]

    def expect(v: int):
        if v <= -2:
            return 5
        if v >= 4:
            return Fraction(-1, 2)
        for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
            if x0 <= v <= x1:
                return y0 + Fraction(y1 - y0, 1) * (v - x0) / (x1 - x0)
        raise AssertionError

    check_helper(-5, 7, lambda g, x: F.piecewise_linear(g, x, points), expect)
    check_helper(-5, 7, lambda g, x: F.clamp(g, x, -1, 3), lambda v: min(max(v, -1), 3))


def test_product_select_min_max() -> None:
    check_helper(0, 6, lambda g, x: F.product(g, x, 3 - x), lambda v: v * (3 - v))
    check_helper(0, 1, lambda g, x: F.select(g, x, 7 * x + 2, -5), lambda v: 9 if v else -5)
    check_helper(-4, 4, lambda g, x: F.minimum(g, x, 1 - x), lambda v: min(v, 1 - v))
    check_helper(-4, 4, lambda g, x: F.maximum(g, x / 2, 1 - x), lambda v: max(Fraction(v, 2), 1 - v))


def test_helpers_refuse_inputs_outside_their_domain() -> None:
    g, x = integers_graph(-3, 3)
    with pytest.raises(GraphError):
        F.product(g, x, x)  # negative first factor
    with pytest.raises(GraphError):
        F.select(g, x, 1, 2)  # condition not 0/1
    with pytest.raises(GraphError):
        F.step(g, x / 2, 1)  # not integer


# ---- output, margins, generation ----------------------------------------------------------


def test_emit_token_id_and_margin() -> None:
    g, x = integers_graph(0, 5)
    emit_token_id(g, 5 - x)
    ev = Evaluator(g)
    assert [ev.append(t) for t in range(6)] == [5, 4, 3, 2, 1, 0]
    assert all(p.margin >= 1 for p in ev.predictions)


def test_a_tie_or_small_margin_is_an_error_not_a_pick() -> None:
    g, x = integers_graph(0, 3)
    g.set_output([x], [[1], [1], [0], [-1]])  # tokens 0 and 1 tie whenever x != 0
    ev = Evaluator(g)
    with pytest.raises(MarginError):
        ev.append(0)  # x = 0: all logits 0
    g2, x2 = integers_graph(0, 3)
    g2.set_output([x2], [[1], [Fraction(3, 4)], [0], [0]])
    ev2 = Evaluator(g2)
    with pytest.raises(MarginError, match="position 0"):
        ev2.append(1)  # margin 1/4 < 1/2
    assert ev2.append(2) == 0  # margin 1/2 is enough


def test_emit_selected_with_default() -> None:
    g, x = integers_graph(0, 3)
    emit_selected(g, {1: F.equals(g, x, 1), 2: F.equals(g, x, 2)}, default=0)
    ev = Evaluator(g)
    assert [ev.append(t) for t in [0, 1, 2, 3]] == [0, 1, 2, 0]


def test_generate_stops_and_respects_max_len() -> None:
    g = running_sum(max_len=16)
    assert generate(g, [3, 4], 5) == [7, 4, 8, 6, 2]  # 7, 7+7=14, 14+4=18, 18+8=26, ...
    assert generate(g, [3, 4], 5, stop=4) == [7, 4]
    with pytest.raises(EvaluationError, match="max_len"):
        generate(g, [1], 20)
    with pytest.raises(EvaluationError):
        Evaluator(g).append(10)  # not a token


# ---- the example graphs -----------------------------------------------------------------


def test_running_sum_machine_matches_its_reference() -> None:
    rng = random.Random(1)
    g = running_sum(max_len=300)
    tokens = [rng.randrange(10) for _ in range(300)]
    ev = Evaluator(g)
    assert [ev.append(t) for t in tokens] == running_sum_reference(tokens)
    assert ev.values(g.node("digit_sum"))[-1] == sum(tokens)


def memory_program(vocab: MemoryVocab, rng: random.Random, length: int) -> list[int]:
    tokens: list[int] = []
    while len(tokens) < length:
        a = vocab.address(rng.randrange(vocab.addresses))
        if rng.random() < 0.5:
            tokens += [vocab.W, a, vocab.value(rng.randrange(vocab.values))]
        else:
            tokens += [vocab.R, a]
    return tokens


def test_memory_machine_reads_the_latest_write() -> None:
    v = MemoryVocab(addresses=4, values=5)
    g = memory(4, 5)
    seq = [v.W, v.address(2), v.value(1), v.W, v.address(2), v.value(3), v.R, v.address(2)]
    assert generate(g, seq, 1) == [v.value(3)]  # the latest write; an earliest-write reading: 1
    assert generate(g, seq + [v.R, v.address(0)], 1) == [v.value(0)]  # never written: 0
    ev = Evaluator(g)
    outputs = [ev.append(t) for t in seq]
    assert outputs[1] == v.value(0) and outputs[4] == v.value(1)  # before each write: old value


def test_memory_machine_matches_its_reference() -> None:
    rng = random.Random(2)
    v = MemoryVocab(addresses=6, values=4)
    g = memory(6, 4)
    programs = [memory_program(v, rng, 200)] + [
        [rng.randrange(v.size) for _ in range(100)] for _ in range(3)  # any token sequence
    ]
    for tokens in programs:
        ev = Evaluator(g)
        assert [ev.append(t) for t in tokens] == memory_reference(tokens, v)
