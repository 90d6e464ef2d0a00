"""Division and remainder: restoring long division in radix 16, exact, of a depth fixed by
the width (never by the values): one layer for each of the top 3 quotient nibbles, two for
each of the others.

The quotient is found one nibble at a time, most significant first. Before nibble i the
remainder R is below b * 16**(i+1); the stage compares R with the 15 candidates
C_u = u * b * 16**i at once: the digit is the number of candidates R reaches (I_u = [R >= C_u],
monotone in u) and R drops by the largest, R' = sum_t relu(sel_t) V_t with V_0 = R,
V_u = R - C_u and sel_t = I_t - I_t+1 (exactly one is 1). R' is never a layer of its own: the
next stage tests every candidate V_t at once, each test under the enable flag sel_t
(``units.enabled``), and materialises R' beside the tests for its own differences.

Scalar stages (the top 3 nibbles, ``_scalar_stage``). Only b's low 2n - i nibbles can matter
at nibble i (a larger b makes every candidate overflow), and R's top part T = R / 16**i has
2n - i nibbles: below 2**12, so [T >= u b_low] is one step of one linear form,
T - u b_low - 16**(2n-i) [b's higher nibbles are not all 0], with T = 16 (T' - t b_low') +
nibble i of a a choice among the previous stage's candidates. One layer per nibble, every
value below 2**21.

Limb stages (the other nibbles, ``_stage``), on 16-bit limbs so that a comparison has few
columns but every value stays below 2**24:
  layer 1  d_uj = sign(R_j - C_uj) per limb (``arith``'s comparison columns), from every
           choice of R_j at once, and R_j itself
  layer 2  I_u = [sum_j d_uj 2**j >= 0] (a candidate with a non-zero byte above R's top
           fails: its overflow, times 2**size, is subtracted), and the limbs of R - C_u:
           R_j - C_uj - borrow_j + 2**16 borrow_j+1, borrow_j = [sum_{k<j} d_uk 2**k < 0]
C_u is (u * 16**e * b) shifted by whole bytes (i = 2m + e), its limbs two bytes of the 30
multiples u * b and 16 u * b, computed once and normalised (``_multiples``: the columns
sum_s b_s byte_r(c 2**s) <= 4080 from b's bits, their high parts by thresholds, then
``arith.carry_add``: 3 layers, ready when the scalar stages end).

A quotient byte is two digits, sums of indicators: no layer (the last digit is pending). The
remainder's limbs are selected (one layer) and split into bytes (one more: the high byte by
255 thresholds, in nodes small enough for float32; the low byte in the caller's layer).
Sums whose bounds from the ranges would pass 2**23 (a choice's tests counted at their
largest although only one choice is ever on) are spread over several nodes (``_grouped``).

Signed forms divide the magnitudes: |x| = (x XOR s) + s with s the sign bit. The XOR bits are
one layer (relu(x_i + s - 1) is x_i AND s), and so are the carries of the + s, per nibble:
[s and x's bits below all 0], a unit on x's own bits; |b| enters the multiples' columns
directly. The quotient's sign is s_a XOR s_b, the remainder's s_a; the result's bytes v_k,
once features, are negated in one layer: byte k of ~v + 1 is 255 - v_k + c_k - 256 c_k+1
with the carry c_k = [v_0 .. v_k-1 all 0], a single unit (``_negate_if``). So a signed op is
2 layers deeper than its unsigned form.

The trap conditions (``traps``) are single units on the operand bits: b == 0, and for div_s
a == INT_MIN with b == -1. When they hold the result bytes are whatever the circuit gives.
"""

from __future__ import annotations

from dataclasses import dataclass

from wasmformer.graph import Graph, Linear, Node, as_linear

from . import units as U
from .arith import carry_add
from .operand import Operand
from .units import Pending, Result

ZERO = Linear()
DIGITS = 15  # candidates per nibble: u = 1 .. 15

SCALAR_STAGES = 3  # the top nibbles, whose remainder is below 2**12: one layer each
LIMB = 1 << 16  # the other stages compare 16-bit limbs


