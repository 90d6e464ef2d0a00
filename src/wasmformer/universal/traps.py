"""Traps: when the next instruction traps, its tokens are ``TRAP reason [payload]`` instead
of its own (docs/PROTOCOL.md, "The trace"), and the invocation ends there.

One mechanism serves every trap condition. A circuit that knows a condition registers it
(``TrapSources.add``) as a 0/1 feature that is 1 exactly when the *next token's
instruction* traps for that reason, with the payload's bytes where the reason has one. The
conditions are exclusive by construction: each belongs to an op, and an op's reasons are
checked in the reference executor's order. Their sum S then:

- at the instruction's first token (offset 0 in its span, not in an anchor's payload)
  emits ``TRAP``; the interpreter adds S to ``in_payload``, so the shared ``body`` term of
  every other case of the next-token node drops to 0 or below: the instruction's own
  tokens are overridden at no extra depth;
- ``TRAP`` is a marker with a payload, like ``JUMP``: the reason and the payload bytes
  still belong to the trapping instruction (``offsets``), so the same conditions hold
  there and select the reason token, then the payload's bytes.

After the trap the engine writes the next invocation's ``CALL`` anchor: depth 0, a new
frame, fresh stack slots, so nothing of the trapped invocation is read again (the trap's
own tokens carry no write keys: ``offsets``' third value).

Sources built here: ``unreachable`` and ``unsupported`` (always), and the call-depth limit: a ``call`` of a
defined function at depth ``max_depth - 1`` traps ``STACK_EXHAUSTED``, which is what the
reference executor does with ``HostLimits(max_call_depth=limits.max_depth - 1)`` (it traps
a call made with that many frames open; ``Limits.call_depth_limit``). Others come from
their circuits: the ALU's optional ``AluOp.traps`` hook (division), memory
(``MEMORY_OOB``), ``call_indirect`` (table checks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from wasmformer.graph import Graph, GraphError, Linear, LinearLike, Range, as_linear
from wasmformer.machine import vocab

from . import units as U
from .alu import ALU_OPS
from .operand import Operand
from .window import Window

TRAP = vocab.tok("TRAP")
REASONS = {name: payload for name, _, payload in vocab.TRAPS}
PAYLOAD = max(REASONS.values())  # the longest payload after the reason token (4)
ONE = Linear((), 1)
OPS = ("unreachable", "unsupported")  # the ops whose only tokens are a trap


def window_needs() -> dict[int, set[str]]:
    """The window carries the TRAP flag as far back as a trap's last token."""
    return {d: {"TRAP"} for d in range(PAYLOAD + 2)}


def offsets(window: Window) -> tuple[Linear, Linear, Linear]:
    """Like ``locate.header_offsets`` for TRAP: (the next token's offset after a TRAP
    marker, 0 when it does not follow one; 1 when the next token is the reason or a payload
    byte; 1 when this token is TRAP, its reason or payload: no value's byte)."""
    off = sum((window.at(d, "TRAP") * (d + 1) for d in range(PAYLOAD + 1)), start=Linear())
    inside = sum((window.at(d, "TRAP") for d in range(PAYLOAD + 1)), start=Linear())
    this = sum((window.at(d, "TRAP") for d in range(PAYLOAD + 2)), start=Linear())
    return off, inside, this


