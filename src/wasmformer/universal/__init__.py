"""The universal model, built with the graph DSL: one graph that executes any program whose
fused instructions it covers, reading the program from the prompt (docs/PROTOCOL.md).

The interpreter (``build_universal_graph(limits) -> (graph, info)``; ``supported(fused)``
lists what a program uses that it does not execute yet):

  interpreter.py  the whole graph, layer by layer
  features.py     the embedding: what each token carries
  window.py       the 7 tokens before each position (layer 1)
  locate.py       anchors, the C(pc) rule and the floor lookup: which instruction is next
  record.py       a CODE record's fields, fetched by position
  state.py        stack slots and locals: write keys, operand reads and assembly
  memory.py       linear memory: loads, stores, memory.size, the out-of-bounds node
  globals.py      global.get / global.set
  memops.py       the memory and global ops' properties, as op-token features
  emit.py         the next token: every case in one FFN node
  limits.py       the ranges a graph is built (and exact) for

The ALU: every integer instruction of ``machine.semantics.NUMERIC`` as an exact circuit on
byte limbs, ``ALU_OPS[name](g, *operands) -> result bytes`` (``AluOp.traps``: when it traps).

  operand.py  Operand (bytes + bits of a value), Bytes (result bytes)
  units.py    unit groups shared by the circuits (steps, selections, ...)
  arith.py    add, sub, comparisons: carry look-ahead
  mul.py      multiplication
  bitwise.py  and/or/xor, shifts and rotations, clz/ctz/popcnt
  divide.py   div/rem, signed and unsigned: radix-16 long division, and their trap flags
  stages.py   div/rem across trace tokens: one long-division stage per token (the default)
  convert.py  wrap and extensions
  alu.py      the table ALU_OPS (with each op's FFN depth and trap flags)
  cost.py     depth / units / nodes of a built circuit
"""

from .alu import ALU_OPS, DIVISION, MISSING, AluOp
from .cost import Cost, cost
from .interpreter import build_universal_graph, supported
from .limits import Limits
from .operand import Bytes, Operand

__all__ = ["ALU_OPS", "DIVISION", "MISSING", "AluOp", "Bytes", "Cost", "Limits", "Operand",
           "build_universal_graph", "cost", "supported"]