def divide(g: Graph, a: Operand, b: Operand, *, signed: bool, remainder: bool,
           name: str = "div") -> Result:
    """div_u / div_s (``remainder`` False) or rem_u / rem_s: the result bytes, pending."""
    n = a.n
    a_bits, a_plus = _magnitude_bits(g, a, signed, f"{name}.a")
    b_bits, b_plus = _magnitude_bits(g, b, signed, f"{name}.b")
    a_nib = _nibbles(g, a, a_bits, a_plus, f"{name}.a")
    b_nib = _nibbles(g, b, b_bits, b_plus, f"{name}.b")
    digits: list[Linear] = []  # nibble digits, most significant first
    top, indicators = None, None
    for i in range(2 * n - 1, 2 * n - 1 - SCALAR_STAGES, -1):
        top, indicators = _scalar_stage(g, a_nib, b_nib, i, top, indicators, f"{name}.n{i}")
        digits.append(sum(indicators, start=ZERO))
    multiples = _multiples(g, b_bits, b_plus, n, name)
    # R = (T - d b_rel) 16**i + (|a| mod 16**i): its top limb is a choice, those below |a|'s
    low, shift = divmod(i, 4)
    limbs = [_limb(a_nib, j) for j in range(low)]
    below = sum((a_nib[4 * low + q] * 16 ** q for q in range(shift)), start=ZERO)
    rel = _relevant(b_nib, i)
    choices = [(sel, limbs + [(top - t * rel) * 16 ** shift + below])
               for t, sel in enumerate(_selectors(indicators))]
    rem = Remainder(limbs + [top * 16 ** shift + below], choices, range(low, low + 1))
    last_units: U.Units = []  # the last digit, pending (div_u only)
    for i in range(2 * n - 1 - SCALAR_STAGES, -1, -1):
        if i == 0 and not remainder and not signed:
            last_units = _stage(g, rem, multiples, i, f"{name}.n{i}", digit_only=True)
        else:
            indicators, rem = _stage(g, rem, multiples, i, f"{name}.n{i}")
            digits.append(sum(indicators, start=ZERO))
    if remainder:
        value: list[Pending] = []
        for j in range(n // 2):  # the remainder's limbs, split into bytes
            limb = _grouped(g, f"{name}.rem{j}", rem.chosen(j), 0, LIMB - 1)
            high = _high_byte(g, f"{name}.hi{j}", limb)
            value += [U.identity(limb) + U.identity(high, -256), high]
        negative: Linear | None = a.sign if signed else None
    else:
        if len(digits) < 2 * n:
            digits.append(ZERO)  # the last digit is in last_units
        nibbles = digits[::-1]  # least significant first
        value = [nibbles[2 * m] + 16 * nibbles[2 * m + 1] for m in range(n)]
        if last_units:
            value[0] = U.identity(value[0]) + last_units
        negative = _xor(g, a.sign, b.sign, f"{name}.qsign") if signed else None
    if negative is None:
        return tuple(value)
    return _negate_if(g, value, negative, f"{name}.neg")


def _scalar_stage(g: Graph, a_nib: list[Linear], b_nib: list[Linear], i: int,
                  top: Linear | None, before: list[Linear] | None, name: str):
    """Nibble i of the quotient while the remainder's top part T = floor(R / 16**i) is below
    16**SCALAR_STAGES: (T as a feature, the indicators [T >= u b_rel]), one layer.

    Only b_rel, b's low 2n - i nibbles, can matter (a larger b overflows every candidate), so
    the test is one step of T - u b_rel - P [b's higher nibbles are not all 0] (P = 16**(2n-i)
    exceeds T). T itself is a choice among the previous stage's candidates,
    16 (T' - t b_rel') + nibble i of |a|: every test is made on every choice, each under the
    enable flag of its choice (``units.enabled``), and T is materialised beside them."""
    size = len(a_nib) - i  # nibbles in T
    rel = _relevant(b_nib, i)
    higher = sum(b_nib[size:], start=ZERO)
    if top is None:  # the first stage: T is |a|'s top nibble, the penalty direct (P = 16)
        new_top = a_nib[i]
        tests = [U.step(new_top - u * rel - 16 * higher, 0) for u in range(1, DIGITS + 1)]
        return new_top, [as_linear(U.node(g, f"{name}.I{u}", x, 0, 1))
                         for u, x in enumerate(tests, start=1)]
    prev_rel = _relevant(b_nib, i + 1)
    wide = U.node(g, f"{name}.z", U.constant(1) + U.equals_zero(higher, -1), 0, 1)
    values = [16 * (top - t * prev_rel) + a_nib[i] for t in range(DIGITS + 1)]
    sels = _selectors(before)
    indicators = []
    for u in range(1, DIGITS + 1):
        units = [x for v, sel in zip(values, sels, strict=True)
                 for x in U.enabled(U.step(v - u * rel - (16 ** size) * wide, 0), sel)]
        indicators.append(as_linear(U.node(g, f"{name}.I{u}", units, 0, 1)))
    new_top = U.materialize(g, f"{name}.T", [(1, sel, v) for v, sel in zip(values, sels, strict=True)],
                            0, 16 ** size - 1)
    return new_top, indicators


def _selectors(indicators: list[Linear]) -> list[Linear]:
    """sel_t = [the digit is t], t = 0..15, from the monotone indicators I_1..I_15."""
    ons = [Linear((), 1), *indicators, ZERO]
    return [ons[t] - ons[t + 1] for t in range(DIGITS + 1)]


def _relevant(b_nib: list[Linear], i: int) -> Linear:
    """b's low 2n - i nibbles: all of b that can matter at nibble i."""
    return sum((x * 16 ** j for j, x in enumerate(b_nib[:len(b_nib) - i])), start=ZERO)


def _limb(nib: list[Linear], j: int) -> Linear:
    return sum((nib[4 * j + q] * 16 ** q for q in range(4)), start=ZERO)


def _nibbles(g: Graph, x: Operand, bits: list[Linear], plus: Linear,
             name: str) -> list[Linear]:
    """The nibbles of |x| = sum_s bits[s] 2**s + plus (bits: x's or x XOR s; plus: 0 or s),
    each 0..15: nibble j + c_j - 16 c_j+1, the carry c_j = [s and x's bits below nibble j
    all 0] one unit on x's own bits (relu(s - their sum)), so beside the XOR layer."""
    count = len(bits) // 4
    carries: list[Linear] = [plus]
    for j in range(1, count + 1):
        below = sum(x.bits[:4 * j], start=ZERO)
        carries.append(ZERO if plus.is_constant else
                       as_linear(U.node(g, f"{name}.c{j}", [(1, plus - below, U.ONE)], 0, 1)))
    return [sum((bits[4 * j + q] * (1 << q) for q in range(4)), start=ZERO) + carries[j]
            - 16 * carries[j + 1] for j in range(count)]


def traps(g: Graph, a: Operand, b: Operand, *, signed: bool, remainder: bool,
          name: str = "div") -> dict[str, Node]:
    """The trap reasons (vocab names) with their 0/1 condition nodes (one unit each)."""
    flags = {"DIV_BY_ZERO": U.node(g, f"{name}.by_zero", U.is_zero(sum(b.bytes, start=ZERO)),
                                   0, 1)}
    if signed and not remainder:  # INT_MIN / -1: a's bits 100..0 and b's 11..1
        misses = sum(a.bits[:-1], start=ZERO) + 1 - a.sign + sum((1 - x for x in b.bits),
                                                                   start=ZERO)
        flags["INT_OVERFLOW"] = U.node(g, f"{name}.overflow", U.is_zero(misses), 0, 1)
    return flags


# ---- one stage: a quotient nibble ---------------------------------------------------------


@dataclass(frozen=True)
class Remainder:
    """The remainder between two stages, never materialised as a whole: ``limbs`` outside
    ``changed`` are features; at a limb j in ``changed`` it is sum_t relu(sel_t) vals_t[j]
    over the previous stage's candidates (``choices``: (sel_t, vals_t), exactly one sel_t 1)."""

    limbs: list[Linear]
    choices: list[tuple[Linear, list[Linear]]] | None
    changed: range

    def chosen(self, j: int) -> list[Pending]:
        """Limb j: a feature, or the units selecting it, one group per candidate."""
        if j not in self.changed:
            return [self.limbs[j]]
        return [[(1, sel, vals[j])] for sel, vals in self.choices]

    def sign_minus(self, j: int, c: Linear) -> list[U.Units]:
        """sign(limb j - c) + 1, in one layer even where limb j is a selection: each
        candidate's sign + 1 under its own enable flag (``units.enabled``), one group each."""
        if j not in self.changed:
            return [_sign_plus_one(self.limbs[j] - c)]
        return [U.enabled(_sign_plus_one(vals[j] - c), sel) for sel, vals in self.choices]


def _grouped(g: Graph, name: str, groups: list[Pending], lo: int, hi: int) -> Linear:
    """The sum of ``groups`` (a Linear, or unit groups of which at most one is non-zero,
    each then within lo..hi): as few nodes as keep every node's partial sums, bounded from
    the ranges, below 2**23 (float32-exact), although only one group is ever on."""
    if len(groups) == 1 and isinstance(groups[0], Linear):
        return groups[0]
    nodes, pending, load = [], [], 0
    for units in groups:
        size = sum(abs(w) * _magnitude(gate) * _magnitude(value) for w, gate, value in units)
        if pending and load + size >= 1 << 23:
            nodes.append(U.node(g, f"{name}.{len(nodes)}", pending, lo, hi))
            pending, load = [], 0
        pending, load = pending + units, load + size
    nodes.append(U.node(g, f"{name}.{len(nodes)}" if nodes else name, pending, lo, hi))
    return sum(nodes, start=ZERO)


def _high_byte(g: Graph, name: str, limb: Linear) -> Linear:
    """floor(limb / 256) for a limb 0..65535: sum_t [limb >= 256 t], in as many nodes as keep
    each node's partial sums below 2**23."""
    per_threshold = 2 * (_magnitude(limb) + LIMB)
    chunk = max(1, (1 << 23) // per_threshold)
    nodes = []
    for start in range(1, 256, chunk):
        ts = range(start, min(start + chunk, 256))
        nodes.append(U.node(g, f"{name}.{start}", [x for t in ts for x in U.step(limb, 256 * t)],
                            0, len(ts)))
    return sum(nodes, start=ZERO)


def _magnitude(x: Linear) -> int:
    return abs(x.bias) + sum(abs(c) * max(-n.range.lo, n.range.hi) for n, c in x.terms)


def _sign_plus_one(x: Linear) -> U.Units:
    return [(1, x + 1, U.ONE), (-1, x - 1, U.ONE)]


def _stage(g: Graph, rem: Remainder, multiples: dict[tuple[int, int], list[Linear]], i: int,
           name: str, *, digit_only: bool = False):
    """Nibble i: (the indicators I_1..I_15, the remainder after it), on 16-bit limbs. Two
    layers: the signs (and the limbs of the remainder selected by the previous stage), then
    the indicators and each candidate's difference limbs. ``digit_only``: just the digit, as
    pending units."""
    size = len(rem.limbs)
    m, e = divmod(i, 2)  # C_u = multiples[u, e] shifted by m bytes

    def limb(c: list[Linear], j: int) -> Linear:
        at = [c[k - m] if m <= k <= m + 2 * size else ZERO for k in (2 * j, 2 * j + 1)]
        return at[0] + 256 * at[1]

    low = m // 2
    cols = range(low, size)  # the limbs a candidate can change
    signs, sigmas, climbs = {}, {}, {}
    for u in range(1, DIGITS + 1):
        c = multiples[(u, e)]  # 2 size + 1 bytes
        for j in cols:
            climbs[u, j] = limb(c, j)
            signs[u, j] = _grouped(g, f"{name}.d{u}_{j}", rem.sign_minus(j, climbs[u, j]),
                                   0, 2) - 1
        overflow = sum(c[2 * size - m:], start=ZERO)  # C_u's bytes above R's top
        sigmas[u] = (sum((signs[u, j] * (1 << (j - low)) for j in cols), start=ZERO)
                     - (1 << (size - low)) * overflow)
    if digit_only:
        return [x for u in range(1, DIGITS + 1) for x in U.step(sigmas[u], 0)]
    r = [_grouped(g, f"{name}.R{j}", rem.chosen(j), 0, LIMB - 1) for j in range(size)]
    indicators = [as_linear(U.node(g, f"{name}.I{u}", U.step(sigmas[u], 0), 0, 1))
                  for u in range(1, DIGITS + 1)]
    sels = _selectors(indicators)
    choices = [(sels[0], r)]
    for u in range(1, DIGITS + 1):

        def borrow(j: int, weight: int, u: int = u) -> U.Units:
            below = sum((signs[u, k] * (1 << (k - low)) for k in range(low, j)), start=ZERO)
            return U.step(-below, 1, weight) if j > low else []

        diff = list(r)
        for j in cols:
            units = U.identity(r[j] - climbs[u, j]) + borrow(j, -1) + borrow(j + 1, LIMB)
            diff[j] = as_linear(U.node(g, f"{name}.r{u}_{j}", units, 0, LIMB - 1))
        choices.append((sels[u], diff))
    return indicators, Remainder(r, choices, cols)


# ---- the divisor's multiples --------------------------------------------------------------


def _multiples(g: Graph, bits: list[Linear], plus: Linear, n: int,
               name: str) -> dict[tuple[int, int], list[Linear]]:
    """(u, e) -> the n + 1 normalised bytes of u * 16**e * |b|, u = 1..15, e = 0, 1."""
    table = {}
    for e in (0, 1):
        for u in range(1, DIGITS + 1):
            c = u << (4 * e)
            table[u, e] = _constant_multiple(g, bits, plus, c, n, f"{name}.x{c}")
    return table


def _constant_multiple(g: Graph, bits: list[Linear], plus: Linear, c: int, n: int,
                       name: str, enable: Linear | None = None) -> list[Linear]:
    """c * (sum_s bits[s] 2**s + plus), 0 < c < 256, as n + 1 normalised bytes: columns
    V_r = sum_s bits_s byte_r(c 2**s), their high parts h_r by thresholds, then one
    carry look-ahead addition of v_r + h_{r-1} (each <= 255 + 15).

    ``enable`` (a 0/1 feature): every unit of the three layers under it, so where it is 0
    each node is 0 (within its range) and the flag's 0 guards every unit
    (``compiler.guards``): a decoder skips them on tokens that need no multiple."""
    gated = (lambda units: units) if enable is None else (lambda units: U.enabled(units, enable))
    columns = []
    for r in range(n + 1):
        terms = [(s, ((c << s) >> (8 * r)) & 255) for s in range(len(bits))]
        v = sum((bits[s] * w for s, w in terms if w), start=ZERO) + plus * ((c >> (8 * r)) & 255)
        top = sum(w for _, w in terms) + ((c >> (8 * r)) & 255)
        columns.append((v, top))
    highs = [U.node(g, f"{name}.h{r}", gated([x for t in range(1, top // 256 + 1)
                                              for x in U.step(v, 256 * t)]), 0, top // 256)
             if top >= 256 else ZERO for r, (v, top) in enumerate(columns)]
    sums = [v - 256 * h + (highs[r - 1] if r else 0)
            for r, ((v, _), h) in enumerate(zip(columns, highs, strict=True))]
    return [U.materialize(g, f"{name}.b{k}", gated(x) if isinstance(x, list) else x)
            for k, x in enumerate(carry_add(g, sums, 0, name, enable))]


# ---- signs ---------------------------------------------------------------------------------


def _magnitude_bits(g: Graph, x: Operand, signed: bool, name: str) -> tuple[list[Linear], Linear]:
    """(bits, plus) with |x| = sum_s bits[s] 2**s + plus: x's own bits (plus 0) unsigned; the
    bits of x XOR s and plus = s signed (one layer: x_i + s - 2 relu(x_i + s - 1))."""
    if not signed:
        return list(x.bits), ZERO
    return [_xor(g, bit, x.sign, f"{name}.x{s}") for s, bit in enumerate(x.bits)], x.sign


def _xor(g: Graph, p: Linear, q: Linear, name: str) -> Linear:
    """p XOR q for 0/1 features, as a node (one unit beside the linear part)."""
    return U.materialize(g, name, U.identity(p + q) + [(-2, p + q - 1, U.ONE)], 0, 1)


def _negate_if(g: Graph, value: list[Pending], flag: Linear, name: str) -> Result:
    """The bytes of -value mod 256**n when ``flag`` is 1, of value when 0, in one layer once
    value's bytes are features: byte k of -v = ~v + 1 is 255 - v_k + c_k - 256 c_k+1, with
    the carry c_k = [v_0 .. v_k-1 all 0] = relu(1 - sum_{j<k} v_j) (c_0 = 1); each form's
    units under its own enable flag."""
    v = [U.materialize(g, f"{name}.v{k}", x) for k, x in enumerate(value)]
    result = []
    for k in range(len(v)):
        carry_in = U.is_zero(sum(v[:k], start=ZERO)) if k else U.constant(1)
        negated = U.identity(255 - v[k]) + carry_in + U.is_zero(sum(v[:k + 1], start=ZERO), -256)
        result.append(U.enabled(U.identity(v[k]), 1 - flag) + U.enabled(negated, flag))
    return tuple(result)
