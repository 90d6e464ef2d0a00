"""The machine state the tokens hold: stack slots and locals, written and read by lookups.

Writes. A value's last byte is a position whose window holds the whole value. Every
position carries, in each of two address spaces (stack slots, locals), the key

    8 * address + (W - 1 - k)              when its token is byte k of a W-byte result
                                           that the instruction pushes (stack) or sets (local)
    a key beyond every address             otherwise (prompt, anchor payloads, other ops)

with address = depth * 256 + slot. Only a value's last byte (k = W - 1) has a key that is a
multiple of 8, so a reader querying 8 * address finds exactly the completed writes to that
slot, the latest on ties. The keys are linear in the fetched record fields, then clamped
to [-4, TOP + 4] (TOP = 8 * max_depth * 256, above every valid key; every query lies
within) in the FFN layer that the key's square needs anyway
(``graph.functions.clamped_key``): a garbage key (the offset term spans the positions in
the prompt) stays outside the valid ones, and the clamp bounds are not multiples of 8, so a
clamped key never matches a query (a local's miss is then seen as such: ``local_miss``). Without the clamp the keys' range grows with max_len
and so do the lookups' scores (docs/UNIVERSAL.md "Numerics and limits").

Reads. Operand slot A and B of the next instruction each read a stack slot (heights h-2 or
h-1, by the modes) and a local (by index); a constant comes from the record itself. One FFN
layer assembles each operand's bytes and bits: the constant, the stack value, or the local
value when it was written in the current frame (else 0: an unwritten local is zero). A
value of W bytes sits at window distances W-1 .. 0, so the reader picks distances by the
operand's width (4 or 8).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from wasmformer.graph import Graph, Linear, LinearLike, Range, as_linear
from wasmformer.graph.functions import clamped_key

from .limits import SLOT_LIMIT, Limits
from .locate import Anchor
from .operand import Operand
from .record import Record
from .window import SPAN, VALUE, Window

KEY_STEP = 8  # keys per address: one per byte of a value of up to 8 bytes


@dataclass(frozen=True)
class Key:
    """A clamped write key and its square, for ``Graph.lookup(key=, key_square=)``."""

    value: Linear
    square: Linear

    def lookup(self, g: Graph, name: str, query: LinearLike, values, **kw):
        return g.lookup(name, query=query, key=self.value, key_square=self.square,
                        values=values, **kw)


@dataclass(frozen=True)
class WriteKeys:
    stack: Key
    local: Key


def write_keys(g: Graph, cur: Record, x_cur: Linear, anchor: Anchor, in_header: Linear,
               limits: Limits) -> WriteKeys:
    """The keys of this position's token in the stack and local address spaces.

    ``cur`` is the record of the instruction this token belongs to, ``x_cur`` the token's X,
    ``in_header`` 1 when the token is an anchor's marker or payload, or a division's stage
    token (no value)."""
    c = cur.number("C", limits.pc_bytes)
    # 0 exactly at a value's last byte (a division's value follows its stage tokens)
    offset = cur.number("W", 1) - 1 - (x_cur - c) + cur.flag("op", "stages")
    stack_slot = (cur.number("height", 1) - cur.flag("A", "SRC_STACK") - cur.flag("B", "SRC_STACK")
                  - cur.flag("op", "deep"))
    base = anchor.depth * SLOT_LIMIT
    # Prompt positions need no exclusion: a reader's frame check rejects them (and a stack
    # slot always has a later write). Anchor payloads do (``locate.header_offsets``).
    invalid = in_header
    pushes = cur.flag("dst", "DST_PUSH") + cur.flag("dst", "DST_TEE")
    sets = cur.flag("dst", "DST_SET") + cur.flag("dst", "DST_TEE")
    top = KEY_STEP * limits.max_depth * SLOT_LIMIT  # every valid key is below it
    stack = _key(KEY_STEP * (base + stack_slot) + offset, invalid + 1 - pushes, top)
    local = _key(KEY_STEP * (base + cur.number("local", 1)) + offset, invalid + 1 - sets, top)
    return WriteKeys(*(Key(*map(as_linear, clamped_key(g, k, -4, top + 4,
                                                         name=f"{name}.key")))
                       for name, k in (("stack", stack), ("local", local))))


def _key(valid: Linear, invalid: Linear, top: int) -> Linear:
    """``valid`` where ``invalid`` is 0; at least ``top`` where it is >= 1."""
    return valid + (top - math.floor(valid.range.lo)) * invalid


@dataclass(frozen=True)
class Read:
    """One operand lookup: the writer's window (its last 8 tokens) by (distance, feature),
    the key it matched, and the writer's frame (local reads only)."""

    window: dict[tuple[int, str], Linear]
    matched: Linear
    query: Linear
    frame: Linear | None = None


