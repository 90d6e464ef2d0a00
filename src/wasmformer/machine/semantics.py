"""What every integer instruction computes: the one definition of the machine's arithmetic.

Values are *unsigned* Python ints: an i32 is in [0, 2**32), an i64 in
[0, 2**64). Signed readings happen inside the functions here and nowhere
else. ``NUMERIC`` maps each fixed-type integer instruction's WebAssembly name
(as spelled in ``wasm.opcodes``) to a pure function of its operands; its
arity is the op's ``params``. Traps are raised as ``errors.Trap`` with the
spec's wording.

Loads and stores touch ``Op.width`` bytes, little-endian; ``LOADS`` says how
the bytes read become a value (zero- or sign-extension), ``store_bits`` how a
value becomes the bytes written (wrapping to the width).

Every function does a constant amount of work for its width: no loop over
bits or value-dependent iteration (Python's native int ops stand for the
machine's native ALU).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import Trap
from ..wasm.opcodes import OPS_BY_NAME, Imm

DIVIDE_BY_ZERO = "integer divide by zero"
OVERFLOW = "integer overflow"

BITS = {"i32": 32, "i64": 64}


def mask(bits: int) -> int:
    return (1 << bits) - 1


def to_signed(value: int, bits: int) -> int:
    """The two's-complement reading of an unsigned ``bits``-wide value."""
    return value - (1 << bits) if value >> (bits - 1) else value


def sign_extend(value: int, from_bits: int, to_bits: int) -> int:
    """Sign-extend the low ``from_bits`` of ``value`` to an unsigned ``to_bits`` value."""
    low = value & mask(from_bits)
    return to_signed(low, from_bits) & mask(to_bits)


def _trunc_div(a: int, b: int) -> int:
    """Signed division rounding toward zero (Python's // rounds toward -infinity)."""
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def _trunc_rem(a: int, b: int) -> int:
    """Signed remainder with the sign of the dividend."""
    r = abs(a) % abs(b)
    return -r if a < 0 else r


def _int_family(t: str) -> dict[str, Callable[..., int]]:
    """The arithmetic, bitwise and comparison instructions of one integer type."""
    n = BITS[t]
    m = mask(n)

    def s(x: int) -> int:
        return to_signed(x, n)

    def div_s(a: int, b: int) -> int:
        if b == 0:
            raise Trap(DIVIDE_BY_ZERO)
        if s(a) == -(1 << (n - 1)) and s(b) == -1:
            raise Trap(OVERFLOW)
        return _trunc_div(s(a), s(b)) & m

    def div_u(a: int, b: int) -> int:
        if b == 0:
            raise Trap(DIVIDE_BY_ZERO)
        return a // b

    def rem_s(a: int, b: int) -> int:
        if b == 0:
            raise Trap(DIVIDE_BY_ZERO)
        return _trunc_rem(s(a), s(b)) & m  # INT_MIN rem -1 is 0, not a trap

    def rem_u(a: int, b: int) -> int:
        if b == 0:
            raise Trap(DIVIDE_BY_ZERO)
        return a % b

    def rotl(a: int, b: int) -> int:
        k = b & (n - 1)
        return ((a << k) | (a >> (n - k))) & m

    def rotr(a: int, b: int) -> int:
        k = b & (n - 1)
        return ((a >> k) | (a << (n - k))) & m

    def ctz(a: int) -> int:
        return n if a == 0 else (a & -a).bit_length() - 1

    ops: dict[str, Callable[..., int]] = {
        "clz": lambda a: n - a.bit_length(),
        "ctz": ctz,
        "popcnt": lambda a: a.bit_count(),
        "add": lambda a, b: (a + b) & m,
        "sub": lambda a, b: (a - b) & m,
        "mul": lambda a, b: (a * b) & m,
        "div_s": div_s,
        "div_u": div_u,
        "rem_s": rem_s,
        "rem_u": rem_u,
        "and": lambda a, b: a & b,
        "or": lambda a, b: a | b,
        "xor": lambda a, b: a ^ b,
        "shl": lambda a, b: (a << (b & (n - 1))) & m,  # the count is taken modulo the width
        "shr_s": lambda a, b: (s(a) >> (b & (n - 1))) & m,
        "shr_u": lambda a, b: a >> (b & (n - 1)),
        "rotl": rotl,
        "rotr": rotr,
        "eqz": lambda a: int(a == 0),
        "eq": lambda a, b: int(a == b),
        "ne": lambda a, b: int(a != b),
        "lt_s": lambda a, b: int(s(a) < s(b)),
        "lt_u": lambda a, b: int(a < b),
        "gt_s": lambda a, b: int(s(a) > s(b)),
        "gt_u": lambda a, b: int(a > b),
        "le_s": lambda a, b: int(s(a) <= s(b)),
        "le_u": lambda a, b: int(a <= b),
        "ge_s": lambda a, b: int(s(a) >= s(b)),
        "ge_u": lambda a, b: int(a >= b),
    }
    return {f"{t}.{name}": fn for name, fn in ops.items()}


