"""The ALU table: every integer instruction's circuit, keyed by its WebAssembly name.

``ALU_OPS[name](g, *operands)`` builds the circuit of instruction ``name`` in graph ``g``
from byte-limb ``Operand``s and returns the result's bytes (little-endian Linears, each
an integer 0..255, ready for ``emit_token_id``). ``AluOp.depth`` is its FFN depth.
``ALU_OPS[name].pending(g, *operands)`` stops one layer short: each result byte is the
list of units of its last layer (or a Linear), so that a caller can add the last layers
of many ops, each under its own enable flag (``units.enabled``), into one node per
emitted byte: selecting the executed op's result then costs no layer and no residual
width beyond that node.
The definition it must agree with, bit for bit, is ``machine.semantics.NUMERIC``.

Depth (FFN layers) and hidden units, i32 / i64, materialised (tests/test_alu.py checks
both; per layer in brackets):

    op family                 depth     units i32 / i64
    add, sub                  2         30 / 62 (sub +1)  [3n | 5n - 2] carry look-ahead (arith)
    eq, ne, lt/gt/le/ge _s _u 2         14-16 / 26-28     [3n | 2-4] signs of byte differences
    eqz                       1         1 / 1
    and / or, xor             1         32 / 64, 36 / 72  per bit (bitwise)
    shl, shr_u, shr_s         2         47 / 113          [8n | n*n - n + 1] bit, then byte select
    rotl, rotr                2         48 / 128          [8n | n*n]
    clz, ctz                  1         32 / 64
    popcnt                    0         0                 linear in the bits
    wrap, extend*             0         0                 linear (convert)
    mul                       4         256 / 896         [80 146 12 18 / 288 546 24 38] (mul)
    div_u                     13 / 29   7,023 / 23,129    radix-16 long division (divide)
    rem_u                     16 / 32   8,230 / 25,574    (+ 16-bit limbs split into bytes)
    div_s                     15 / 31   7,181 / 23,441    magnitudes, then a negation
    rem_s                     18 / 34   8,387 / 25,885

With ``pending`` the last layer's units move into the caller's node, so an op costs
depth - 1 layers of its own.

Every intermediate integer stays below 2**24 in magnitude (so float32 is exact), bounded
from the declared ranges: the largest single values are mul's column sums (< 2**14),
the largest sums of |unit| in one node i64.mul's threshold layer (< 2**22). Summing the
pending last layers of all 58 non-division ops into one node stays below 2**24 as well
(~1.5e7); division's nodes keep their partial sums below 2**23 (divide.py).

Traps. ``AluOp.traps(g, *operands)`` returns ``{reason: flag}`` for the ops that can trap
(the eight division ops): ``reason`` is a trap name of ``machine.vocab`` (``DIV_BY_ZERO``;
``INT_OVERFLOW`` for div_s only: INT_MIN / -1; rem_s of INT_MIN by -1 is 0, no trap) and
``flag`` a 0/1 node, one unit on the operands (depth 1), that is 1 exactly when the
instruction traps for that reason. The result bytes are unspecified then; emitting the
``TRAP`` token is the caller's job. Other ops return ``{}``.

Division is the one family that is deep: each quotient digit needs the remainder the
digits above it leave, so any exact circuit is a chain of stages. ``divide.py`` does radix-16
long division: one layer for each of the top 3 nibbles (scalar tests), two for each of the
others (on 16-bit limbs; the divisor's multiples are ready by then); rem_* adds a selection
and the split of its limbs into bytes, the signed forms an XOR layer and a negation. ``DIVISION`` lists the ops. The universal graph does
not use these one-pass circuits: a division's trace carries its long division's stages, one
per token, and ``stages.py`` computes one stage per position (docs/UNIVERSAL.md, "Division
across tokens"); only the trap flags (``traps``) are shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from wasmformer.graph import Graph, GraphError, Linear, Node

from . import arith, bitwise, convert, divide, mul
from . import units as U
from .operand import Bytes, Operand

Builder = Callable[..., U.Result]  # (g, *operands, name=...) -> pending result bytes
TrapBuilder = Callable[..., dict[str, Node]]  # (g, *operands, name=...) -> reason: 0/1 flag

BYTES = {"i32": 4, "i64": 8}


@dataclass(frozen=True, slots=True)
class AluOp:
    """One instruction's circuit: operand and result sizes in bytes, its FFN depth, and
    (only for ops that can trap) a builder of its trap conditions."""

    name: str
    params: tuple[int, ...]
    result: int
    depth: int
    build: Builder
    trap_flags: TrapBuilder | None = None

    def __call__(self, g: Graph, *operands: Operand, name: str | None = None) -> Bytes:
        """The result bytes as features: one node per byte computed by an FFN, the
        others linear maps of the operands."""
        name = name or self.name
        return tuple(U.materialize(g, f"{name}.r{k}", x)
                     for k, x in enumerate(self.pending(g, *operands, name=name)))

    def pending(self, g: Graph, *operands: Operand, name: str | None = None) -> U.Result:
        """The result bytes with their last FFN layer not yet materialised (``depth - 1``
        layers built): sum ``units.enabled(x, flag)`` of several ops into one node to
        select among them at no extra depth."""
        self._check(operands)
        result = self.build(g, *operands, name=name or self.name)
        assert len(result) == self.result, f"{self.name}: {len(result)} result bytes"
        for k, x in enumerate(result):
            r = x.range if isinstance(x, Linear) else None
            if r is not None and (not r.integer or r.lo < 0 or r.hi > 255):
                raise GraphError(f"{self.name}: result byte {k} has range {r}")
        return result

    def traps(self, g: Graph, *operands: Operand, name: str | None = None) -> dict[str, Node]:
        """When this op traps: ``{reason: flag}`` with ``reason`` a trap name of
        ``machine.vocab`` (``DIV_BY_ZERO``, ``INT_OVERFLOW``) and ``flag`` a 0/1 node that is 1
        exactly when the operands make the instruction trap with that reason (at most one is
        1). Empty for ops that never trap. The result bytes are unspecified when a flag is 1:
        the caller emits the trap instead (this module emits no trap token)."""
        if self.trap_flags is None:
            return {}
        self._check(operands)
        return self.trap_flags(g, *operands, name=f"{name or self.name}.trap")

    def _check(self, operands: tuple[Operand, ...]) -> None:
        if tuple(x.n for x in operands) != self.params:
            raise GraphError(f"{self.name}: operands of {[x.n for x in operands]} bytes, "
                             f"want {list(self.params)}")


def _family(t: str) -> dict[str, AluOp]:
    n = BYTES[t]
    two, one = (n, n), (n,)
    ops: dict[str, tuple[tuple[int, ...], int, int, Builder]] = {
        "add": (two, n, 2, arith.add),
        "sub": (two, n, 2, arith.sub),
        "mul": (two, n, 4, mul.mul),
        "eqz": (one, 4, 1, arith.eqz),
        "clz": (one, n, 1, partial(bitwise.count_zeros, leading=True)),
        "ctz": (one, n, 1, partial(bitwise.count_zeros, leading=False)),
        "popcnt": (one, n, 0, bitwise.popcnt),
    }
    ops |= {kind: (two, 4, 2, partial(arith.compare, kind=kind)) for kind in arith.COMPARISONS}
    ops |= {kind: (two, n, 1, partial(bitwise.bitwise, kind=kind))
            for kind in ("and", "or", "xor")}
    ops |= {kind: (two, n, 2, partial(bitwise.shift, kind=kind)) for kind in bitwise.SHIFTS}
    table = {f"{t}.{k}": AluOp(f"{t}.{k}", *spec) for k, spec in ops.items()}
    for k, (depth_u, depth_s) in DIVISION_DEPTH[t].items():
        for signed, depth in ((False, depth_u), (True, depth_s)):
            name = f"{t}.{k}_{'s' if signed else 'u'}"
            options = {"signed": signed, "remainder": k == "rem"}
            table[name] = AluOp(name, two, n, depth, partial(divide.divide, **options),
                                partial(divide.traps, **options))
    return table


# FFN depth of the division circuits (unsigned, signed): radix-16 long division (divide.py)
DIVISION_DEPTH = {"i32": {"div": (13, 15), "rem": (16, 18)},
                  "i64": {"div": (29, 31), "rem": (32, 34)}}


def _conversions() -> dict[str, AluOp]:
    table = {  # name: (operand bytes, result bytes, bytes kept, signed)
        "i32.wrap_i64": (8, 4, 4, False),
        "i64.extend_i32_s": (4, 8, 4, True),
        "i64.extend_i32_u": (4, 8, 4, False),
        "i32.extend8_s": (4, 4, 1, True),
        "i32.extend16_s": (4, 4, 2, True),
        "i64.extend8_s": (8, 8, 1, True),
        "i64.extend16_s": (8, 8, 2, True),
        "i64.extend32_s": (8, 8, 4, True),
    }
    return {name: AluOp(name, (size,), n, 0,
                        partial(convert.extend, keep=keep, signed=signed, n=n))
            for name, (size, n, keep, signed) in table.items()}


ALU_OPS: dict[str, AluOp] = {**_family("i32"), **_family("i64"), **_conversions()}

# The division ops: exact in one pass, but 13-34 layers deep (see the module docstring); the
# universal graph executes them across their stage tokens instead (stages.py).
DIVISION = tuple(f"{t}.{k}" for t in BYTES for k in ("div_s", "div_u", "rem_s", "rem_u"))

# The integer instructions the ALU does not compute: none.
MISSING: tuple[str, ...] = ()