@dataclass(frozen=True)
class Reads:
    """The lookups of the next instruction's operands: per slot, a stack slot and a local."""

    stack: dict[str, Read]  # slots A, B, and "deep": the operand below them (select's first)
    local: dict[str, Read]
    frame: Linear  # the reader's frame


def read_state(g: Graph, window: Window, keys: WriteKeys, nxt: Record, anchor: Anchor) -> Reads:
    names = [(d, f) for d in range(SPAN) for f in VALUE]
    values = [window.at(d, f) for d, f in names]
    base = anchor.depth * SLOT_LIMIT
    top = nxt.number("height", 1) - 1
    below_b = top - nxt.flag("B", "SRC_STACK")
    stack_slot = {"A": below_b, "B": top, "deep": below_b - nxt.flag("A", "SRC_STACK")}

    def read(name: str, query: Linear, key: Linear, frame: bool) -> Read:
        lk = key.lookup(g, name, query, values + ([anchor.frame] if frame else []))
        results = [as_linear(x) for x in lk.results]
        return Read(dict(zip(names, results, strict=False)), as_linear(lk.matched_key), query,
                    results[len(names)] if frame else None)

    return Reads(
        stack={s: read(f"stack_{s}", KEY_STEP * (base + stack_slot[s]), keys.stack, False)
               for s in ("A", "B", "deep")},
        local={s: read(f"local_{s}", KEY_STEP * (base + nxt.number(f"value{s}", 1)),
                       keys.local, True) for s in ("A", "B")},
        frame=anchor.frame)


def local_miss(local: Read, frame: Linear) -> Linear:
    """z: 0 exactly when the local lookup matched its address and the write is of the
    reader's ``frame`` (else the local is unwritten in this frame: it reads 0). The
    triangle relu(z + 1) - 2 relu(z) + relu(z - 1) is then [hit] for the assembling FFN."""
    miss = local.matched - local.query
    spread = math.ceil(max(-miss.range.lo, miss.range.hi)) + 1
    return miss + spread * (local.frame - frame)


def assemble(g: Graph, name: str, nxt: Record, slot: str, reads: Reads, wide: LinearLike,
             extra_stack: LinearLike = 0) -> Operand:
    """Operand slot ``slot`` ('A' or 'B') of the next instruction as 8 bytes and 64 bits.

    ``wide`` is 1 when the operand has 8 bytes (else 4); ``extra_stack`` (0/1) makes the
    slot read the stack even where its mode says otherwise (a ``return``'s results)."""
    wide = as_linear(wide)
    is_const = nxt.flag(slot, "SRC_CONST")
    is_local = nxt.flag(slot, "SRC_LOCAL")
    is_stack = nxt.flag(slot, "SRC_STACK") + extra_stack
    stack, local = reads.stack[slot].window, reads.local[slot]
    z = local_miss(local, reads.frame)
    off = math.ceil(max(-z.range.lo, z.range.hi)) + 2  # disables a unit when its enable is 0
    const = nxt.bytes(f"value{slot}"), nxt.bits(f"value{slot}")
    out_bytes, out_bits = [], []
    for k in range(8):
        for feature, out, rng in [("byte", out_bytes, 255)] + [
                (f"bit{i}", out_bits, 1) for i in range(8)]:
            c = const[0][k] if feature == "byte" else const[1][8 * k + int(feature[3:])]
            units = [(1, is_const, c)]
            for width, on in ((4, 1 - wide), (8, wide)):
                if k >= width:
                    continue
                d = width - 1 - k
                units.append((1, is_stack + on - 1, stack[d, feature]))
                gate_off = off * (is_local + on - 2)
                v = local.window[d, feature]
                units += [(1, z + 1 + gate_off, v), (-2, z + gate_off, v),
                          (1, z - 1 + gate_off, v)]
            node = g.ffn(f"{name}.{feature}{k}" if feature == "byte" else
                         f"{name}.b{8 * k + int(feature[3:])}", units,
                         range=Range(0, rng, integer=True))
            out.append(node)
    return Operand.of(out_bytes, out_bits)


def assemble_stack(g: Graph, name: str, read: Read, wide: LinearLike) -> Operand:
    """A stack value read by ``read``, as 8 bytes and 64 bits (``wide``: 8 bytes, else 4)."""
    wide = as_linear(wide)
    out_bytes, out_bits = [], []
    for k in range(8):
        for feature in VALUE:
            units = [(1, on, read.window[width - 1 - k, feature])
                     for width, on in ((4, 1 - wide), (8, wide)) if k < width]
            top = 255 if feature == "byte" else 1
            node = g.ffn(f"{name}.{feature}.{k}", units, range=Range(0, top, integer=True))
            (out_bytes if feature == "byte" else out_bits).append(node)
    return Operand.of(out_bytes, out_bits)
