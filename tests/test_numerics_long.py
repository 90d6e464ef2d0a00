"""Long streams: average-hard attention with exact int64 scores, and the universal model's
proof at the engine's buckets (docs/UNIVERSAL.md "Numerics and limits")."""

from __future__ import annotations

import random

import pytest
import torch

from wasmformer.compiler import compile_graph, lower_graph
from wasmformer.engine import fast
from wasmformer.engine.fast import FastDecoder, kernel_available
from wasmformer.engine.models import MAX_DEPTH
from wasmformer.graph import Evaluator, Graph
from wasmformer.graph.examples import MemoryVocab, memory
from wasmformer.graph.output import emit_token_id
from wasmformer.model import NumericsError, analyse, build_model
from wasmformer.model.transformer import integer_scores, limb_scores
from wasmformer.universal import Limits, build_universal_graph

BIG = 2**25  # a key this large: N * BIG**2 > 2**53 at N = 64, below 2**63


def big_key_graph(max_len: int = 64) -> Graph:
    """Tokens 0..3: token 0 has key 0, tokens 1..3 the key BIG (one address); after each
    token emit the id of the latest token with the same key (itself included). The key's
    range 0..BIG makes the scores reach N * BIG**2 = 2**56."""
    g = Graph(vocab_size=4, max_len=max_len)
    key = g.token_feature("key", [0, BIG, BIG, BIG])
    ident = g.token_feature("id", [0, 1, 2, 3])
    found = g.lookup("latest", query=key, key=key, values=[ident])
    emit_token_id(g, found.results[0])
    return g


def evaluator_tokens(graph: Graph, tokens: list[int]) -> list[int]:
    ev = Evaluator(graph)
    return [ev.append(t) for t in tokens]


def test_int64_scores_are_exact_where_float64_scores_round() -> None:
    compiled = compile_graph(big_key_graph())
    with pytest.raises(NumericsError, match="lookup 'latest' is not exact"):
        build_model(compiled, torch.float64)  # float64 scores: refused
    report = analyse(compiled.program, torch.float64, "int64")
    check = next(c for c in report.lookups if c.name == "latest")
    assert check.ok and 2**53 < check.score_units < 2**63
    model = build_model(compiled, torch.float64, score_dtype="int64")
    assert model.config.score_dtype == "int64"
    tokens = [1, 2, 0, 3, 2, 1, 1, 3]
    logits = model(torch.tensor([tokens]))
    assert logits[0].argmax(-1).tolist() == evaluator_tokens(big_key_graph(), tokens)
    # the same weights with float64 scores: N * BIG**2 + j rounds to a multiple of 16, so
    # the latest write ties with the earlier ones and the head averages their ids
    for block in model.blocks:
        block.attn.score_dtype = "float64"
    assert not torch.equal(model(torch.tensor([tokens])), logits)


def test_int64_and_float64_scores_agree_where_both_are_proven() -> None:
    vocab = MemoryVocab(8, 8)
    compiled = compile_graph(memory(max_len=256))
    rng = random.Random(7)
    tokens = [rng.randrange(vocab.size) for _ in range(200)]
    as_float = build_model(compiled, torch.float64)
    as_int = build_model(compiled, torch.float64, score_dtype="int64")
    assert torch.equal(as_float(torch.tensor([tokens])), as_int(torch.tensor([tokens])))
    cache = as_int.new_cache()
    stepped = [as_int.run(torch.tensor([[t]]), i, cache)[0, -1] for i, t in enumerate(tokens)]
    assert torch.equal(torch.stack(stepped), as_float(torch.tensor([tokens]))[0])


