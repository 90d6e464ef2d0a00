"""The window: at every position, the features of the 7 tokens before it (layer 1).

One attention head per distance d = 1..7 (query p - d, key p: distinct keys, so exact
and cheap). Position p then sees tokens p-7..p, enough for any value (8 bytes ends at
its last byte), any prompt field, or an anchor's payload. Every head carries the byte and
its bits; a head carries a named feature only at the distances some reader asks for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from wasmformer.graph import Graph, GraphError, Linear, as_linear

from .features import TokenFeatures

SPAN = 8  # tokens visible at a position: itself and the 7 before it
VALUE = ("byte", *(f"bit{i}" for i in range(8)))


class Window:
    """``at(d, name)``: the feature ``name`` of the token d positions back (d = 0: this one)."""

    def __init__(self, g: Graph, tokens: TokenFeatures, needs: Mapping[int, Iterable[str]]):
        self.tokens = tokens
        p = g.position()
        self._at: dict[tuple[int, str], Linear] = {}
        for name in VALUE:
            self._at[0, name] = as_linear(tokens.named(name))
        for name in needs.get(0, ()):
            self._at[0, name] = as_linear(tokens.named(name))
        for d in range(1, SPAN):
            names = list(VALUE) + sorted(set(needs.get(d, ())) - set(VALUE))
            head = g.lookup(f"win{d}", query=p - d, key=p,
                            values=[tokens.named(n) for n in names])
            for name, out in zip(names, head.results, strict=True):
                self._at[d, name] = as_linear(out)

    def at(self, d: int, name: str) -> Linear:
        if (d, name) not in self._at:
            raise GraphError(f"the window does not carry {name!r} at distance {d}")
        return self._at[d, name]

    def number(self, distances: Iterable[int]) -> Linear:
        """The little-endian number whose bytes are at ``distances`` (least significant first)."""
        return sum((self.at(d, "byte") * (256 ** i) for i, d in enumerate(distances)),
                   start=Linear())

    def keys(self) -> list[tuple[int, str]]:
        """Every (distance, feature) the window carries (what a later lookup may copy)."""
        return list(self._at)
