"""Linear memory: loads, stores, ``memory.size``/``grow``, and the out-of-bounds condition.

Memory is a third keyed address space, byte-addressed. Every position carries one key:

  a run byte       ``MEM address(4) n(2)`` then n bytes (a prompt ``DATA`` record, or a
                   host call's memory run in the trace): byte o of the run has key
                   address + o. The run is the latest ``MEM`` marker (one head on its
                   flag), its address and n are read at the marker + 6 (a position head).
  a store's byte   byte k of a store (a byte token in the store's span, after the first
                   anchor, not an anchor payload) has key address + k, the address being
                   the store's operand A (read at this position: ``cur``'s slot, by the
                   stack/local keys) + its offset X.
  anything else    INVALID (beyond every address a load asks for).

A load of N bytes at address a emits, per result byte k, memory byte a + min(k, N - 1):
the latest position whose key is that address (a store after the prompt, else the
prompt's data line), else 0 (nothing was written: the lookup misses). Bytes k >= N are the
extension: 0, or 255 times bit 7 of byte N - 1 for a signed load.

Addresses are read as bits: the low ``Limits.mem_bits`` bits of the base give the key (a
tight range, which the lookup's float64 exactness needs), the count of its higher set
bits says the access is out of bounds anyway (every memory fits in 2**mem_bits bytes:
``Limits.check``). Static offsets are below 2**mem_bits (``Limits.check``).

Depth: the run keys exist from block 2; a store's address is a block-6 FFN node (the
operand reads are block-6 heads), so the key is ready for the loads' block-7 head, the
same layer as a call's other-frame read: no layer is added.

Out of bounds (``oob``): 1 at a position whose next token belongs to a load or store that
touches a byte at or past the memory's current size (memsize.py: the prompt's ``MEMORY``
pages, or the latest successful ``memory.grow``'s old size + delta). The graph does not
emit a trap; the node is for the trap mechanism (info["traps"]). The ``memory.size`` and
``memory.grow`` tokens are memsize.py's units, added to this module's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wasmformer.graph import Graph, Linear, LinearLike, Node, as_linear
from wasmformer.graph.functions import clamp, clamped_key, equals

from . import units as U
from .limits import SLOT_LIMIT, Limits
from .locate import Anchor
from .memops import WIDTHS
from .memsize import GROW_RESULT, Size, grow_units, memory_size, memsize_window_needs
from .operand import Operand
from .record import Record
from .state import KEY_STEP, Read, Reads, WriteKeys, local_miss
from .window import Window

RUN_HEADER = 6  # a run's n ends 6 tokens after its MEM marker; its bytes follow
PAGE = 65536
CUR_FIELDS = ("X", "valueA")  # what a store's key needs of its own record
ADDRESS_BITS = 32
ONE = Linear((), 1)


def memory_window_needs() -> dict[int, set[str]]:
    return memsize_window_needs()


@dataclass(frozen=True)
class Sources:
    """One operand slot's i32 value as bits, from each source it may come from."""

    is_const: Linear
    is_stack: Linear
    is_local: Linear
    const: Sequence[Linear]
    stack: Sequence[Linear]
    local: Sequence[Linear]
    local_hit: Node  # 1 when the local read hit a write of this frame (else it reads 0)


@dataclass(frozen=True)
class Memory:
    units: U.Units  # the next token's units: load, store and memory.size bytes
    oob: Node  # 1: the next token's load/store is out of bounds
    key: Node  # this position's memory key
    address: Node  # the next load's/store's address (low bits) + offset
    size: Size  # the current size in pages (memsize.py)


