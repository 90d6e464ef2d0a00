"""Division across tokens: the eight div/rem ops, one long-division stage per trace token.

A division's span is its stage tokens, then its result (docs/PROTOCOL.md;
``machine.semantics.division_stages`` defines them): for n-byte operands, 2n stages of
n + 1 tokens, radix 16, most significant nibble first. Stage s brings nibble 2n - 1 - s of
|a| into the remainder R of the stage before (R < |b|): X = 16 R + nibble, the digit
d = X // |b| (0..15), and R becomes X - d |b|; the stage's tokens are ``d:`` d, then R's n
bytes. The result follows: the remainder is the last stage's R, the quotient's nibbles are
the digits.

Every position predicting a stage token does one whole stage (so each stage token is a
fresh forward pass over the same stage: the digit, or one byte of the new R):

  FFN 5    decode k (the offset in the span): the stage s and the offset t within it
  FFN 7    the bytes of X: R's bytes from the window (the stage before, at distances fixed
           by t: up to 2n - 1, so an i64 stage reads 8 more window heads), 16 R by its bits
  FFN 7-9  the 15 multiples u |b|, normalised (``divide._constant_multiple``), for b and
           for its negation (signed ops: |b| is one or the other, chosen where used)
  FFN 8    |a|'s nibble 2n - 1 - s, chosen by the stage flags
  FFN 10   the signs of X_j - (u |b|)_j, per byte j and candidate u
  FFN 11   I_u = [X >= u |b|], and the byte the next token needs of X - u |b| (its borrows
           from the signs), per candidate
  FFN 12   the next-token node: the digit sum_u I_u, or R's byte selected by I_u - I_u+1

FFN 7-11 are under the width's op flag (``{name}.op``, ready at FFN 6) as well as their
own flags: its 0 guards them (``compiler.guards``), so a decoder skips the multiples and
signs, computed from b's bits on every token, wherever the width's division is not next.

The result bytes need no stage: the remainder's magnitude is the last stage's R, in the
window at distance n - 1 from every result byte; the quotient's byte j is two digits,
fetched by position (two heads, the distances fixed by j). A signed result is negated
where its sign says: byte j of -v is 255 - v_j + c_j - 256 c_j+1 with the carry
c_j = [v's bytes below j all 0], which the result bytes already emitted show (negation
keeps low zero bytes zero).

Stage tokens are not values: their write keys are invalid (``is_stage``), so no reader
takes them for a stack or local write; the result's keys count from the end of the span
(the op feature ``stages`` shifts the offset).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from wasmformer.graph import Graph, Linear, LinearLike, as_linear
from wasmformer.graph.functions import equals
from wasmformer.machine import vocab
from wasmformer.machine.semantics import division_stage_count

from . import units as U
from .divide import _constant_multiple, _sign_plus_one, _xor
from .operand import Operand
from .window import SPAN, Window

ONE = Linear((), 1)
ZERO = Linear()
DIGITS = 15
WIDTHS = {"i32": 4, "i64": 8}
KINDS = ("div_s", "div_u", "rem_s", "rem_u")
STAGE = vocab.STAGE  # the id of d:00


def window_needs() -> dict[int, set[str]]:
    """The current token's stage flag (its write keys are invalid)."""
    return {0: {"is_stage"}}


@dataclass(frozen=True)
class Layout:
    """Where the next token lies in a division span of n-byte operands (0/1 features)."""

    n: int
    stage: list[Linear]  # stage[s]: the next token belongs to stage s
    prev: list[Linear]  # prev[t]: offset t within a stage s >= 1 (the stage before is R)
    digit: Linear  # the next token is a stage's digit
    rbyte: list[Linear]  # rbyte[j]: it is byte j of a stage's R
    result: list[Linear]  # result[j]: it is byte j of the result

    @property
    def stages(self) -> int:
        return division_stage_count(f"i{8 * self.n}.div_u")


