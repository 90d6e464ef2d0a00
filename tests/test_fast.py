"""The fast decoder (engine.fast) against the torch model, and its hull cache (engine.hull)
against a brute-force softmax.

- ``generate_fast`` / ``FastDecoder`` give the torch model's tokens, token for token, on every
  universal test program (each invocation's trace, several invocations on one stream), and
  the hulls answer every query of those runs (no fallback scan): the compiled loop
  (engine.kernel, numba) on every program, the numpy/Python form on two (all: slow);
- the hull's answer equals the position the float64 softmax gives weight exactly 1, on random
  keys with repeats, exact ties between different positions, collinear points and scores
  one grid step apart, for both the model's query shape and arbitrary ones; the compiled
  hull (int64 arrays) gives the same answers as hull.HullCache;
- a mean head (running sum) and a strict head decode as torch does (small example graphs).
"""

from __future__ import annotations

import copy
import functools
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from example_graphs import count_graph, induction_graph, spaced_keys_graph, wide_graph  # noqa: E402
from universal_programs import PROGRAMS, stream  # noqa: E402

from wasmformer.compiler import compile_graph  # noqa: E402
from wasmformer.engine.fast import FastDecoder, generate_fast, kernel_available  # noqa: E402
from wasmformer.engine.hull import HullCache  # noqa: E402
from wasmformer.errors import ModelNotProven  # noqa: E402
from wasmformer.machine import vocab  # noqa: E402
from wasmformer.model import PositionLimitError, build_model  # noqa: E402
from wasmformer.universal.interpreter import build_universal_graph  # noqa: E402
from wasmformer.universal.limits import Limits  # noqa: E402

MAX_LEN = 2048


@functools.cache
def universal_model():
    graph = build_universal_graph(Limits(max_len=MAX_LEN))[0]
    return build_model(compile_graph(graph), torch.float64)


# --- the decoder against the torch model ---


def decode_stream(name: str, compiled: bool) -> None:
    """Every invocation on one stream: the header fed, the trace generated up to HALT (fed
    back before the next header), equal to the token machine's trace."""
    s = stream(name)
    decoder = FastDecoder(universal_model(), compiled=compiled)
    decoder.feed(s.prompt)
    halt = vocab.tok("HALT")
    for i, trace in enumerate(s.traces):
        head = trace.step_tokens(0)
        decoder.feed(head)
        want = trace.tokens[len(head):]
        if i % 2:  # token by token, as an engine splicing tokens would
            new: list[int] = []
            while len(new) < len(want):
                new.append(decoder.next())
                if new[-1] == halt:
                    break
        else:
            decoder.next()
            new = [decoder.pending] + decoder.generate(len(want) - 1, {halt})
        assert new == want, s.describe_failure(decoder.length)
    assert decoder.scans == 0  # the hulls certified every lookup


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_compiled_decoder_gives_the_traces(name: str) -> None:
    pytest.importorskip("numba")
    decode_stream(name, compiled=True)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=() if n in ("sum_to", "frames") else pytest.mark.slow)
    for n in sorted(PROGRAMS)])
def test_python_decoder_gives_the_traces(name: str) -> None:
    decode_stream(name, compiled=False)


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.skipif(
    not kernel_available(), reason="numba is not installed"))])
def test_caches_that_double_while_decoding_give_the_traces(compiled: bool, monkeypatch) -> None:
    """The caches start at 64 positions here, so one stream doubles them five times (in the
    prompt, in generate's chunks and token by token)."""
    import wasmformer.engine.fast as fast

    monkeypatch.setattr(fast, "START_CAPACITY", 64)
    monkeypatch.setattr(fast, "CHAIN_START", 1)  # and every hull chain grows from 1 point
    decode_stream("exprs", compiled=compiled)


