"""What a circuit costs in a graph: FFN depth, hidden units and materialised nodes.

Walks back from result features through FFN nodes only; anything else (token features,
positions, lookup outputs: the operands) is an input at depth 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from wasmformer.graph import Ffn, Graph, LinearLike, Node, as_linear


@dataclass(frozen=True, slots=True)
class Cost:
    depth: int  # FFN layers on the longest path from the inputs
    units: int  # hidden units of all FFN nodes on the way
    nodes: int  # FFN nodes (residual features) on the way
    widths: tuple[int, ...]  # hidden units per FFN layer, at the earliest layer (ASAP)


def cost(g: Graph, results: Iterable[LinearLike]) -> Cost:
    level: dict[Node, int] = {}  # FFN node -> its layer (1-based); inputs are layer 0

    def visit(node: Node) -> int:
        if node in level:
            return level[node]
        op = g.writer(node)
        if not isinstance(op, Ffn):
            return 0
        level[node] = 1 + max((visit(n) for x in op.reads for n in x.nodes), default=0)
        return level[node]

    depth = max((visit(n) for r in results for n in as_linear(r).nodes), default=0)
    widths = [0] * depth
    for node, layer in level.items():
        widths[layer - 1] += len(g.writer(node).units)
    return Cost(depth, sum(widths), len(level), tuple(widths))
