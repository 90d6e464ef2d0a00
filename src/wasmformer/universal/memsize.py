"""The memory's current size in pages, and ``memory.grow``.

The size is the prompt's ``MEMORY`` pages until a ``memory.grow`` succeeds, then the
latest successful grow's old size + delta. A size cannot be a running sum in an exact
model, and a value computed from the size lookup cannot feed that same lookup, so each
successful grow leaves both numbers where two lookups find them:

  the key      1 at a grow's last result byte when the grow succeeded (that byte is 0,
               not the 255 of -1; an i32 old size below 2**24 has a zero top byte), 0
               everywhere else. ``mem_grown`` (query 1) finds the latest such position P;
               its matched key says whether there is one (else the size is the prompt's).
  the numbers  at P - 1 (the token before the grow's last byte, whose next token is that
               byte): the old size is in its window (the result's bytes 0..2, at
               distances 2..0) and the delta is the next instruction's operand B (``b``,
               read there from the state: the grow's own result is not complete yet, so
               the read still finds the operand). ``mem_grow_delta`` reads both by
               position P - 1.

Only the low ``bits`` = bit length of the page limit of each are stored: a successful
grow has old + delta <= the cap <= ``Limits.memory_page_limit``, which keeps every
value (and the prompt's pages, ``Limits.check``) small.

A grow at the next token succeeds when size + delta <= cap, cap = min(the module's
maximum from the ``MEMORY`` record, ``Limits.memory_page_limit`` = 2**mem_bits bytes, the
memory keys' range). The reference executor agrees when run with
``HostLimits(max_memory_pages=Limits.memory_page_limit)``. Its tokens are the old size's
bytes, or 255 four times (-1).

Depth: the key is a block-5 FFN node (it needs this token's record), ``mem_grown`` a
block-6 head, ``mem_grow_delta`` a block-7 head (``b`` is a block-6 FFN node); the size
is then linear, and its users (bytes, the grow's success, out of bounds) are FFN units
under the flag ``grown`` or its complement: no layer of their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wasmformer.graph import Graph, Linear, LinearLike, as_linear

from . import units as U
from .limits import Limits
from .locate import Anchor
from .operand import Operand
from .record import Record
from .window import Window

GROW_RESULT = 4  # an i32: a grow's result is 4 bytes
ONE = Linear((), 1)
MEMORY_RECORD_END = 4  # the MEMORY record's last token: pages(4) then max(4)


def memsize_window_needs() -> dict[int, set[str]]:
    return {0: {"is_byte"}, 7: {"MEMORY"}}


@dataclass(frozen=True)
class Size:
    """The current size, as two cases: ``grown`` (1 once a grow succeeded) selects
    ``after_grow``, else ``prompt``."""

    grown: Linear
    after_grow: Linear
    prompt: Linear
    cap: Linear  # the pages a grow may reach
    limit: int  # Limits.memory_page_limit

    def units(self, of: Callable[[Linear], U.Pending], enable: LinearLike) -> U.Units:
        """``of(size)`` when ``enable`` is 1 (an integer <= 1), else 0."""
        enable = as_linear(enable)
        return (U.enabled(of(self.after_grow), enable + self.grown - 1)
                + U.enabled(of(self.prompt), enable - self.grown))

    def byte_units(self, k: int, enable: LinearLike) -> U.Units:
        """Byte k of the size when ``enable`` is 1."""
        return self.units(lambda s: size_byte(s, k, self.limit), enable)


def memory_size(g: Graph, window: Window, anchor: Anchor, cur: Record, x_cur: Linear,
                this_in_header: Linear, b: Operand, limits: Limits) -> Size:
    """``b``: the next instruction's operand B (a grow's delta)."""
    limit = limits.memory_page_limit
    bits = limit.bit_length()
    pages, cap = _prompt_memory(g, window, limit, bits)
    p = g.position()
    k_cur = x_cur - cur.number("C", limits.pc_bytes)
    on = (cur.flag("op", "memory_grow") + window.at(0, "is_byte") + anchor.present
          - this_in_header + 1 - window.at(0, "bit7"))
    # (the flags' sum reaches 4 only when all hold; its declared range is looser than that,
    # so the units are shifted by hand rather than by ``U.enabled``)
    key = U.node(g, "mem.grown_here", [(w, gate + math.ceil(gate.range.hi) * (on - 4), value)
                                       for w, gate, value in
                                       U.equals_zero(k_cur - (GROW_RESULT - 1))], 0, 1)
    latest = g.lookup("mem_grown", query=1, key=key, values=[p])
    old = _low_bits([window.at(2 - i // 8, f"bit{i % 8}") for i in range(24)], bits)
    found = g.lookup("mem_grow_delta", query=as_linear(latest.results[0]) - 1, key=p,
                     values=[old, _low_bits(b.bits, bits)])
    after = sum((as_linear(x) for x in found.results), start=Linear())
    return Size(as_linear(latest.matched_key), after, pages, cap, limit)


def grow_units(g: Graph, size: Size, is_grow: Linear, b: Operand, sel: Sequence[LinearLike],
               body: LinearLike) -> U.Units:
    """The next token's units for a ``memory.grow``: the old size's bytes, or 255 (-1)."""
    bits = size.limit.bit_length()
    high = sum((as_linear(x) for x in b.bits[bits:32]), start=Linear())
    delta = _low_bits(b.bits, bits) + 2 ** bits * high  # > cap whenever a high bit is set
    fails = as_linear(U.node(g, "mem.grow_fails",
                             size.units(lambda s: U.step(s + delta - size.cap, 1), 1), 0, 1))
    units: U.Units = []
    for k in range(GROW_RESULT):
        on = is_grow + as_linear(sel[k]) + body - 2
        units += size.byte_units(k, on - fails)
        units += U.enabled(255 * ONE, on + fails - 1)
    return units


def size_byte(size: Linear, k: int, limit: int) -> U.Units:
    """Byte k of ``size`` (an integer 0..limit, limit <= 65536): thresholds at multiples
    of 256 (none when limit < 256)."""
    top = limit // 256
    if k == 0:
        units = U.identity(size)
        for j in range(1, top + 1):
            units += U.step(size, 256 * j, weight=-256)
        return units
    if k == 1:
        units = []
        for j in range(1, min(top, 255) + 1):
            units += U.step(size, 256 * j)
        return units + (U.step(size, 65536, weight=-255) if top >= 256 else [])
    if k == 2 and top >= 256:
        return U.step(size, 65536)
    return []


def _low_bits(bits: Sequence[LinearLike], n: int) -> Linear:
    return sum((as_linear(bits[i]) * 2 ** i for i in range(n)), start=Linear())


def _prompt_memory(g: Graph, window: Window, limit: int, bits: int) -> tuple[Linear, Linear]:
    """(the prompt's pages, cap = min(its maximum, limit)), from its MEMORY record."""
    p = g.position()
    record = g.lookup("memory_pages", query=1, key=window.at(7, "MEMORY"),
                      values=[_low_bits([window.at(3 - i // 8, f"bit{i % 8}")
                                         for i in range(24)], bits), p])
    pages, at = (as_linear(x) for x in record.results)
    maximum = g.lookup("memory_max", query=at + MEMORY_RECORD_END, key=p,
                       values=[window.number([3, 2, 1]), window.at(0, "byte")])
    declared, top = (as_linear(x) for x in maximum.results)
    # min(maximum, limit); a maximum of 2**24 pages or more (NO_MAX included) is over it
    declared = declared + limit * top
    cap = U.node(g, "mem.cap", [(limit, ONE, ONE), (-1, limit - declared, ONE)], 0, limit)
    return pages, as_linear(cap)
