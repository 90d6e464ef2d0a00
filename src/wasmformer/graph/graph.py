"""``Graph``: the explicit builder and owner of a computation graph (no global state).

Nodes and operations are appended in topological order (an op can only read nodes
that already exist), names are unique, and every node carries a value ``Range``.
After building, a reader (evaluator, compiler) walks ``graph.ops`` / ``graph.nodes``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction

from .errors import GraphError
from .linear import Linear, LinearLike, Node, as_linear
from .nodes import Ffn, Lookup, Mean, Op, Output, Position, TokenFeature, Unit, key_centre
from .ranges import Range
from .values import Value, exact

UnitLike = Unit | tuple[Value, LinearLike, LinearLike]


class Graph:
    def __init__(self, vocab_size: int, max_len: int = 4096):
        """A graph over tokens ``0 .. vocab_size-1`` and sequences of at most ``max_len`` tokens."""
        if vocab_size < 1 or max_len < 1:
            raise GraphError(f"need vocab_size >= 1 and max_len >= 1, got {vocab_size}, {max_len}")
        self.vocab_size = vocab_size
        self.max_len = max_len
        self._nodes: list[Node] = []
        self._ops: list[Op] = []
        self._writer: dict[Node, Op] = {}
        self._names: set[str] = set()
        self._position: Position | None = None
        self._output: Output | None = None

    # ---- reading a built graph -------------------------------------------------------

    @property
    def nodes(self) -> tuple[Node, ...]:
        """Every scalar node, in topological order (``node.index`` is its place here)."""
        return tuple(self._nodes)

    @property
    def ops(self) -> tuple[Op, ...]:
        """Every operation (Lookup, Mean, Ffn), in topological order."""
        return tuple(self._ops)

    @property
    def token_features(self) -> tuple[TokenFeature, ...]:
        return tuple(n for n in self._nodes if isinstance(n, TokenFeature))

    @property
    def position_node(self) -> Position | None:
        """The position node, if the graph uses one."""
        return self._position

    @property
    def output(self) -> Output | None:
        return self._output

    def writer(self, node: Node) -> Op | None:
        """The operation computing ``node``; None for a source (token feature, position)."""
        self._check_node(node)
        return self._writer.get(node)

    def node(self, name: str) -> Node:
        for n in self._nodes:
            if n.name == name:
                return n
        raise GraphError(f"no node named {name!r}")

    def fresh_name(self, prefix: str) -> str:
        """A name not used yet: ``prefix``, else ``prefix#2``, ``prefix#3``, ..."""
        name, k = prefix, 1
        while name in self._names:
            k += 1
            name = f"{prefix}#{k}"
        return name

    # ---- sources ---------------------------------------------------------------------

    def token_feature(self, name: str, table: Sequence[Value]) -> TokenFeature:
        """The embedding column ``table[token_id]``."""
        if len(table) != self.vocab_size:
            raise GraphError(f"token feature {name!r}: table has {len(table)} entries, "
                             f"vocabulary has {self.vocab_size}")
        values = tuple(exact(v, f"{name}[{t}]") for t, v in enumerate(table))
        return self._add(TokenFeature(self._claim(name), len(self._nodes),
                                      Range.of_values(values), values))

    def position(self) -> Position:
        """The position p = 0 .. max_len-1 (one node, created on first use)."""
        if self._position is None:
            rng = Range(0, self.max_len - 1, integer=True)
            self._position = self._add(Position(self._claim("position"), len(self._nodes), rng))
        return self._position

    def one(self) -> Linear:
        """The constant 1 (the compiled model's constant-one embedding column)."""
        return Linear((), 1)

    def linear(self, coefficients: dict[Node, Value], bias: Value = 0) -> Linear:
        result = Linear.of(coefficients, bias)
        self._check_linear(result)
        return result

    # ---- operations ------------------------------------------------------------------

    def lookup(self, name: str, query: LinearLike, key: LinearLike,
               values: Sequence[LinearLike], *, strict: bool = False,
               key_square: LinearLike | None = None) -> Lookup:
        """A nearest-key, latest-on-ties attention head (see ``nodes.Lookup``).

        Outputs are named ``name.key`` and ``name.0``, ``name.1``, ...
        """
        query, key = self._input(query), self._input(key)
        if key_square is not None:
            key_square = self._input(key_square)
            centre = key_centre(key.range)
            top = max(centre - key.range.lo, key.range.hi - centre) ** 2
            if not (key_square.range.integer and key_square.range.lo >= 0
                    and key_square.range.hi <= top):
                raise GraphError(f"lookup {name!r}: key_square's range {key_square.range} "
                                 f"is not within that of (key - {centre})**2")
        values = tuple(self._input(v) for v in values)
        for what, x in (("query", query), ("key", key)):
            if not x.range.integer:
                raise GraphError(f"lookup {name!r}: {what} {x} must be integer-valued")
        self._claim(name)
        names = [f"{name}.key"] + [f"{name}.{i}" for i in range(len(values))]
        ranges = [_maybe_empty(x.range, strict) for x in (key, *values)]
        outputs = tuple(self._new_node(n, r) for n, r in zip(names, ranges, strict=True))
        return self._add_op(Lookup(name, query, key, values, strict, outputs, key_square))

    def mean(self, name: str, value: LinearLike, *, strict: bool = False,
             range: Range | None = None) -> Node:
        """The uniform average of ``value`` over the causal prefix (see ``nodes.Mean``)."""
        value = self._input(value)
        rng = Range(value.range.lo, value.range.hi)  # an average of integers is rational
        rng = _declared(_maybe_empty(rng, strict), range, name)
        self._claim(name)
        op = Mean(name, value, strict, (self._new_node(name, rng, claim=False),))
        return self._add_op(op).output

    def ffn(self, name: str, units: Iterable[UnitLike], *, range: Range | None = None) -> Node:
        """``sum(w * relu(gate) * value)`` over ``units`` (``Unit`` or ``(w, gate, value)``)."""
        units = tuple(self._unit(u) for u in units)
        if not units:
            raise GraphError(f"ffn {name!r} has no units")
        derived = Range.point(0)
        for u in units:
            derived = derived + u.gate.range.relu().times(u.value.range).scale(u.weight)
        self._claim(name)
        node = self._new_node(name, _declared(derived, range, name), claim=False)
        return self._add_op(Ffn(name, units, (node,))).output

    def set_output(self, features: Sequence[LinearLike], table: Sequence[Sequence[Value]], *,
                   bias: Sequence[Value] | None = None,
                   min_margin: Value = Fraction(1, 2)) -> Output:
        """The unembedding: ``logit[t] = sum(table[t][i] * features[i]) + bias[t]``."""
        if self._output is not None:
            raise GraphError("the output is already set")
        features = tuple(self._input(f) for f in features)
        bias = [0] * self.vocab_size if bias is None else list(bias)
        if len(table) != self.vocab_size or len(bias) != self.vocab_size:
            raise GraphError(f"output table and bias need {self.vocab_size} rows (one per token)")
        rows = []
        for t, row in enumerate(table):
            if len(row) != len(features):
                raise GraphError(f"output row {t} has {len(row)} entries, want {len(features)}")
            rows.append(tuple(exact(c, f"output[{t}]") for c in row))
        bias = tuple(exact(b, "output bias") for b in bias)
        if exact(min_margin, "min_margin") <= 0:
            raise GraphError("min_margin must be positive")
        self._output = Output(features, tuple(rows), bias, min_margin)
        return self._output

    # ---- internals -------------------------------------------------------------------

    def _claim(self, name: str) -> str:
        if not name or name in self._names:
            raise GraphError(f"node name {name!r} is empty or already used")
        self._names.add(name)
        return name

    def _add(self, node: Node) -> Node:
        self._nodes.append(node)
        return node

    def _new_node(self, name: str, rng: Range, claim: bool = True) -> Node:
        if claim:
            self._claim(name)
        return self._add(Node(name, len(self._nodes), rng))

    def _add_op(self, op: Op) -> Op:
        self._ops.append(op)
        for node in op.outputs:
            self._writer[node] = op
        return op

    def _check_node(self, node: Node) -> None:
        i = node.index
        if not (0 <= i < len(self._nodes) and self._nodes[i] is node):
            raise GraphError(f"node {node.name!r} does not belong to this graph")

    def _check_linear(self, x: Linear) -> None:
        for node in x.nodes:
            self._check_node(node)

    def _input(self, x: LinearLike) -> Linear:
        x = as_linear(x)
        self._check_linear(x)
        return x

    def _unit(self, u: UnitLike) -> Unit:
        w, gate, value = (u.weight, u.gate, u.value) if isinstance(u, Unit) else u
        return Unit(exact(w, "unit weight"), self._input(gate), self._input(value))


def _maybe_empty(rng: Range, strict: bool) -> Range:
    """A strict head's output is 0 at p == 0 (no candidate), so 0 joins its range."""
    return rng.join(Range.point(0)) if strict else rng


def _declared(derived: Range, declared: Range | None, name: str) -> Range:
    """The derived range, tightened by the user's declaration when there is one."""
    if declared is None:
        return derived
    if not isinstance(declared, Range):
        raise GraphError(f"{name!r}: a declared range must be a Range, got {declared!r}")
    try:
        return derived.meet(declared)
    except GraphError:
        raise GraphError(f"{name!r}: declared range {declared} misses derived {derived}") from None
