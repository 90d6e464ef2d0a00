"""The exact evaluator: runs a graph on a token sequence with ints and Fractions.

It is the oracle the compiled torch model is compared to, so it is written to be
obviously right rather than fast: each step computes every op at the new position,
lookups scan the whole prefix (O(n) per token), means keep an exact running sum.
Every value is checked against its node's range; the output's argmax must win by at
least the graph's ``min_margin``. Build the graph completely before making an
Evaluator; after an error mid-step the evaluator's state is partial: start a new one.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from fractions import Fraction

from .errors import EvaluationError, GraphError, MarginError
from .graph import Graph
from .linear import LinearLike, Node, as_linear
from .nodes import Ffn, Lookup, Mean, Output, Position, TokenFeature
from .values import Value, exact


@dataclass(frozen=True, slots=True)
class Prediction:
    """The output at one position: the argmax token, its margin over the runner-up, all logits."""

    token: int
    margin: Value | None  # None when the vocabulary has a single token
    logits: tuple[Value, ...]


class Evaluator:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.tokens: list[int] = []
        self.predictions: list[Prediction | None] = []  # None where fed without predicting
        self._columns: list[list[Value]] = [[] for _ in graph.nodes]  # [node.index][position]
        self._sums: dict[Mean, Value] = {op: 0 for op in graph.ops if isinstance(op, Mean)}

    def append(self, token: int) -> int:
        """Add ``token`` at the next position, compute every node there; return the next token."""
        if self.graph.output is None:
            raise GraphError("the graph has no output: call set_output")
        self.feed(token)
        p = len(self.tokens) - 1
        prediction = predict(self.graph.output, self._at(p), f"position {p}")
        self.predictions[p] = prediction
        return prediction.token

    def feed(self, token: int) -> None:
        """Add ``token`` and compute every node at its position, without predicting."""
        graph, p = self.graph, len(self.tokens)
        if len(graph.nodes) != len(self._columns):
            raise GraphError("the graph grew after this Evaluator was made: build it first")
        if isinstance(token, bool) or not isinstance(token, int):
            raise EvaluationError(f"token must be an int, got {token!r}")
        if not 0 <= token < graph.vocab_size:
            raise EvaluationError(f"token {token} at position {p} is outside 0..{graph.vocab_size - 1}")
        if p >= graph.max_len:
            raise EvaluationError(f"position {p} is past the graph's max_len {graph.max_len}")
        self.tokens.append(token)
        self.predictions.append(None)
        for node in graph.nodes:
            if isinstance(node, TokenFeature):
                self._store(node, node.table[token])
            elif isinstance(node, Position):
                self._store(node, p)
        for op in graph.ops:
            self._run(op, p)

    def values(self, x: LinearLike) -> list[Value]:
        """The value of a node (or a Linear over nodes) at every position so far."""
        x = as_linear(x)
        return [x.evaluate(self._at(p)) for p in range(len(self.tokens))]

    # ---- one position --------------------------------------------------------------

    def _at(self, p: int):
        return lambda node: self._columns[node.index][p]

    def _store(self, node: Node, value: Value) -> None:
        p = len(self._columns[node.index])
        if not node.range.contains(value):
            raise EvaluationError(f"node {node.name!r} = {value} at position {p} is outside "
                                  f"its range {node.range}")
        self._columns[node.index].append(value)

    def _run(self, op: Lookup | Mean | Ffn, p: int) -> None:
        if isinstance(op, Lookup):
            results = lookup_at(op, p, self._at)
        elif isinstance(op, Mean):
            results = (self._mean_at(op, p),)
        else:
            results = (ffn_at(op, self._at(p)),)
        for node, value in zip(op.outputs, results, strict=True):
            self._store(node, value)

    def _mean_at(self, op: Mean, p: int) -> Value:
        value = op.value.evaluate(self._at(p))
        before = self._sums[op]
        self._sums[op] = before + value
        if op.strict:
            return exact(Fraction(before, p)) if p > 0 else 0
        return exact(Fraction(before + value, p + 1))


def lookup_at(op: Lookup, p: int, at) -> tuple[Value, ...]:
    """The outputs of a lookup head at position ``p``; ``at(j)`` gives node values at j."""
    query = op.query.evaluate(at(p))
    best_j, best_score = None, None
    last = p - 1 if op.strict else p
    for j in range(last, -1, -1):  # latest first, so only a strictly better score replaces
        score = -((query - op.key.evaluate(at(j))) ** 2)
        if best_score is None or score > best_score:
            best_j, best_score = j, score
    if best_j is None:
        return (0,) * len(op.outputs)
    if op.key_square is not None:
        shifted = op.key.evaluate(at(best_j)) - op.centre
        if op.key_square.evaluate(at(best_j)) != shifted**2:
            raise EvaluationError(f"lookup {op.name!r}: key_square is not (key - centre)**2 at "
                                  f"position {best_j}")
    return tuple(x.evaluate(at(best_j)) for x in (op.key, *op.values))


def ffn_at(op: Ffn, value_of) -> Value:
    total: Value = 0
    for u in op.units:
        gate = u.gate.evaluate(value_of)
        if gate > 0:
            total += u.weight * gate * u.value.evaluate(value_of)
    return exact(total)


def predict(output: Output, value_of, where: str = "") -> Prediction:
    """The argmax token (lowest id on ties, but a tie is always a margin error)."""
    features = [f.evaluate(value_of) for f in output.features]
    logits = tuple(
        exact(sum((c * x for c, x in zip(row, features, strict=True)), bias))
        for row, bias in zip(output.table, output.bias, strict=True)
    )
    order = sorted(range(len(logits)), key=lambda t: (-logits[t], t))
    best = order[0]
    if len(order) == 1:
        return Prediction(best, None, logits)
    margin = logits[best] - logits[order[1]]
    if margin < output.min_margin:
        raise MarginError(f"{where}: output margin {margin} < {output.min_margin}: token {best} "
                          f"(logit {logits[best]}) vs token {order[1]} (logit {logits[order[1]]})")
    return Prediction(best, margin, logits)


def generate(graph: Graph, prompt: list[int], max_new_tokens: int,
             stop: int | Collection[int] = ()) -> list[int]:
    """Greedy decoding with the exact evaluator: the new tokens (a stop token included, last)."""
    if not prompt:
        raise GraphError("generate needs a non-empty prompt")
    stops = {stop} if isinstance(stop, int) else set(stop)
    ev = Evaluator(graph)
    for token in prompt[:-1]:
        ev.feed(token)
    new: list[int] = []
    token = prompt[-1]
    while len(new) < max_new_tokens:
        token = ev.append(token)
        new.append(token)
        if token in stops:
            break
    return new