def layout(g: Graph, k: LinearLike, n: int) -> Layout:
    """Decode k, the next token's offset in its span, for the division layout of width n."""
    k = as_linear(k)
    size, count = n + 1, 2 * n
    end = size * count
    at_least = {m: as_linear(U.node(g, f"div{n}.k>={m}", U.step(k, m), 0, 1))
                for m in range(size, end + 1, size)}
    at_least[0] = ONE  # (k >= 0 always: the offset in a span)
    stage = [at_least[size * s] - at_least[size * (s + 1)] for s in range(count)]
    t = k - size * sum((s * x for s, x in enumerate(stage)), start=ZERO)
    beyond = at_least[end]  # in the result: t is then k itself, at least `end`
    prev = [as_linear(equals(g, t + (size + 1) * (1 - at_least[size] + beyond), j,
                             name=f"div{n}.prev{j}")) for j in range(size)]
    offset = [as_linear(equals(g, t + (size + 1) * beyond, j, name=f"div{n}.t{j}"))
              for j in range(size)]
    result = [as_linear(equals(g, k, end + j, name=f"div{n}.res{j}")) for j in range(n)]
    return Layout(n, stage, prev, offset[0], offset[1:], result)


class FarWindow:
    """The window, extended to distances 8 .. 2n - 1 for a stage's reads (byte and bits)."""

    def __init__(self, g: Graph, window: Window, depth: int):
        self.window = window
        self._far: dict[tuple[int, str], Linear] = {}
        p = g.position()
        names = ("byte", *(f"bit{i}" for i in range(8)))
        for d in range(SPAN, depth):
            head = g.lookup(f"divwin{d}", query=p - d, key=p,
                            values=[window.tokens.named(x) for x in names])
            for x, out in zip(names, head.results, strict=True):
                self._far[d, x] = as_linear(out)

    def at(self, d: int, name: str) -> Linear:
        return self.window.at(d, name) if d < SPAN else self._far[d, name]

    def nibble(self, d: int, high: bool) -> Linear:
        first = 4 if high else 0
        return sum((self.at(d, f"bit{first + q}") * (1 << q) for q in range(4)), start=ZERO)


def division_units(g: Graph, window: Window, k: LinearLike, ops: Mapping[str, LinearLike],
                   operands: tuple[Operand, Operand], body: LinearLike) -> U.Units:
    """The next-token units of every division op in ``ops`` (their 0/1 op flags), each under
    its enable: stage tokens and result bytes. ``body``: 1 when the next token is an
    instruction's own token (not a payload, no trap)."""
    body = as_linear(body)
    widths = []
    for t, n in WIDTHS.items():
        present = {kind: as_linear(ops[f"{t}.{kind}"]) for kind in KINDS if f"{t}.{kind}" in ops}
        if present:
            widths.append((n, present, layout(g, k, n)))
    quotient = _quotient_digits(g, window, [lay for _, kinds, lay in widths
                                            if any(kind.startswith("div") for kind in kinds)])
    units: U.Units = []
    for n, present, lay in widths:
        a, b = (Operand(x.bytes[:n], x.bits[:8 * n]) for x in operands)
        width = _Width(g, window, lay, present, a, b, f"div{n}")
        units += width.stage_units(body)
        units += width.result_units(body, quotient)
    return units


def _quotient_digits(g: Graph, window: Window, layouts: list[Layout]) -> tuple[Linear, Linear]:
    """The two digits (nibbles 2j and 2j + 1) of the quotient's byte j when the next token is
    result byte j of a division: two heads reading the digit tokens by position."""
    if not layouts:
        return ZERO, ZERO
    p = g.position()
    digits = []
    for high in (0, 1):
        distance = ZERO
        for lay in layouts:
            n, end = lay.n, lay.stages
            for j, flag in enumerate(lay.result):
                stage = 2 * n - 1 - (2 * j + high)  # the stage whose digit is nibble 2j + high
                distance = distance + (end + j - 1 - stage * (n + 1)) * flag
        head = g.lookup(f"div.q{'hi' if high else 'lo'}", query=p - distance, key=p,
                        values=[window.tokens.named("byte")])
        digits.append(as_linear(head.results[0]))
    return digits[0], digits[1]