def test_limb_scores_equal_int64_matmul() -> None:
    """The off-CPU form of integer_scores (three 21-bit limbs per operand, float64
    products) gives the int64 matmul's scores, negative entries and wrapping included."""
    gen = torch.Generator().manual_seed(3)
    q = torch.randint(-2**52, 2**52, (1, 2, 5, 3), generator=gen, dtype=torch.int64)
    k = torch.randint(-2**9, 2**9, (1, 2, 7, 3), generator=gen, dtype=torch.int64)
    want = q @ k.transpose(-2, -1)
    assert torch.equal(limb_scores(q.double(), k.double()), want)
    assert torch.equal(integer_scores(q.double(), k.double()), want)


def test_kv_cache_grows_and_keeps_its_entries() -> None:
    compiled = compile_graph(memory(max_len=4096))
    model = build_model(compiled, torch.float64, score_dtype="int64")
    rng = random.Random(1)
    tokens = [rng.randrange(MemoryVocab(8, 8).size) for _ in range(1500)]
    cache = model.new_cache()
    assert cache.layers[0].capacity == 1024
    model.run(torch.tensor([tokens[:1000]]), 0, cache)
    stepped = model.run(torch.tensor([tokens[1000:]]), 1000, cache)[0]
    assert cache.layers[0].capacity == 2048
    assert torch.equal(stepped, model(torch.tensor([tokens]))[0, 1000:])


@pytest.mark.parametrize("compiled", [False, pytest.param(True, marks=pytest.mark.skipif(
    not kernel_available(), reason="numba is not installed"))])
def test_fast_decoder_grows_its_arrays(monkeypatch, compiled: bool) -> None:
    """Per-position arrays from 16 positions, doubling: the same tokens as torch's
    (int64 scores), past several growths (compiled: the packed state is re-laid out)."""
    monkeypatch.setattr(fast, "START_CAPACITY", 16)
    model = build_model(compile_graph(memory(max_len=512)), torch.float64, score_dtype="int64")
    rng = random.Random(5)
    vocab = MemoryVocab(8, 8)
    prompt = [rng.choice((vocab.W, vocab.R)) if i % 3 == 0 else vocab.address(rng.randrange(8))
              if i % 3 == 1 else vocab.value(rng.randrange(8)) for i in range(100)]
    want = model.generate(prompt, 150)
    decoder = FastDecoder(model, compiled)
    assert decoder.capacity == 16
    decoder.feed(prompt[:-1])
    decoder.pending, decoder.best = prompt[-1], None
    if not compiled:
        decoder.feed([])
    assert decoder.generate(150, set()) == want
    assert 250 <= decoder.capacity < 512 and decoder.scans == 0


@pytest.mark.parametrize(("max_len", "mem_bits"), [(2**18, 20)])
def test_the_guard_proves_a_long_universal_model(max_len: int, mem_bits: int) -> None:
    """The engine's int64 scores at 2**18 positions and 2**20 bytes of memory (analysis
    only, no weights)."""
    program = lower_graph(build_universal_graph(Limits(max_len=max_len, mem_bits=mem_bits))[0])
    report = analyse(program, torch.float64, "int64")
    assert not report.problems
    bits = {c.name: c.score_units.bit_length() for c in report.lookups}
    assert bits["mem_read"] == 58 and max(bits.values()) == 58


@pytest.mark.slow
@pytest.mark.parametrize(("max_len", "mem_bits", "proven"),
                         [(2**23, 20, True), (2**24, 20, False), (2**23, 21, False)])
def test_the_guard_at_the_largest_bucket_and_beyond(max_len: int, mem_bits: int,
                                                   proven: bool) -> None:
    """2**23 positions with 2**20 bytes and the engine's call depth is proven (the memory
    read's scores below 2**62.6); one bit more of either is refused, by the memory read."""
    limits = Limits(max_len=max_len, mem_bits=mem_bits, max_depth=MAX_DEPTH)
    program = lower_graph(build_universal_graph(limits)[0])
    report = analyse(program, torch.float64, "int64")
    assert (not report.problems) == proven
    if not proven:
        assert any("'mem_read'" in p for p in report.problems)
    else:  # float64 scores: 2**53 is far too small here
        assert analyse(program, torch.float64).problems
