"""Small graphs for the compiler and model tests, beside ``graph.examples``.

Each exercises something the two examples do not: MILP width, strict lookups with
token-keyed squares and misses (an induction head), a strict mean head.
"""

from __future__ import annotations

from wasmformer.graph import Graph, Range
from wasmformer.graph import functions as F
from wasmformer.graph.output import emit_token_id


def wide_graph() -> Graph:
    """Three means and a lookup, all read by the last FFN: ASAP stacks the means in layer 1
    (3 heads) although moving one to layer 2 (beside the lookup) needs only 2 per layer."""
    g = Graph(vocab_size=4, max_len=16)
    a = g.token_feature("a", [0, 1, 2, 3])
    means = [g.mean(f"m{i}", (i + 1) * a) for i in range(3)]
    high = F.step(g, a, 2, name="high")
    found = g.lookup("lk", query=high, key=a, values=[a])
    total = g.ffn("total", [(1, g.one(), found.results[0] + sum(means, start=0 * a))])
    g.set_output([total], [[t] for t in range(4)])
    return g


def induction_graph(vocab_size: int = 6, max_len: int = 512) -> Graph:
    """Emit the token that followed the previous occurrence of the current token (0 if none).

    prev: the token before each position (a position-keyed lookup); seen: a strict lookup
    of the current token among those previous tokens, latest occurrence first.
    """
    g = Graph(vocab_size=vocab_size, max_len=max_len)
    token = g.token_feature("token", list(range(vocab_size)))
    p = g.position()
    prev = g.lookup("prev", query=p - 1, key=p, values=[token])
    seen = g.lookup("seen", query=token, key=prev.results[0], values=[token], strict=True)
    hit = F.equals(g, seen.matched_key - token, 0, times=seen.results[0], name="hit")
    emit_token_id(g, hit)
    return g


def count_graph(max_len: int = 256) -> Graph:
    """Emit min(number of earlier 0 tokens, 3): p * (strict mean of [token == 0]), clamped."""
    g = Graph(vocab_size=4, max_len=max_len)
    is_zero = g.token_feature("is_zero", [1, 0, 0, 0])
    p = g.position()
    fraction = g.mean("fraction", is_zero, strict=True)
    count = F.product(g, p, fraction, name="count", range=Range(0, max_len, integer=True))
    emit_token_id(g, F.clamp(g, count, 0, 3, name="capped"))
    return g


def spaced_keys_graph(max_len: int = 64) -> Graph:
    """Emit the position j <= p whose key 2j is nearest the token's value: an odd value
    lies halfway between two keys, and the later position must win the tie."""
    g = Graph(vocab_size=max_len, max_len=max_len)
    target = g.token_feature("target", list(range(max_len)))
    found = g.lookup("nearest", query=target, key=2 * g.position(), values=[g.position()])
    emit_token_id(g, found.results[0])
    return g
