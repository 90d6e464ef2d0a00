"""Lowering: ``graph.Graph`` -> ``Program`` (features, weight rows, heads, FFN units).

Dead code is dropped first: only nodes the output depends on are materialised.

A lookup (nearest key, latest position on ties) becomes one attention head whose score
is the integer

    s(p, j) = N * (2 Q'(p) K'(j) - K'(j)**2) + j  =  N * (Q'**2 - (Q' - K')**2) + j

with K' = key - c, Q' = query - c (c = ``key_shift``: the middle of the key's range, so
|K'| is at most half the range, which takes two bits off the scores' size; a position
key's low end) and N the tie-break weight. For a fixed query, a nearer key always scores higher (the squared
distances of two candidates differ by at least 1, times N > j), and among equally near
keys the later position j wins. Query rows (2*N*Q', -N, 1) meet key rows
(K', K'**2, p). When the key is +-p + b, the candidates' keys are consecutive integers,
the nearest one is unique, so N = 1 and the third row is dropped. K'**2 must be a
residual feature of its own: a token column when the key reads only token features, a
combination of the positional features p**2, p, 1 when it reads only the position, else
an FFN node relu(K') K' + relu(-K') (-K') (which costs a layer when K is itself an FFN
output).

Why this is exact (checked per head by ``model.numerics``): every product and partial sum
of q.k is an integer below 2**53 (float64 scores) or 2**63 (int64 scores, from the exact
integer q and k), so the dot product is exact in any summation order; the model's
attention is average-hard (``model.transformer``), so the unique best score gets weight
exactly 1 and the head copies its values bit for bit. No inverse temperature is needed
(before average-hard attention the query rows carried a factor BETA = 2**10 so that a
softmax of a one-unit gap underflowed to 0; the differentiable mode keeps that scale as
``model.transformer.SOFTMAX_SCALE``). The -Q'**2 term is deliberately absent: a per-query
constant does not change which score is largest, and adding it would only enlarge the
partial sums.
"""

from __future__ import annotations

from wasmformer.graph import Ffn, Graph, Linear, Lookup, Mean, Node, Position, Range, TokenFeature

from .errors import CompilerError
from .program import Feature, Form, Head, Hidden, Mlp, Op, Program


def lower_graph(graph: Graph) -> Program:
    """The program computing ``graph``'s output (ops nothing reads are dropped)."""
    if graph.output is None:
        raise CompilerError("the graph has no output: call set_output before compiling")
    lowering = _Lowering(graph, _live_nodes(graph))
    ops: list[Op] = []
    for op in graph.ops:
        if any(n in lowering.live for n in op.outputs):
            ops.extend(lowering.op(op))
    logits = tuple(lowering.form(_logit(graph, t)) for t in range(graph.vocab_size))
    return Program(graph.vocab_size, graph.max_len, lowering.one, lowering.sources(),
                   tuple(ops), logits, graph.output.min_margin)


def _live_nodes(graph: Graph) -> set[Node]:
    """The nodes the output depends on (a lookup reads only the values whose outputs live)."""
    live = {n for f in graph.output.features for n in f.nodes}
    for op in reversed(graph.ops):
        if not any(n in live for n in op.outputs):
            continue
        reads = op.reads
        if isinstance(op, Lookup):
            values = [v for v, out in zip(op.values, op.results, strict=True) if out in live]
            square = () if op.key_square is None else (op.key_square,)
            reads = (op.query, op.key, *square, *values)
        for x in reads:
            live.update(x.nodes)
    return live


def _logit(graph: Graph, token: int) -> Linear:
    out = graph.output
    total = Linear((), out.bias[token])
    for feature, c in zip(out.features, out.table[token], strict=True):
        total = total + feature * c
    return total


