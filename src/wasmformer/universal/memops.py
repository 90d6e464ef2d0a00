"""What the memory and global instructions are, as features of their op tokens.

Every property here is a column of the embedding on the ``OP:<op>`` tokens (0 elsewhere),
so a fetched record gives it linearly, with no decoding layer (``record.OP_FEATURES``):

  is_load, is_store         an integer load / store (``machine.semantics.LOADS``/``STORES``)
  is_access                 either
  access_1 .. access_8      the bytes a load or store touches (one flag per width)
  load_signed               a sign-extending load (``*_s``)
  global_get, global_set    the two global instructions
  memory_size, memory_grow  ``memory.size``, ``memory.grow``

(Float loads and stores are not integer ops: the fused program marks them unsupported.)
"""

from __future__ import annotations

from collections.abc import Callable

from wasmformer.machine.semantics import LOADS, STORES

MEMORY_OPS = (*LOADS, *STORES, "global.get", "global.set", "memory.size", "memory.grow")
WIDTHS = (1, 2, 4, 8)


def access_width(op: str) -> int:
    """The bytes a load or store touches (0 for any other op)."""
    if op in LOADS:
        return LOADS[op][0]
    return STORES.get(op, 0)


def _columns() -> dict[str, Callable[[str], int]]:
    cols: dict[str, Callable[[str], int]] = {
        "is_load": lambda op: int(op in LOADS),
        "is_store": lambda op: int(op in STORES),
        "is_access": lambda op: int(op in LOADS or op in STORES),
        "load_signed": lambda op: int(op in LOADS and op.endswith("_s")),
        "global_get": lambda op: int(op == "global.get"),
        "global_set": lambda op: int(op == "global.set"),
        "memory_size": lambda op: int(op == "memory.size"),
        "memory_grow": lambda op: int(op == "memory.grow"),
    }
    for w in WIDTHS:
        cols[f"access_{w}"] = lambda op, w=w: int(access_width(op) == w)
    return cols


OP_COLUMNS = _columns()  # feature name -> op name -> value
