"""The graph layer's exceptions (``graph`` imports nothing from the rest of wasmformer)."""

from __future__ import annotations


class GraphError(ValueError):
    """A graph is built wrongly: unknown node, duplicate name, bad range, non-integer key."""


class EvaluationError(GraphError):
    """The exact evaluator found a value outside its node's declared range, or a bad token."""


class MarginError(EvaluationError):
    """The best and second-best output logits are closer than the graph's minimum margin."""