def test_a_value_outside_its_proven_range_stops_the_decoder() -> None:
    """The compiled loop stores a head's values in the narrowest integer type its proven
    range allows (``Attention.value_range``); a value that does not fit is an error, never
    a wrong token. Here the wider heads' ranges are narrowed to 0..255 on purpose."""
    pytest.importorskip("numba")
    model = universal_model()
    ranges = [block.attn.value_range for block in model.blocks]
    saved = [r.clone() for r in ranges]
    try:
        for r in ranges:
            wide = (r[:, 1] > 255) & (r[:, 1] < 2**62)
            r[wide] = torch.tensor([0, 255])
        decoder = FastDecoder(model, compiled=True)
    finally:
        for r, old in zip(ranges, saved, strict=True):
            r.copy_(old)
    s = stream("memory")
    with pytest.raises(ModelNotProven, match="the model's value ranges do not hold"):
        decoder.feed(s.prompt)
        for trace in s.traces:
            decoder.feed(trace.tokens)


@pytest.mark.parametrize("name", ["memory", "exprs"])
def test_gate_guards_hold_on_every_token(name: str) -> None:
    """``FeedForward.guards``: wherever a unit's guard is 0 its gate is <= 0, checked on
    every unit at every position of a real stream (the compiled loop skips such units
    without computing their gates)."""
    s = stream(name)
    decoder = FastDecoder(universal_model(), compiled=False)
    tokens = s.prompt + [t for trace in s.traces for t in trace.tokens]
    guarded = 0
    for p, token in enumerate(tokens):
        x = decoder.wte[token] + decoder.wpe[:, 0] * p + decoder.wpe[:, 1] * p * p
        for layer in decoder.layers:
            x = layer.attend(x)
            g = layer.guards
            off = ((g[:, 0] >= 0) & (x[g[:, 0]] == 0)) | ((g[:, 1] >= 0) & (x[g[:, 1]] == 0))
            assert (layer.gate @ x)[off].max(initial=0.0) <= 0.0
            guarded += int(off.sum())
            x = x + layer.down @ (np.maximum(layer.gate @ x, 0.0) * (layer.up @ x))
        decoder.length = p + 1
    assert guarded > 10 * len(tokens)  # most units are skipped by their guard


def test_generate_fast_equals_torch_generate() -> None:
    s = stream("clamp")
    prompt = s.prompt + s.traces[0].step_tokens(0)
    model = universal_model()
    halt = vocab.tok("HALT")
    want = model.generate(prompt, 100, stop=halt)
    assert want[-1] == halt
    for compiled in (False, True) if kernel_available() else (False,):
        assert generate_fast(model, prompt, 100, stop=halt, compiled=compiled) == want
        assert generate_fast(model, prompt, 3, stop=halt, compiled=compiled) == want[:3]


ENGINES = [False, pytest.param(True, marks=pytest.mark.skipif(
    not kernel_available(), reason="numba is not installed"))]
SMALL_GRAPHS = {"count": lambda: count_graph(64), "induction": lambda: induction_graph(6, 64),
                "spaced": lambda: spaced_keys_graph(64), "wide": wide_graph}


@functools.cache
def small_model(name: str):
    return build_model(compile_graph(SMALL_GRAPHS[name]()), torch.float64)


@pytest.mark.parametrize("compiled", ENGINES)
@pytest.mark.parametrize("name", sorted(SMALL_GRAPHS))
def test_small_models_token_for_token(name: str, compiled: bool) -> None:
    """Mean heads (running sums), strict heads, token-keyed squares, equidistant keys: at
    every position of random sequences the decoder's argmax is the torch model's."""
    model = small_model(name)
    rng = random.Random(name)
    for _ in range(3):
        tokens = [rng.randrange(model.config.vocab_size) for _ in range(model.config.max_len)]
        with torch.no_grad():
            want = model(torch.tensor([tokens]))[0].argmax(-1).tolist()
        decoder = FastDecoder(model, compiled=compiled)
        got = []
        for token in tokens:
            decoder.feed([token])
            got.append(decoder.best)
        assert got == want
        if name in ("induction", "spaced"):
            assert decoder.scans == 0
    prompt, n = tokens[:3], model.config.max_len - 3  # the last new token is not appended
    assert generate_fast(model, prompt, n, compiled=compiled) == model.generate(prompt, n)


def _b_row(model, decoder):
    """The spaced model's one lookup head: its block, and the query row of its y weight b."""
    for block, layer in zip(model.blocks, decoder.layers, strict=True):
        for head in layer.heads:
            if len(head.score_rows) in (2, 3):
                return block, head.index * model.config.d_qk + head.score_rows[1]
    raise AssertionError("no lookup head")