def memory(g: Graph, window: Window, anchor: Anchor, nxt: Record, cur: Record,
           reads: Reads, keys: WriteKeys, x_cur: Linear, this_in_header: Linear,
           sel: Sequence[Node], body: Linear, b: Operand, limits: Limits,
           run: tuple[Linear, Node] | None = None) -> Memory:
    """``sel``: the next token's offset flags; ``b``: the next instruction's operand B
    (a store's value); ``keys``: the stack/local write keys (to read a store's address);
    ``run``: ``run_bytes``'s result when the caller already made it."""
    bits = limits.mem_bits
    invalid = 2 ** (bits + 1) + 8  # beyond every address + offset + 7
    is_load, is_store = nxt.flag("op", "is_load"), nxt.flag("op", "is_store")

    # the next instruction's address: a load's slot B, a store's slot A
    load_src = _next_sources(g, nxt, reads, "B")
    store_src = _next_sources(g, nxt, reads, "A")
    x_next = nxt.number("X", _bytes_for(bits))
    address = U.node(g, "mem.address", _gated(load_src, is_load, _low(bits))
                     + _gated(store_src, is_store, _low(bits))
                     + [(1, nxt.flag("op", "is_access"), x_next)], 0, 2 ** (bits + 1))
    high = U.node(g, "mem.high", _gated(load_src, is_load, _high(bits))
                  + _gated(store_src, is_store, _high(bits)), 0, ADDRESS_BITS)

    # this position's key: a run byte, a store's byte, or INVALID
    run_address, in_run = run if run is not None else run_bytes(g, window)
    valid_store = (cur.flag("op", "is_store") + window.at(0, "is_byte") + anchor.present
                   - this_in_header - 2)
    stored = _cur_sources(g, window, anchor, cur, keys)
    key_units: U.Units = [(1, in_run, run_address)]
    key_units += _gated(stored, valid_store, _low(bits))
    key_units += [(1, valid_store, cur.number("X", _bytes_for(bits))
                   + x_cur - cur.number("C", limits.pc_bytes))]
    key_units += [(invalid, ONE, ONE), (-invalid, in_run, ONE), (-invalid, valid_store, ONE)]
    raw_key = U.node(g, "mem.raw_key", key_units, 0, invalid)
    # clamped to [0, 2**bits]: every in-bounds byte address is below 2**bits (the memory's
    # size), so a key at 2**bits only ever meets an out-of-bounds query (which traps);
    # halving the key's range takes ~1.3 bits off the scores (docs/UNIVERSAL.md)
    key, key_square = clamped_key(g, raw_key, 0, 2**bits, name="mem.key")

    # a load reads byte min(k, N - 1); bytes k >= N are the extension
    kk_units: U.Units = []
    fill_units: U.Units = []
    for j, s in enumerate(sel[:8]):
        for w in WIDTHS:
            gate = s + nxt.flag("op", f"access_{w}") + is_load - 2
            kk_units += [(min(j, w - 1), gate, ONE)] if min(j, w - 1) else []
            fill_units += [(1, gate, ONE)] if j >= w else []
    kk = U.node(g, "mem.byte_index", kk_units, 0, 7)
    fill = U.node(g, "mem.fill", fill_units, 0, 1)
    # the query clamped to the keys' range too, in the layer of the key's clamp: only an
    # in-bounds read's bytes are used (below 2**bits: unchanged), and a query beyond the
    # keys would enlarge the scores by as much as a key beyond them (docs/UNIVERSAL.md)
    query = clamp(g, as_linear(address) + kk, 0, 2**bits, name="mem.query")
    found = g.lookup("mem_read", query=query, key=key, key_square=key_square,
                     values=[window.at(0, "byte"), window.at(0, "bit7")])
    z = as_linear(found.matched_key) - address - kk  # 0: a byte was written there
    byte, sign = (as_linear(x) for x in found.results)

    size = memory_size(g, window, anchor, cur, x_cur, this_in_header, b, limits)
    # out of bounds: address + N > the current size, or base bits above mem_bits set
    width = sum((w * nxt.flag("op", f"access_{w}") for w in WIDTHS), start=Linear())
    over = address + width + 2 ** (bits + 2) * high
    oob = U.node(g, "mem.oob", size.units(lambda s: U.step(over - PAGE * s, 1),
                                          nxt.flag("op", "is_access")), 0, 1)

    body = body - oob  # an access that traps emits the trap's tokens instead (traps.py)
    units: U.Units = []
    units += U.enabled(_triangle(z, byte), is_load + body - fill - 1)
    units += U.enabled(_triangle(z, 255 * sign), is_load + body + fill
                       + nxt.flag("op", "load_signed") - 3)
    for k in range(8):
        units += U.enabled(b.bytes[k], is_store + sel[k] + body - 2)
    for k in range(GROW_RESULT):
        units += size.byte_units(k, nxt.flag("op", "memory_size") + sel[k] + body - 2)
    units += grow_units(g, size, nxt.flag("op", "memory_grow"), b, sel, body)

    return Memory(units, oob, key, address, size)


