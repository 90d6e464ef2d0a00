"""Reading a CODE record of the prompt: its fields, fetched by position.

A record's fields sit at fixed offsets (``machine.prompt.CODE_FIELDS``), so field byte o
of the record starting at position r is the token at r + o. A lookup keyed by position
(exact and cheap) copies the window of one position: 8 tokens. ``Record`` covers the
fields it is asked for with as few such fetches as possible (greedy interval cover), and
exposes each field as linear maps of the fetched features.
"""

from __future__ import annotations

from collections.abc import Iterable

from wasmformer.graph import Graph, GraphError, Linear, LinearLike, as_linear
from wasmformer.machine.prompt import CODE_FIELDS, CODE_RECORD

from .memops import OP_COLUMNS as MEMORY_OP_COLUMNS
from .window import SPAN, VALUE, Window

SIZE: dict[str, int] = dict(CODE_FIELDS)
OFFSET: dict[str, int] = {name: sum(size for _, size in CODE_FIELDS[:i])
                          for i, (name, _) in enumerate(CODE_FIELDS)}
assert sum(SIZE.values()) == CODE_RECORD

MODE_FLAGS = ("SRC_STACK", "SRC_LOCAL", "SRC_CONST")
DST_FLAGS = ("DST_PUSH", "DST_SET", "DST_TEE")
OP_FEATURES = ("op_id", "wide_a", "wide_b", "a_sized_by_w", "sized_by_w", "deep", "indirect",
               "stages", *MEMORY_OP_COLUMNS)
BITS = tuple(f"bit{i}" for i in range(8))


def features_of(field: str) -> tuple[str, ...]:
    """The token features a reader of ``field`` needs at each of its tokens."""
    if field == "op":
        return OP_FEATURES
    if field in ("A", "B"):
        return MODE_FLAGS
    if field == "dst":
        return DST_FLAGS
    if field in ("valueA", "valueB"):
        return VALUE
    return ("byte",)


def fetch_ends(fields: Iterable[str]) -> list[int]:
    """Record offsets at which to fetch windows so that every byte of ``fields`` is seen."""
    wanted = sorted({OFFSET[f] + i for f in fields for i in range(SIZE[f])})
    ends: list[int] = []
    for o in wanted:
        if ends and ends[-1] - o < SPAN and o <= ends[-1]:
            continue
        ends.append(max(x for x in wanted if x < o + SPAN))
    return ends


def window_needs(fields: Iterable[str]) -> dict[int, set[str]]:
    """What the window must carry, by distance, for ``Record(fields)`` to read its fields."""
    fields = list(fields)
    needs: dict[int, set[str]] = {}
    for offset, end, field in _placements(fields):
        needs.setdefault(end - offset, set()).update(features_of(field))
    return needs


def _placements(fields: list[str]) -> list[tuple[int, int, str]]:
    """(record offset, fetch end, field) for every token of ``fields``."""
    ends = fetch_ends(fields)
    out = []
    for f in fields:
        for i in range(SIZE[f]):
            o = OFFSET[f] + i
            end = min(e for e in ends if e - SPAN < o <= e)
            out.append((o, end, f))
    return out


class Record:
    """The fields ``fields`` of the record starting at position ``start`` (a Linear)."""

    def __init__(self, g: Graph, window: Window, name: str, start: LinearLike,
                 fields: Iterable[str]):
        self.fields = list(fields)
        self.start = start = as_linear(start)
        plan: dict[int, list[tuple[int, str]]] = {}  # fetch end -> (distance, feature)
        for offset, end, field in _placements(self.fields):
            for feature in features_of(field):
                plan.setdefault(end, []).append((end - offset, feature))
        self._at: dict[tuple[int, str], Linear] = {}  # (record offset, feature) -> copied
        p = g.position()
        for end, wanted in plan.items():
            head = g.lookup(f"{name}@{end}", query=start + end, key=p,
                            values=[window.at(d, f) for d, f in wanted])
            for (d, feature), out in zip(wanted, head.results, strict=True):
                self._at[end - d, feature] = as_linear(out)

    def feature(self, field: str, i: int, feature: str) -> Linear:
        key = (OFFSET[field] + i, feature)
        if key not in self._at:
            raise GraphError(f"record field {field!r} byte {i} feature {feature!r} not fetched")
        return self._at[key]

    def number(self, field: str, size: int | None = None) -> Linear:
        """The field as a little-endian number of its low ``size`` bytes (all by default)."""
        n = SIZE[field] if size is None else size
        return sum((self.feature(field, i, "byte") * (256 ** i) for i in range(n)),
                   start=Linear())

    def bytes(self, field: str) -> list[Linear]:
        return [self.feature(field, i, "byte") for i in range(SIZE[field])]

    def bits(self, field: str) -> list[Linear]:
        return [self.feature(field, i, b) for i in range(SIZE[field]) for b in BITS]

    def flag(self, field: str, flag: str) -> Linear:
        """A mode/destination flag (e.g. ``flag('A', 'SRC_STACK')``) or an op feature."""
        return self.feature(field, 0, flag)
