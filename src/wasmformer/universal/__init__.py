"""Circuits of the universal model, built with the graph DSL.

So far the ALU: every integer instruction of ``machine.semantics.NUMERIC`` (but division)
as an exact circuit on byte limbs, ``ALU_OPS[name](g, *operands) -> result bytes``.

  operand.py  Operand (bytes + bits of a value), Bytes (result bytes)
  units.py    unit groups shared by the circuits (steps, selections, ...)
  arith.py    add, sub, comparisons: carry look-ahead
  mul.py      multiplication
  bitwise.py  and/or/xor, shifts and rotations, clz/ctz/popcnt
  convert.py  wrap and extensions
  alu.py      the table ALU_OPS (with each op's FFN depth) and the division plan
  cost.py     depth / units / nodes of a built circuit
"""

from .alu import ALU_OPS, MISSING, AluOp
from .cost import Cost, cost
from .operand import Bytes, Operand

__all__ = ["ALU_OPS", "MISSING", "AluOp", "Bytes", "Cost", "Operand", "cost"]