@pytest.mark.parametrize("change", ["as built", "b > 0", "b read from a token's dim"])
def test_hull_sides_keep_the_chain_the_queries_read(change: str) -> None:
    """The compiled loop keeps only the hull chain a head's queries can read
    (``fast.hull_sides``): b < 0 from constant dims, the lower one; b > 0, the upper one;
    b from a dim a token sets, both. Whatever the weights, the tokens are torch's and no
    query scans that keeping both chains would have answered (a chain dropped wrongly
    would make it scan)."""
    model = copy.deepcopy(small_model("spaced"))
    block, row = _b_row(model, FastDecoder(model))
    weight = block.attn.query.weight
    if change == "b > 0":
        weight[row] = -weight[row]
    elif change == "b read from a token's dim":
        varying = int(np.flatnonzero(model.wte.weight.numpy().std(axis=0) > 0)[0])
        weight[row, varying] = -1.0  # still b < 0 (tokens' dims are >= 0 here): any sign
    decoder = FastDecoder(model)
    sides = decoder._field("sides")
    lookup = [i for i, row in enumerate(decoder._field("heads")) if row[1] in (2, 3)]
    want_sides = {"as built": [True, False], "b > 0": [False, True],
                  "b read from a token's dim": [True, True]}[change]
    assert [list(sides[i]) for i in lookup] == [want_sides]
    rng = random.Random(11)
    tokens = [rng.randrange(model.config.vocab_size) for _ in range(model.config.max_len)]
    with torch.no_grad():
        want = model(torch.tensor([tokens]))[0].argmax(-1).tolist()
    both = FastDecoder(model)
    both._field("sides")[:] = True
    for d in (decoder, both):
        got = []
        for token in tokens:
            d.feed([token])
            got.append(d.best)
        assert got == want
    assert decoder.scans == both.scans
    assert decoder.scans == 0 or change == "b read from a token's dim"  # its b varies


@pytest.mark.parametrize("compiled", ENGINES)
def test_scan_fallback_gives_the_same_tokens(compiled: bool) -> None:
    """With every hull switched off, each lookup is the scan (the model's own softmax over
    every cached key): still the torch model's tokens."""
    model = small_model("spaced")
    rng = random.Random(7)
    tokens = [rng.randrange(model.config.vocab_size) for _ in range(model.config.max_len)]
    with torch.no_grad():
        want = model(torch.tensor([tokens]))[0].argmax(-1).tolist()
    decoder = FastDecoder(model, compiled=compiled, hulls=not compiled)
    if not compiled:
        for layer in decoder.layers:
            for head in layer.heads:
                head.hull = None
    got = []
    for token in tokens:
        decoder.feed([token])
        got.append(decoder.best)
    assert got == want
    assert decoder.scans == len(tokens)  # one lookup head, one query per position


@pytest.mark.parametrize("compiled", ENGINES)
def test_position_limit_is_refused(compiled: bool) -> None:
    model = small_model("spaced")
    decoder = FastDecoder(model, compiled=compiled)
    decoder.feed([1] * (model.config.max_len - 3))
    decoder.next()
    with pytest.raises(PositionLimitError):  # 3 more positions, then the limit
        decoder.generate(10, set())
    assert decoder.length == model.config.max_len
    with pytest.raises(PositionLimitError):
        generate_fast(model, [1] * model.config.max_len, 2, compiled=compiled)


# --- the hull against a brute-force softmax ---


GAP = 746  # a grid of queries (any integer works: attention is average-hard)


def softmax_winner(keys: np.ndarray, q: np.ndarray) -> int | None:
    """The position the model's average-hard attention gives weight exactly 1 (None: a
    tie), from exact integer scores."""
    scores = [sum(int(k) * int(c) for k, c in zip(row, q, strict=True)) for row in keys]
    best = [j for j, s in enumerate(scores) if s == max(scores)]
    return best[0] if len(best) == 1 else None


def model_query(target: int, n: int, tie: bool) -> np.ndarray:
    """The query a compiled lookup head makes for key ``target`` (compiler.lower)."""
    weight = n if tie else 1
    q = [2 * weight * target, -weight] + ([1] if tie else [])
    return np.array(q, dtype=np.float64)


