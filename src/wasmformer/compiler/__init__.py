"""Graph -> scheduled layers -> weights.

``compile_graph(graph)`` runs the passes in order, each one file:

  lower.py     graph -> Program (features, weight rows; lookups become exact hardmax heads)
  schedule.py  Program -> Schedule (minimum depth, then minimum width with a HiGHS MILP)
  allocate.py  Program + Schedule -> Allocation (residual slots, reused after clearing)
  compiled.py  all three -> CompiledModel (sparse exact weights) with its ModelCard

``print(compile_graph(g).card)`` shows layers, d_model, heads, FFN width, parameters and
non-zeros. The torch module is built from a ``CompiledModel`` by ``wasmformer.model``.
"""

from __future__ import annotations

from wasmformer.graph import Graph

from .allocate import Allocation, Placement, allocate
from .compiled import Block, CompiledHead, CompiledModel, CompiledUnit, ModelCard, Row, assemble
from .errors import CompilerError
from .lower import lower_graph
from .program import Feature, Form, Head, Hidden, Mlp, Program
from .schedule import TIME_LIMIT_S, Schedule, check_schedule, schedule_program


def compile_graph(graph: Graph, *, time_limit: float = TIME_LIMIT_S) -> CompiledModel:
    """Compile ``graph`` (with its output set) into exact weights on residual slots."""
    program = lower_graph(graph)
    schedule = schedule_program(program, time_limit)
    check_schedule(program, schedule)
    return assemble(program, schedule, allocate(program, schedule))


__all__ = [
    "Allocation", "Block", "CompiledHead", "CompiledModel", "CompiledUnit",
    "CompilerError", "Feature", "Form", "Head", "Hidden", "Mlp", "ModelCard", "Placement",
    "Program", "Row", "Schedule", "TIME_LIMIT_S", "check_schedule", "compile_graph", "lower_graph",
    "schedule_program",
]