def _bytes_for(bits: int) -> int:
    return (bits + 7) // 8


def _low(bits: int):
    return lambda b: sum((b[i] * 2 ** i for i in range(bits)), start=Linear())


def _high(bits: int):
    return lambda b: sum((b[i] for i in range(bits, ADDRESS_BITS)), start=Linear())


def _triangle(z: Linear, value: LinearLike) -> U.Units:
    """value when z == 0, else 0 (z an integer)."""
    return [(1, z + 1, value), (-2, z, value), (1, z - 1, value)]


def _gated(src: Sources, enable: LinearLike, of) -> U.Units:
    """``of(bits)`` of the slot's value when ``enable`` is 1 (else 0): the constant, the
    stack slot, or the local when written in this frame (an unwritten local is 0).

    (The local's hit is a node of its own: folding the frame check's triangle into these
    units, as ``state.assemble`` does for bytes, would multiply its wide gate by a
    17-bit value, past float64's exact range in the numerics guard's bound.)"""
    enable = as_linear(enable)
    return [(1, src.is_const + enable - 1, of(src.const)),
            (1, src.is_stack + enable - 1, of(src.stack)),
            (1, src.is_local + src.local_hit + enable - 2, of(src.local))]


def _hit(g: Graph, name: str, local: Read, frame: Linear) -> Node:
    return equals(g, local_miss(local, frame), 0, name=f"{name}.local_hit")


def _value_bits(read_window: dict[tuple[int, str], Linear]) -> list[Linear]:
    """An i32's 32 bits from a writer's window (byte k at distance 3 - k)."""
    return [read_window[3 - i // 8, f"bit{i % 8}"] for i in range(ADDRESS_BITS)]


def _next_sources(g: Graph, nxt: Record, reads: Reads, slot: str) -> Sources:
    local = reads.local[slot]
    return Sources(nxt.flag(slot, "SRC_CONST"), nxt.flag(slot, "SRC_STACK"),
                   nxt.flag(slot, "SRC_LOCAL"), nxt.bits(f"value{slot}")[:ADDRESS_BITS],
                   _value_bits(reads.stack[slot].window), _value_bits(local.window),
                   _hit(g, f"mem.next_{slot}", local, reads.frame))


def _cur_sources(g: Graph, window: Window, anchor: Anchor, cur: Record,
                 keys: WriteKeys) -> Sources:
    """Slot A of this token's instruction (a store's address), read from the state."""
    bit_names = [(3 - i // 8, f"bit{i % 8}") for i in range(ADDRESS_BITS)]
    values = [window.at(d, f) for d, f in bit_names]
    base = anchor.depth * SLOT_LIMIT
    slot = cur.number("height", 1) - 1 - cur.flag("B", "SRC_STACK")
    stack = keys.stack.lookup(g, "cur_stack_A", KEY_STEP * (base + slot), values)
    query = KEY_STEP * (base + cur.number("valueA", 1))
    local = keys.local.lookup(g, "cur_local_A", query, [*values, anchor.frame])
    local_values = [as_linear(x) for x in local.results]
    read = Read(dict(zip(bit_names, local_values, strict=False)), as_linear(local.matched_key),
                query, local_values[-1])
    return Sources(cur.flag("A", "SRC_CONST"), cur.flag("A", "SRC_STACK"),
                   cur.flag("A", "SRC_LOCAL"), cur.bits("valueA")[:ADDRESS_BITS],
                   [as_linear(x) for x in stack.results], local_values[:-1],
                   _hit(g, "mem.cur_A", read, anchor.frame))


def run_bytes(g: Graph, window: Window) -> tuple[Linear, Node]:
    """(address + o, 1 when this position is byte o of a memory run)."""
    p = g.position()
    marker = as_linear(g.lookup("mem_run", query=1, key=window.tokens.flag["MEM"],
                                values=[p]).results[0])
    header = g.lookup("mem_run_header", query=marker + RUN_HEADER, key=p,
                      values=[window.number([5, 4, 3, 2]), window.number([1, 0])])
    address, n = (as_linear(x) for x in header.results)
    o = p - marker - RUN_HEADER - 1
    in_run = U.node(g, "mem_run.in", U.step(o, 0) + U.step(n - 1 - o, 0) + U.constant(-1),
                    0, 1)
    return address + o, in_run