class _Width:
    """The circuits of one operand width's division ops."""

    def __init__(self, g: Graph, window: Window, lay: Layout, ops: dict[str, Linear],
                 a: Operand, b: Operand, name: str):
        self.g, self.window, self.lay, self.ops, self.name = g, window, lay, ops, name
        self.a, self.b = a, b
        n = lay.n
        self.any = U.materialize(g, f"{name}.op", U.identity(sum(ops.values(), start=ZERO)),
                                 0, 1)  # (the op flags are exclusive)
        signed = sum((f for kind, f in ops.items() if kind.endswith("_s")), start=ZERO)
        self.signed = bool(signed.terms)
        self.neg_a = self._and(signed, a.sign, "neg_a") if self.signed else ZERO
        self.neg_b = self._and(signed, b.sign, "neg_b") if self.signed else ZERO
        self.far = FarWindow(g, window, 2 * n)
        self.x = self._dividend_bytes()
        # the multiples are computed from b's bits on every token but needed on this
        # width's division tokens only: under its op flag, whose 0 then guards them
        self.plus = {u: _constant_multiple(g, list(b.bits), ZERO, u, n, f"{name}.m{u}",
                                           self.any) for u in range(1, DIGITS + 1)}
        self.minus = ({u: _constant_multiple(g, [1 - x for x in b.bits], ONE, u, n,
                                             f"{name}.n{u}", self.any)
                       for u in range(1, DIGITS + 1)} if self.signed else {})

    def _and(self, p: Linear, q: Linear, what: str) -> Linear:
        return U.materialize(self.g, f"{self.name}.{what}", [(1, p + q - 1, ONE)], 0, 1)

    # --- the stage ---

    def _dividend_bytes(self) -> list[Linear]:
        """X = 16 R + |a|'s nibble, n + 1 bytes: R (the stage before's) from the window."""
        g, lay, n, far = self.g, self.lay, self.lay.n, self.far
        xs = []
        for j in range(n + 1):
            units: U.Units = []
            for t, flag in enumerate(lay.prev):
                # R's byte i sits t + n - 1 - i tokens back when the next token is at offset t
                value = ZERO
                if j < n:
                    value = value + 16 * far.nibble(t + n - 1 - j, high=False)
                if j > 0:
                    value = value + far.nibble(t + n - j, high=True)
                units += U.enabled(value, flag + self.any - 1)  # (any: a guard)
            xs.append(U.materialize(g, f"{self.name}.x{j}", units, 0, 255))
        xs[0] = xs[0] + self._nibble_of_a()
        return xs

    def _nibble_of_a(self) -> Linear:
        """|a|'s nibble 2n - 1 - s at stage s (a negative a: the nibbles of ~a + 1)."""
        a, n = self.a, self.lay.n
        units: U.Units = []
        for s, flag in enumerate(self.lay.stage):
            j = 2 * n - 1 - s
            nib = sum((a.bits[4 * j + q] * (1 << q) for q in range(4)), start=ZERO)
            units += U.enabled(nib, flag - self.neg_a + self.any - 1)
            if self.signed:
                negated = U.identity(15 - nib) + _carry(a, j) + _carry(a, j + 1, -16)
                units += U.enabled(negated, flag + self.neg_a - 1)
        return U.materialize(self.g, f"{self.name}.anib", units, 0, 15)

    def _multiple_byte(self, u: int, j: int, value) -> U.Units:
        """``value(c)`` for c = byte j of u |b|: of u b, or of u (~b + 1) when b is negative
        in a signed op (units under the two enables; any's 0 and neg_b's guard them)."""
        units = U.enabled(value(self.plus[u][j]), self.any - self.neg_b)
        if self.signed:
            units += U.enabled(value(self.minus[u][j]), self.neg_b)
        return units

    def _stage(self) -> tuple[list[Linear], list[Linear]]:
        """(I_u for u = 1..15, the next token's byte of X - u |b| per u)."""
        g, n, x = self.g, self.lay.n, self.x
        indicators, diffs = [], []
        for u in range(1, DIGITS + 1):
            signs = [U.materialize(g, f"{self.name}.s{u}_{j}",
                                   self._multiple_byte(u, j, lambda c, j=j: _sign_plus_one(x[j] - c)),
                                   0, 2) - 1 for j in range(n + 1)]
            sigma = sum((s * (1 << j) for j, s in enumerate(signs)), start=ZERO)
            indicators.append(U.materialize(g, f"{self.name}.I{u}",
                                            U.enabled(U.step(sigma, 0), self.any), 0, 1))
            units: U.Units = []
            for j, flag in enumerate(self.lay.rbyte):
                diff = self._multiple_byte(u, j, lambda c, j=j: U.identity(x[j] - c))
                units += U.enabled(diff, flag)
                units += U.enabled(_borrow(signs, j, -1) + _borrow(signs, j + 1, 256),
                                   flag + self.any - 1)
            diffs.append(U.materialize(g, f"{self.name}.r{u}", units, 0, 255))
        return indicators, diffs

    def stage_units(self, body: Linear) -> U.Units:
        g, lay = self.g, self.lay
        indicators, diffs = self._stage()
        digit = sum(indicators, start=ZERO)
        units = U.enabled(U.identity(digit) + U.constant(STAGE), self.any + lay.digit + body - 2)
        on = [ONE, *indicators, ZERO]
        chosen = U.materialize(g, f"{self.name}.xsel",
                               [x for j, f in enumerate(lay.rbyte)
                                for x in U.enabled(self.x[j], f + self.any - 1)],
                               0, 255)
        rbyte = [(1, on[0] - on[1], chosen)]
        rbyte += [(1, on[u] - on[u + 1], diffs[u - 1]) for u in range(1, DIGITS + 1)]
        rbyte += U.constant(STAGE)
        in_r = U.materialize(g, f"{self.name}.in_r", U.identity(sum(lay.rbyte, start=ZERO)),
                             0, 1)
        return units + U.enabled(rbyte, self.any + in_r + body - 2)

    # --- the result ---

    def result_units(self, body: Linear, quotient: tuple[Linear, Linear]) -> U.Units:
        """The result's bytes: the last stage's R (remainders) or the digits (quotients),
        negated for a signed op whose result is negative."""
        g, n, window = self.g, self.lay.n, self.window
        remainder = window.at(n - 1, "byte")  # R's byte j, n - 1 tokens before result byte j
        q = quotient[0] + 16 * quotient[1]
        units: U.Units = []
        for kind, op in self.ops.items():
            value = q if kind.startswith("div") else remainder
            negative = None
            if kind == "rem_s":
                negative = self.a.sign
            elif kind == "div_s":
                negative = _xor(g, self.a.sign, self.b.sign, f"{self.name}.qsign")
            for j, flag in enumerate(self.lay.result):
                on = op + flag + body - 2
                if negative is None:
                    units += U.enabled(value, on)
                    continue
                units += U.enabled(value, on - negative)
                emitted = sum((window.at(d, "byte") for d in range(j)), start=ZERO)
                carry_in = U.is_zero(emitted) if j else U.constant(1)
                negated = U.identity(255 - value) + carry_in + U.is_zero(emitted + value, -256)
                units += U.enabled(negated, on + negative - 1)
        return units


def _carry(a: Operand, j: int, weight: int = 1) -> U.Units:
    """weight * [a's bits below nibble j all 0] (the carry into nibble j of ~a + 1)."""
    if j == 0:
        return U.constant(weight)
    below = sum(a.bits[:4 * j], start=ZERO)
    return [(weight, 1 - below, ONE)]


def _borrow(signs: list[Linear], j: int, weight: int) -> U.Units:
    """weight * [X - C is negative in its bytes below j] (the borrow into byte j)."""
    if j == 0:
        return []
    below = sum((s * (1 << i) for i, s in enumerate(signs[:j])), start=ZERO)
    return U.step(-below, 1, weight)
