"""Helpers for the two common unembeddings.

``emit_token_id``: emit the token whose id equals an integer feature x. With
logit[t] = 2*t*x - t*t = x*x - (x - t)**2 the argmax is t = x, and every other token
is at least 1 behind (``min_margin`` 1).

``emit_selected``: emit token t when its selector feature s_t is 1 (the others 0):
logit[t] = s_t, margin 1; tokens without a selector get logit 0, and an optional
``default`` token gets the constant logit 1/2 so that it wins, by 1/2, when no
selector is on.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from .errors import GraphError
from .graph import Graph
from .linear import LinearLike, as_linear
from .nodes import Output


def emit_token_id(g: Graph, x: LinearLike) -> Output:
    """The next token is ``x`` (an integer feature whose range lies within the vocabulary)."""
    x = as_linear(x)
    if not x.range.integer or x.range.lo < 0 or x.range.hi >= g.vocab_size:
        raise GraphError(f"emit_token_id: {x} (range {x.range}) is not a token id of "
                         f"0..{g.vocab_size - 1}")
    table = [(2 * t, -t * t) for t in range(g.vocab_size)]
    return g.set_output([x, g.one()], table, min_margin=1)


def emit_selected(g: Graph, selectors: Mapping[int, LinearLike], *,
                  default: int | None = None) -> Output:
    """Token t wins when ``selectors[t]`` is 1 and the others are 0 (each a 0/1 feature)."""
    tokens = list(selectors)
    features = [as_linear(selectors[t]) for t in tokens]
    for t, s in zip(tokens, features, strict=True):
        if not 0 <= t < g.vocab_size or not s.range.integer or s.range.lo < 0 or s.range.hi > 1:
            raise GraphError(f"emit_selected: selector of token {t} must be a 0/1 feature")
    table = [[1 if t == u else 0 for u in tokens] for t in range(g.vocab_size)]
    bias = [0] * g.vocab_size
    if default is not None:
        if default in selectors:
            raise GraphError(f"emit_selected: default token {default} also has a selector")
        bias[default] = Fraction(1, 2)
    return g.set_output(features, table, bias=bias, min_margin=Fraction(1, 2))