# The division instructions: their trace carries the work of a long division (below).
DIVISION_OPS = tuple(f"{t}.{k}" for t in BITS for k in ("div_s", "div_u", "rem_s", "rem_u"))


def division_stage_count(op: str) -> int:
    """How many stage tokens a division ``op`` emits before its result (docs/PROTOCOL.md):
    one stage per quotient nibble, each a digit and the remainder's bytes."""
    n = BITS[op[:3]]
    return (n // 4) * (n // 8 + 1)


def division_stages(op: str, a: int, b: int) -> list[int]:
    """The stage bytes (0..255) a division ``op`` of the unsigned operands ``a``, ``b`` emits
    before its result, when it does not trap: restoring long division of |a| by |b| in
    radix 16, most significant nibble first. Stage s (s = 0 .. 2n - 1 for n-byte operands)
    takes the remainder R so far (R < |b|), brings in nibble 2n - 1 - s of |a|:
    X = 16 R + nibble; its digit is d = X // |b| (0..15) and R becomes X - d |b|. The stage
    writes d, then R's n bytes little-endian. So the quotient's nibbles are the digits, and
    the last stage's R is the remainder's magnitude. A width-sized amount of work: 2n stages.
    """
    bits = BITS[op[:3]]
    if op.endswith("_s"):
        a, b = abs(to_signed(a, bits)), abs(to_signed(b, bits))
    out: list[int] = []
    r = 0
    for s in range(bits // 4):
        x = 16 * r + ((a >> (bits - 4 - 4 * s)) & 15)
        d, r = divmod(x, b)
        out.append(d)
        out += r.to_bytes(bits // 8, "little")
    return out


def _conversions() -> dict[str, Callable[[int], int]]:
    """Width changes and the in-place sign-extension instructions."""
    return {
        "i32.wrap_i64": lambda a: a & mask(32),
        "i64.extend_i32_s": lambda a: sign_extend(a, 32, 64),
        "i64.extend_i32_u": lambda a: a,
        "i32.extend8_s": lambda a: sign_extend(a, 8, 32),
        "i32.extend16_s": lambda a: sign_extend(a, 16, 32),
        "i64.extend8_s": lambda a: sign_extend(a, 8, 64),
        "i64.extend16_s": lambda a: sign_extend(a, 16, 64),
        "i64.extend32_s": lambda a: sign_extend(a, 32, 64),
    }


NUMERIC: dict[str, Callable[..., int]] = {
    **_int_family("i32"),
    **_int_family("i64"),
    **_conversions(),
}


def _load_extension(name: str) -> Callable[[int], int] | None:
    """How a load turns the unsigned bytes it read into a value; None: unchanged."""
    op = OPS_BY_NAME[name]
    result_bits = BITS[op.results[0]]
    read_bits = 8 * op.width
    if name.endswith("_s"):
        return lambda raw: sign_extend(raw, read_bits, result_bits)
    return None  # zero-extension (or a full-width load) leaves the unsigned value as is


_ACCESSES = [op for op in OPS_BY_NAME.values() if op.imm is Imm.MEMARG and not op.is_float]
LOAD_NAMES = tuple(op.name for op in _ACCESSES if op.results)
STORE_NAMES = tuple(op.name for op in _ACCESSES if not op.results)

# name -> (bytes read, extension of the raw little-endian unsigned value or None)
LOADS: dict[str, tuple[int, Callable[[int], int] | None]] = {
    name: (OPS_BY_NAME[name].width, _load_extension(name)) for name in LOAD_NAMES
}
# name -> bytes written
STORES: dict[str, int] = {name: OPS_BY_NAME[name].width for name in STORE_NAMES}


def store_bits(value: int, width: int) -> int:
    """The unsigned value a ``width``-byte store writes: the low bytes of ``value``."""
    return value & mask(8 * width)


def effective_address(base: int, offset: int, width: int, memory_size: int) -> int:
    """The address a ``width``-byte access touches, or a trap if any byte is out of bounds.

    ``base`` (an i32) plus the static ``offset`` is computed without wrapping,
    as the spec requires (a 33-bit address).
    """
    address = base + offset
    if address + width > memory_size:
        raise Trap("out of bounds memory access")
    return address


def _check_table() -> None:
    """Every integer instruction of the opcode table has a definition, and nothing else does."""
    integer_fixed = {
        op.name for op in OPS_BY_NAME.values()
        if op.params is not None and not op.is_float and op.imm is Imm.NONE
        and op.results and len(op.results) == 1
    }
    missing = integer_fixed - set(NUMERIC)
    extra = set(NUMERIC) - set(OPS_BY_NAME)
    assert not missing and not extra, f"semantics table mismatch: {missing or extra}"


_check_table()
