"""The computation-graph DSL and its exact evaluator.

A ``Graph`` is an explicit builder (no globals). Every node is one scalar feature per
position of a token sequence; nodes and ops are frozen dataclasses owned by the graph,
in topological order, with unique names and a value ``Range`` each.

API (what the compiler reads is marked *)::

    g = Graph(vocab_size, max_len=4096)
    g.token_feature(name, table) -> TokenFeature      # table[token_id], ints/Fractions
    g.position()                 -> Position          # p = 0 .. max_len-1 (one node)
    g.one()                      -> Linear            # the constant 1 (== Linear((), 1))
    g.linear({node: c}, bias)    -> Linear            # or operators: 2*a - b + 1, -a, a/3
    g.lookup(name, query, key, values, strict=False) -> Lookup   # iterable: (matched_key, v0, ...)
    g.mean(name, value, strict=False, range=None)    -> Node
    g.ffn(name, [(w, gate, value), ...], range=None) -> Node     # sum w*relu(gate)*value
    g.set_output(features, table, bias=None, min_margin=1/2) -> Output

  * g.nodes          tuple[Node, ...]      every scalar node, topological; node.index = place
  * g.ops            tuple[Op, ...]        Lookup | Mean | Ffn, topological
  * g.token_features tuple[TokenFeature, ...];  g.position_node: Position | None
  * g.output         Output | None         features: tuple[Linear], table[t][i], bias[t], min_margin
  * g.writer(node)   Op | None             the op computing a node (None: a source)
  * g.vocab_size, g.max_len
  * Node(name, index, range); TokenFeature(+table); Position; op outputs are plain Node
  * Linear(terms: tuple[(Node, coeff)], bias): bias = coefficient of the constant-one column
  * Lookup(name, query, key, values, strict, outputs); .matched_key, .results, .reads
  * Mean(name, value, strict, outputs); .output, .reads
  * Ffn(name, units: tuple[Unit(weight, gate, value)], outputs); .output, .reads
  * Range(lo, hi, integer): every value lies in lo..hi (and is whole when integer)

    Evaluator(g).append(token) -> next token (exact; ranges and output margin checked)
    Evaluator(g).feed(token); .values(node_or_linear) -> list; .predictions; .tokens
    generate(g, prompt, max_new_tokens, stop=()) -> new tokens

Helpers: ``functions`` (step, equals, piecewise_linear, clamp, product, select, minimum,
maximum, clamped_key: a lookup key clamped with its square, for ``lookup(key_square=)``), ``output`` (emit_token_id, emit_selected), ``examples`` (running_sum, memory).
Values are ints or Fractions; a float is refused. Lookup semantics: nearest key to the
query, latest position on ties, all outputs 0 when there is no candidate (strict, p == 0).
"""

from .errors import EvaluationError, GraphError, MarginError
from .evaluator import Evaluator, Prediction, generate
from .graph import Graph
from .linear import Linear, LinearLike, Node, as_linear
from .nodes import Ffn, Lookup, Mean, Op, Output, Position, TokenFeature, Unit
from .ranges import Range
from .values import Value

__all__ = [
    "EvaluationError", "Evaluator", "Ffn", "Graph", "GraphError", "Linear", "LinearLike",
    "Lookup", "MarginError", "Mean", "Node", "Op", "Output", "Position", "Prediction", "Range",
    "TokenFeature", "Unit", "Value", "as_linear", "generate",
]