class TrapSources:
    """The trap conditions of the next token's instruction, by reason (vocab trap names)."""

    def __init__(self) -> None:
        self.conditions: dict[str, Linear] = {}
        self.payloads: dict[str, list[Linear]] = {}

    def add(self, reason: str, condition: LinearLike,
            payload: Sequence[LinearLike] = ()) -> None:
        """Register ``condition`` (0/1, exclusive with every other registered one) for
        ``reason``; ``payload``: the bytes after the reason token, when it has them."""
        if reason not in REASONS:
            raise GraphError(f"unknown trap reason {reason!r}")
        if len(payload) != REASONS[reason]:
            raise GraphError(f"trap {reason}: {len(payload)} payload bytes, the protocol "
                             f"has {REASONS[reason]}")
        condition = as_linear(condition)
        if not condition.range.integer or condition.range.lo < 0 or condition.range.hi > 1:
            raise GraphError(f"trap {reason}: condition range {condition.range}, want 0..1")
        if reason in self.conditions:
            raise GraphError(f"trap {reason} registered twice: merge its conditions first")
        self.conditions[reason] = condition
        self.payloads[reason] = [as_linear(x) for x in payload]

    def add_all(self, conditions: Mapping[str, LinearLike]) -> None:
        """Register a circuit's conditions (reason -> 0/1 feature, no payloads)."""
        for reason, condition in conditions.items():
            self.add(reason, condition)

    def total(self) -> Linear:
        """S: 1 when the next token's instruction traps (0 when none is registered)."""
        return sum(self.conditions.values(), start=Linear())

    def units(self, window: Window, first: LinearLike, in_payload: LinearLike) -> U.Units:
        """The next-token units: TRAP at the instruction's first token (``first``: offset 0
        in its span), the reason right after TRAP, then the payload bytes."""
        first, body = as_linear(first), 1 - as_linear(in_payload)
        units: U.Units = []
        for reason, cond in self.conditions.items():
            units += U.enabled(U.constant(TRAP), cond + first + body - 2)
            units += U.enabled(U.constant(vocab.tok(reason)), cond + window.at(0, "TRAP") - 1)
            for j, byte in enumerate(self.payloads[reason]):
                units += U.enabled(byte, cond + window.at(j + 1, "TRAP") - 1)
        return units


def unreachable(op: Mapping[str, LinearLike]) -> Linear:
    return as_linear(op["unreachable"])


def unsupported(op: Mapping[str, LinearLike]) -> Linear:
    """An instruction outside the machine (a float op) traps when executed, as the reference
    machine does; its payload is its fused pc, the record's X (machine/prompt.py)."""
    return as_linear(op["unsupported"])


def stack_exhausted(g: Graph, calls: LinearLike, depth: LinearLike, host: LinearLike,
                    max_depth: int, others: U.Units = ()) -> Linear:
    """1 when the next instruction calls a defined function (``calls`` 0/1, ``host`` 1 for
    an imported callee: no frame) at the deepest depth the graph holds; ``others``: the
    units of the same condition for other call instructions (call_indirect)."""
    gate = as_linear(calls) + as_linear(depth) - (max_depth - 1) - as_linear(host)
    return as_linear(g.ffn("trap.stack_exhausted", [(1, gate, ONE), *others],
                           range=Range(0, 1, integer=True)))


def imported(g: Graph, entry: Sequence[LinearLike]) -> Linear:
    """1 when a ``FUNCS`` entry pc (3 bytes) is ``ffffff``: an imported function."""
    total = sum((as_linear(x) for x in entry), start=Linear())
    return as_linear(g.ffn("callee.imported", U.step(total, 255 * len(entry)),
                           range=Range(0, 1, integer=True)))


def alu_traps(g: Graph, op: Mapping[str, LinearLike], alu_ops: Sequence[str],
              operands: Sequence[Operand]) -> dict[str, Linear]:
    """The conditions of the ALU ops that define a ``traps`` hook (``AluOp.traps(g,
    *operands, name=...) -> {reason: 0/1 feature}``, 1 when those operands trap), each
    gated by its op flag and merged per reason into one node (the op flags are exclusive).
    ``operands``: slots A and B, 8 bytes each."""
    gated: dict[str, U.Units] = {}
    for name in alu_ops:
        spec = ALU_OPS[name]
        hook = getattr(spec, "traps", None)
        if hook is None:
            continue
        inputs = operands[-len(spec.params):]
        inputs = tuple(Operand(x.bytes[:n], x.bits[:8 * n])
                       for x, n in zip(inputs, spec.params, strict=True))
        for reason, cond in hook(g, *inputs, name=f"alu.{name}").items():
            gated.setdefault(reason, []).append((1, as_linear(op[name]) + as_linear(cond) - 1, ONE))
    return {reason: as_linear(g.ffn(f"trap.{reason.lower()}", units,
                                    range=Range(0, 1, integer=True)))
            for reason, units in gated.items()}
