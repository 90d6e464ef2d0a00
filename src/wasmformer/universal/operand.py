"""``Operand``: an integer value as byte limbs and bits, the ALU's input format.

An i32 is 4 byte features, an i64 8, little-endian; each byte is an integer 0..255 and
its 8 bits (0/1, least significant first) are features too: a byte token's embedding
carries both, so arithmetic circuits read bytes and bitwise circuits read bits without
converting. Results of the ALU are byte features only (``Bytes``).
"""

from __future__ import annotations

from dataclasses import dataclass

from wasmformer.graph import GraphError, Linear, LinearLike, as_linear

Bytes = tuple[Linear, ...]  # little-endian byte features, each an integer 0..255


@dataclass(frozen=True, slots=True)
class Operand:
    """``bytes[k]`` is byte k (0..255); ``bits[8k + i]`` is bit i of byte k (0/1)."""

    bytes: tuple[Linear, ...]
    bits: tuple[Linear, ...]

    def __post_init__(self) -> None:
        limbs = tuple(as_linear(x) for x in self.bytes)
        bits = tuple(as_linear(x) for x in self.bits)
        if len(limbs) not in (1, 2, 4, 8) or len(bits) != 8 * len(limbs):
            raise GraphError(f"operand needs 1, 2, 4 or 8 bytes and 8 bits per byte, got "
                             f"{len(limbs)} bytes and {len(bits)} bits")
        for what, xs, top in (("byte", limbs, 255), ("bit", bits, 1)):
            for i, x in enumerate(xs):
                r = x.range
                if not r.integer or r.lo < 0 or r.hi > top:
                    raise GraphError(f"operand {what} {i} ({x}) has range {r}, want 0..{top}")
        object.__setattr__(self, "bytes", limbs)
        object.__setattr__(self, "bits", bits)

    @staticmethod
    def of(limbs: list[LinearLike], bits: list[LinearLike]) -> Operand:
        return Operand(tuple(as_linear(x) for x in limbs), tuple(as_linear(x) for x in bits))

    @property
    def n(self) -> int:
        """The number of bytes."""
        return len(self.bytes)

    @property
    def width(self) -> int:
        """The number of bits."""
        return 8 * len(self.bytes)

    @property
    def sign(self) -> Linear:
        """The top bit (the sign of the two's-complement reading)."""
        return self.bits[-1]