class _Lowering:
    """The state of one lowering pass: the feature made for each live graph node."""

    def __init__(self, graph: Graph, live: set[Node]):
        self.graph, self.live = graph, live
        self.one = Feature("one", Range(1, 1, integer=True), table=(1,) * graph.vocab_size)
        self.feature: dict[Node, Feature] = {}
        self.extra: dict[str, Feature] = {}  # sources made for lookups: positions, squares
        for node in graph.nodes:
            if node in live and isinstance(node, TokenFeature):
                self.feature[node] = Feature(node.name, node.range, table=node.table)
            elif node in live and isinstance(node, Position):
                self.feature[node] = self.position(1)

    def sources(self) -> tuple[Feature, ...]:
        made = [f for f in self.feature.values() if f.is_source]
        made += [f for f in self.extra.values() if f not in made]
        return (self.one, *made)

    def position(self, power: int) -> Feature:
        """The positional feature p (power 1) or p**2 (power 2), made once."""
        name = "position" if power == 1 else "position^2"
        if name not in self.extra:
            top = (self.graph.max_len - 1) ** power
            self.extra[name] = Feature(name, Range(0, top, integer=True), position_power=power)
        return self.extra[name]

    def form(self, x: Linear) -> Form:
        terms = [(self.feature[node], c) for node, c in x.terms]
        if x.bias != 0:
            terms.append((self.one, x.bias))
        return Form(tuple(terms))

    def output(self, node: Node) -> Feature:
        self.feature[node] = Feature(node.name, node.range)
        return self.feature[node]

    def op(self, op: Lookup | Mean | Ffn) -> list[Op]:
        if isinstance(op, Mean):
            return [Head(op.name, "mean", op.strict, (), (), (self.form(op.value),),
                         (self.output(op.output),))]
        if isinstance(op, Ffn):
            units = tuple(Hidden(self.form(u.gate), self.form(u.value), u.weight)
                          for u in op.units)
            return [Mlp(op.name, units, self.output(op.output))]
        return self.lookup(op)

    def lookup(self, op: Lookup) -> list[Op]:
        """The head of one lookup, preceded by the FFN node of its key square if needed."""
        shift = key_shift(op)
        key, square, before = self.shifted_key(op, op.key - shift)
        distinct = _distinct_per_position(op.key)
        n = 1 if distinct else self.graph.max_len
        query = [self.form(op.query - shift).scaled(2 * n), Form(((self.one, -n),))]
        keys = [key, square]
        if not distinct:
            query.append(Form(((self.one, 1),)))
            keys.append(Form(((self.position(1), 1),)))
        pairs = [(op.key, op.matched_key)] + list(zip(op.values, op.results, strict=True))
        pairs = [(x, out) for x, out in pairs if out in self.live]
        head = Head(op.name, "lookup", op.strict, tuple(query), tuple(keys),
                    tuple(self.form(x) for x, _ in pairs), tuple(self.output(o) for _, o in pairs))
        return [*before, head]

    def shifted_key(self, op: Lookup, key: Linear) -> tuple[Form, Form, list[Op]]:
        """Rows K' and K'**2 of a lookup's key K' = key - centre, and any op computing K'**2."""
        top = max(-key.range.lo, key.range.hi)
        square_range = Range(0, top * top, integer=True)
        name = f"{op.name}.key^2"
        nodes = key.nodes
        if op.key_square is not None:  # given by the graph (``functions.clamped_key``)
            return self.form(key), self.form(op.key_square), []
        if not nodes:
            return self.form(key), Form(((self.one, key.bias**2),)), []
        if all(isinstance(n, TokenFeature) for n in nodes):
            table = tuple(key.evaluate(lambda n, t=t: n.table[t]) ** 2
                          for t in range(self.graph.vocab_size))
            self.extra[name] = Feature(name, square_range, table=table)
            return self.form(key), Form(((self.extra[name], 1),)), []
        if all(isinstance(n, Position) for n in nodes):
            c, b = key.terms[0][1], key.bias  # (c p + b)**2 = c**2 p**2 + 2 c b p + b**2
            terms = [(self.position(2), c * c), (self.position(1), 2 * c * b), (self.one, b * b)]
            return self.form(key), Form(tuple((f, k) for f, k in terms if k != 0)), []
        shifted = self.form(key)
        square = Feature(name, square_range)
        # relu(K') K' + relu(-K') (-K'): one unit per sign K' can take
        units = [Hidden(form, form, 1) for form, can in ((shifted, key.range.hi > 0),
                                                          (shifted.scaled(-1), key.range.lo < 0))
                 if can]
        mlp = Mlp(name, tuple(units), square)
        return shifted, Form(((square, 1),)), [mlp]


def key_shift(op: Lookup) -> int:
    """What a lookup's compiled key row K' subtracts from its key: the key range's centre
    (``Lookup.centre``), or its low end for a position key (+-p + b, squared from the
    positional features: the centre would not shrink its score, N = 1 there, and
    p**2 - 2 c p + c**2 is bounded term by term)."""
    if op.key_square is None and _distinct_per_position(op.key):
        return op.key.range.lo
    return op.centre


def _distinct_per_position(key: Linear) -> bool:
    """Whether the key is +-p + b: the candidates' keys are then distinct consecutive
    integers, so the key nearest an integer query is unique and needs no tie-break.
    (With |c| >= 2 two keys can be equally near, q - d and q + d.)"""
    return (len(key.terms) == 1 and isinstance(key.terms[0][0], Position)
            and abs(key.terms[0][1]) == 1)