class CompiledHull:
    """engine.kernel's hull functions on one head's arrays, with HullCache's interface."""

    def __init__(self, tie: bool, capacity: int = 256, integer_scores: bool = False):
        from wasmformer.engine import kernel
        self.kernel, self.d, self.count = kernel, 3 if tie else 2, 0
        # one head's two chains: pools of 2 * capacity points, the upper chain second
        pools = [np.zeros(2 * capacity, dtype=np.int64) for _ in range(4)]
        self.arrays = (*pools, np.zeros(2 * capacity, dtype=np.bool_),
                       np.array([[0, capacity]], dtype=np.int64),  # chain offsets
                       np.zeros((1, 2), dtype=np.int64), np.ones(1, dtype=np.bool_),
                       np.ones((1, 2), dtype=np.bool_),  # both chains: any query direction
                       np.zeros((1, 2), dtype=np.int64), np.zeros((1, 3), dtype=np.int64))
        self.margins = np.full(1, np.inf)  # the smallest certified score gap
        self.int_scores = np.array([integer_scores])

    def append(self, key) -> None:
        key = np.asarray(key, dtype=np.float64)
        self.kernel._hull_append(0, key, self.d, self.count, *self.arrays)
        self.count += 1

    def argmax(self, query) -> int | None:
        query = np.asarray(query, dtype=np.float64)
        winner = int(self.kernel._hull_argmax(0, query, self.d, *self.arrays, self.margins,
                                              self.int_scores))
        if winner >= 0:  # a certified winner leads by a grid spacing of at least this
            assert 1 <= self.margins[0] < np.inf
        return None if winner < 0 else winner


HULLS = {"python": HullCache,
         "compiled": pytest.param(CompiledHull, marks=pytest.mark.skipif(
             not kernel_available(), reason="numba is not installed"))}
IMPLS = pytest.mark.parametrize("make", list(HULLS.values()), ids=list(HULLS))


def check_hull(keys: list[tuple[int, ...]], queries: list[np.ndarray], tie: bool,
               must_answer: bool, make=HullCache) -> int:
    """Append keys one by one, asking every query after each; returns the answers given."""
    hull = make(tie)
    answered = 0
    for n, key in enumerate(keys, start=1):
        hull.append(np.array(key, dtype=np.float64))
        matrix = np.array(keys[:n], dtype=np.float64)
        for q in queries:
            got = hull.argmax(q)
            want = softmax_winner(matrix, q)
            if got is not None:
                assert got == want, (keys[:n], q)
                answered += 1
            elif must_answer:
                raise AssertionError(f"no answer: keys {keys[:n]}, query {q}, softmax {want}")
    return answered


@pytest.mark.parametrize("seed", range(6))
@IMPLS
def test_hull_lookup_keys_with_repeats(seed: int, make) -> None:
    """Keys (K', K'**2, p) from a small range, so keys repeat (the latest must win) and
    queries fall exactly between two keys (equal scores from different positions: the
    tie term decides)."""
    rng = random.Random(seed)
    n = 60
    ks = [rng.randrange(12) for _ in range(n)]
    keys = [(k, k * k, j) for j, k in enumerate(ks)]
    queries = [model_query(t, n, tie=True) for t in range(-2, 14)]
    assert check_hull(keys, queries, tie=True, must_answer=True, make=make) == n * len(queries)


@IMPLS
def test_hull_equidistant_keys_take_the_latest(make) -> None:
    keys = [(2, 4, 0), (6, 36, 1), (4, 16, 2), (2, 4, 3)]
    hull = make(tie=True)
    for j, k in enumerate(keys[:2]):
        hull.append(np.array(k, dtype=np.float64))
        assert hull.argmax(model_query(4, 64, tie=True)) == j  # 2 and 6 tie: the latest
    hull.append(np.array(keys[2], dtype=np.float64))
    assert hull.argmax(model_query(4, 64, tie=True)) == 2  # exact key
    assert hull.argmax(model_query(3, 64, tie=True)) == 2  # 2 and 4 tie: 4 is later
    hull.append(np.array(keys[3], dtype=np.float64))
    assert hull.argmax(model_query(3, 64, tie=True)) == 3  # the rewrite of 2 is later still


