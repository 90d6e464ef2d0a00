"""A bounded byte reader for the WebAssembly binary format: bytes, LEB128, names.

Every read checks its bounds, so a malformed input always ends in
``MalformedModule`` naming the place (``where``) and the byte offset, never in
an ``IndexError`` or ``UnicodeDecodeError``. Messages start with the wording of
the official spec test suite ("unexpected end", "integer too large", ...).
"""

from __future__ import annotations

from typing import NoReturn

from ..errors import MalformedModule


class Reader:
    """Reads ``data[pos:end]``; offsets are positions in the whole module."""

    __slots__ = ("data", "pos", "end", "where")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None, where: str = ""):
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end
        self.where = where  # e.g. "code section, function 3"

    # --- errors ---

    def fail(self, message: str, at: int | None = None) -> NoReturn:
        offset = self.pos if at is None else at
        place = f"{self.where}, byte offset {offset}" if self.where else f"byte offset {offset}"
        raise MalformedModule(message, place)

    def _fail_end(self) -> NoReturn:
        where = " of section or function" if self.where else " of input"
        self.fail("unexpected end" + where)

    # --- raw bytes ---

    @property
    def at_end(self) -> bool:
        return self.pos >= self.end

    def byte(self) -> int:
        pos = self.pos
        if pos >= self.end:
            self._fail_end()
        self.pos = pos + 1
        return self.data[pos]

    def bytes(self, n: int) -> bytes:
        pos = self.pos
        if pos + n > self.end:
            self._fail_end()
        self.pos = pos + n
        return self.data[pos : pos + n]

    def length(self) -> int:
        """A u32 byte count that must fit in what is left (names, byte vectors, sizes)."""
        at = self.pos
        n = self.u32()
        if n > self.end - self.pos:
            self.fail(f"length out of bounds: {n} bytes, only {self.end - self.pos} left", at)
        return n

    def name(self) -> str:
        at = self.pos
        raw = self.bytes(self.length())
        try:
            return raw.decode("utf-8")  # strict: rejects overlongs, surrogates, > U+10FFFF
        except UnicodeDecodeError:
            self.fail("malformed UTF-8 encoding", at)

    # --- LEB128 ---

    def u32(self) -> int:
        pos = self.pos
        if pos < self.end:
            b = self.data[pos]
            if b < 0x80:  # fast path: most indices and counts are one byte
                self.pos = pos + 1
                return b
        return self.unsigned(32)

    def s32(self) -> int:
        return self.signed(32)

    def s33(self) -> int:
        return self.signed(33)

    def s64(self) -> int:
        return self.signed(64)

    def unsigned(self, bits: int) -> int:
        """An unsigned LEB128 of at most ceil(bits/7) bytes whose unused bits are zero."""
        start = self.pos
        last = (bits + 6) // 7 - 1
        result = 0
        for i in range(last + 1):
            b = self.byte()
            if i == last:
                if b & 0x80:
                    self.fail("integer representation too long", start)
                if b >> (bits - 7 * i):
                    self.fail(f"integer too large (more than {bits} bits)", start)
            result |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                break
        return result

    def signed(self, bits: int) -> int:
        """A signed LEB128; unused bits of a full-length final byte must copy the sign bit."""
        start = self.pos
        last = (bits + 6) // 7 - 1
        result = 0
        shift = 0
        for i in range(last + 1):
            b = self.byte()
            if i == last:
                if b & 0x80:
                    self.fail("integer representation too long", start)
                used = bits - 7 * i  # value bits held by this byte, the top one is the sign
                rest = b >> (used - 1)
                if rest != 0 and rest != 0x7F >> (used - 1):
                    self.fail(f"integer too large (more than {bits} bits)", start)
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if b & 0x40:
                    result -= 1 << shift
                break
        return result