@IMPLS
def test_hull_distinct_keys(make) -> None:
    """Keys p + b (no tie term): the nearest is unique; the model's query shape."""
    keys = [(k, k * k) for k in range(5, 45)]
    queries = [model_query(t, 1, tie=False) for t in range(0, 50, 3)]
    assert check_hull(keys, queries, tie=False, must_answer=True, make=make) > 0


@IMPLS
def test_hull_exact_tie_without_tie_term_is_not_answered(make) -> None:
    """Without a tie term, two equally good keys share the softmax: the hull says None."""
    hull = make(tie=False)
    for k in (1, 3):
        hull.append(np.array([k, k * k], dtype=np.float64))
    assert hull.argmax(model_query(2, 1, tie=False)) is None
    assert softmax_winner(np.array([[1, 1], [3, 9]], dtype=np.float64),
                          model_query(2, 1, tie=False)) is None
    hull.append(np.array([2, 4], dtype=np.float64))
    assert hull.argmax(model_query(2, 1, tie=False)) == 2


@pytest.mark.parametrize("seed", range(6))
@IMPLS
def test_hull_arbitrary_points_and_directions(seed: int, make) -> None:
    """Points on a small grid (many collinear, repeated and interior points) and directions
    on a grid of GAP * n (both signs of b): the hull answers every query with the
    softmax's winner; with the tie term, scores one grid step apart are separated."""
    rng = random.Random(seed)
    n = 40
    keys = [(rng.randrange(-4, 5), rng.randrange(-4, 5), j) for j in range(n)]
    unit = GAP * n
    queries = [np.array([unit * rng.randrange(-3, 4), unit * rng.choice((-2, -1, 1, 2)),
                         GAP], dtype=np.float64) for _ in range(12)]
    assert check_hull(keys, queries, tie=True, must_answer=True, make=make) == n * len(queries)


@pytest.mark.parametrize("seed", range(4))
@IMPLS
def test_hull_arbitrary_without_tie_term(seed: int, make) -> None:
    """No tie term: answered only where one position wins; a tie is left to the scan."""
    rng = random.Random(seed)
    keys = [(rng.randrange(-5, 6), rng.randrange(-5, 6)) for _ in range(40)]
    queries = [np.array([GAP * rng.randrange(-3, 4),
                         GAP * rng.choice((-2, -1, 1, 2))]) for _ in range(12)]
    assert check_hull(keys, queries, tie=False, must_answer=False, make=make) > 0


@IMPLS
def test_hull_refuses_what_it_cannot_certify(make) -> None:
    hull = make(tie=True)
    for j, k in enumerate((0, 3, 5)):
        hull.append(np.array([k, k * k, j], dtype=np.float64))
    n = 8
    assert hull.argmax(model_query(1, n, tie=True)) == 0
    assert hull.argmax(np.array([2.0, -1.0, 1.0])) is None  # tie term >= spacing
    assert hull.argmax(np.array([0.5, -1.0, 0.0])) is None  # not integers
    assert hull.argmax(np.array([2.0, -1.0, 0.0])) == 0  # a gap of 1 suffices: average-hard
    big = 1024.0 * (2**51 + 1)  # 5 * big is over 2**53 units of the grid 1024
    assert hull.argmax(np.array([big, -1024.0, 0.0])) is None  # float scores would round
    hull.append(np.array([1.5, 2.25, 3]))  # a key that is not an integer: scan from now on
    assert hull.argmax(model_query(1, n, tie=True)) is None


@pytest.mark.skipif(not kernel_available(), reason="numba is not installed")
@pytest.mark.parametrize("tie", [False, True])
def test_compiled_hull_answers_as_the_python_hull(tie: bool) -> None:
    """Same answers, None (scan) included, on keys and queries of every kind."""
    rng = random.Random(tie)
    python, compiled = HullCache(tie), CompiledHull(tie)
    for j in range(120):
        key = [rng.randrange(-6, 7), rng.randrange(-6, 7)] + ([j] if tie else [])
        python.append(key)
        compiled.append(key)
        for _ in range(5):
            unit = rng.choice((1, GAP, GAP * 200))
            q = [unit * rng.randrange(-3, 4), unit * rng.randrange(-2, 3)]
            q += [rng.choice((0, 1, GAP, -GAP))] if tie else []
            assert python.argmax(q) == compiled.argmax(q), (j, q)


@IMPLS
def test_hull_smallest_margin_beats_the_largest_tie_term(make) -> None:
    """A key one step farther loses by N in the 2-D score, while the tie term favours
    later positions by up to N - 1: the earliest, nearer key must still win."""
    n = 64
    hull = make(tie=True)
    keys = [(5, 25, 0)] + [(6, 36, j) for j in range(1, n)]
    for key in keys:
        hull.append(np.array(key, dtype=np.float64))
    q = model_query(5, n, tie=True)
    assert hull.argmax(q) == 0 == softmax_winner(np.array(keys, dtype=np.float64), q)
    q = model_query(6, n, tie=True)  # the rewrites of 6: the latest
    assert hull.argmax(q) == n - 1 == softmax_winner(np.array(keys, dtype=np.float64), q)


# --- positional heads: keys that are a fixed quadratic of the position ---


@pytest.mark.skipif(not kernel_available(), reason="numba is not installed")
def test_positional_argmax_is_the_unique_best_position() -> None:
    """``kernel._positional_argmax`` against brute force over every position, on random
    quadratic keys x(j), y(j) and queries (a, b) of both signs: the best position when it
    is unique, -1 (the decoder stops) on a tie, which the model would average."""
    from wasmformer.engine.kernel import _positional_argmax

    rng = random.Random(3)
    answered = ties = 0
    for _ in range(3000):
        coefficients = [rng.randrange(-9, 10) for _ in range(6)]
        n = rng.randrange(1, 40)
        j = np.arange(n)
        x = coefficients[0] + coefficients[1] * j + coefficients[2] * j * j
        y = coefficients[3] + coefficients[4] * j + coefficients[5] * j * j
        a, b = rng.randrange(-50, 51), rng.choice((-1, 1)) * rng.randrange(0, 6)
        scores = a * x + b * y
        best = np.flatnonzero(scores == scores.max())
        pform = np.array([[1, *coefficients]], dtype=np.int64)
        maxabs = np.array([[abs(x).max(), abs(y).max(), 0]], dtype=np.int64)
        margins = np.full(1, np.inf)
        got = _positional_argmax(0, np.array([a, b], dtype=np.float64), n, pform, maxabs,
                                 margins, np.array([True]))
        if len(best) == 1 or n == 1:
            assert got == best[-1], (coefficients, n, a, b)
            answered += 1
        else:
            assert got == -1, (coefficients, n, a, b)
            ties += 1
    assert answered > 2000 and ties > 20  # both cases were exercised


def test_position_keyed_heads_keep_no_keys() -> None:
    """The memory graph's ``prev`` lookup (key p) is found positional from the weights,
    its content-keyed ``memory`` lookup is not; the decoder with the formula gives torch's
    tokens, and so does the decoder without hulls or formulas (every lookup a scan)."""
    from wasmformer.engine.fast import positional_keys
    from wasmformer.graph.examples import MemoryVocab, memory

    model = build_model(compile_graph(memory(max_len=256)), torch.float64,
                        score_dtype="int64")
    decoder = FastDecoder(model)
    forms = positional_keys(decoder)
    widths = [row[1] for row in decoder._field("heads")]
    assert sorted((int(w), bool(f[0])) for w, f in zip(widths, forms, strict=True)) == [
        (2, True), (3, False)]
    rng = random.Random(4)
    vocab = MemoryVocab(8, 8)
    tokens = [rng.choice((vocab.W, vocab.R)) if i % 3 == 0 else vocab.address(rng.randrange(8))
              if i % 3 == 1 else vocab.value(rng.randrange(8)) for i in range(255)]
    with torch.no_grad():
        want = model(torch.tensor([tokens]))[0].argmax(-1).tolist()
    if not kernel_available():
        return
    for d in (decoder, FastDecoder(model, hulls=False)):
        got = []
        for token in tokens:
            d.feed([token])
            got.append(d.best)
        assert got == want
    assert decoder.scans == 0
