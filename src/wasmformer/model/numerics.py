"""The numerics guard: prove, before building, that a float model emits the exact tokens.

For every materialised feature we bound, from the graph's ranges, its magnitude and the
worst-case difference between the model's float value and the evaluator's exact value,
following the float operations the model really does (any summation order, with or
without FMA):

* A value is *exact* when it and every input are dyadic rationals on a common grid
  2**-g and every product and partial sum stays below 2**mantissa in units of that grid
  (53 bits for float64, 24 for float32): then no operation ever rounds. Token tables,
  positions and integer FFN arithmetic within range are exact.
* A lookup head must be exact: its query and key rows exact, and every product and
  partial sum of its scores q.k exact in the score dtype: below 2**mantissa units of the
  score grid for float scores; for int64 scores (``ModelConfig.score_dtype``) q and k
  exact integers (so exact in float64 and in int64) and the sum of |products| below
  2**63. The model's attention is average-hard (``model.transformer``), so exact scores,
  whose maximum is unique by construction (``compiler.lower``), give the winner weight 1
  and every other position 0: the head copies its values bit for bit. A lookup that
  fails this is refused: it could silently read the wrong row.
* Everything else gets a rigorous error bound (gamma_n = n u / (1 - n u), u = 2**-mantissa):
  a mean head's weights fl(1/n) make it inexact by nature, and the error flows on
  through the FFNs (relu is 1-Lipschitz) to the logits.
* The model emits the evaluator's token when every logit is off by less than half the
  graph's minimum margin. A build whose bound cannot promise that is refused unless the
  caller accepts an approximate model (``allow_approximate``): the tokens are then
  only checked empirically.

Stated ranges of a lookup head, as the guard computes them: N = max_len, W bounds the
shifted key |K'| = |key - c| and Q bounds |Q'| = |query - c| (c = ``compiler.lower.key_shift``:
the middle of the key's range, or a position key's low end; each row bounded by the
smaller of the triangle inequality over its terms and its interval over the features'
declared ranges, which sees that the shift and the key's own range cancel). Exact iff
    N * (2 Q W + W**2) + N - 1 < 2**bits    keys may repeat: tie-break on position
    2 Q W + W**2 < 2**bits                  key = +-position + b: consecutive keys
with bits = 53 (float64 scores), 24 (float32) or 63 (int64). Centring halves W (a key
range of 2W) and Q, so these figures are half the key range a head may span. With Q = W:
float64 holds W = 53,509 at N = 2**20 positions, int64 W = 1,712,317 (about 2**20.7), and
int64 W = 605,395 (about 2**19.2) at N = 2**23; float32 holds
W = 73 at N = 1024, W = 36 at N = 4096, W = 2 at N = 10**6. A
position-keyed lookup (query p - 1, key p) is exact up to N = 2366 in float32 and
N = 54,794,159 in float64. Positions past max_len are refused at run time, and a
float32 model refuses to run with TF32/bf16 matmuls (``torch.set_float32_matmul_precision``
other than "highest"), which would round the scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import torch

from wasmformer.compiler import Feature, Form, Head, Mlp, Program
from wasmformer.graph.values import Value


class NumericsError(ValueError):
    """The graph exceeds the range in which a model of this dtype is proven exact."""


class PositionLimitError(NumericsError):
    """A sequence runs past the max_len the model was built (and proven) for."""


def check_runtime(dtype: torch.dtype, positions: int, max_len: int) -> None:
    """Refuse what the build-time proof does not cover: more positions, or float32 matmuls
    allowed to round through TF32/bf16."""
    if positions > max_len:
        raise PositionLimitError(f"position {positions - 1} is past this model's proven "
                                 f"range 0..{max_len - 1}")
    if dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest":
        raise NumericsError("float32 model: torch.set_float32_matmul_precision is "
                            f"{torch.get_float32_matmul_precision()!r}; exactness needs 'highest'")


@dataclass(frozen=True, slots=True)
class Bound:
    """What is known of a computed value: |exact| <= mag, |float - exact| <= err, and
    (when err == 0) the exact value is an integer multiple of 2**-grid."""

    mag: Fraction
    err: float
    grid: int | None

    @property
    def exact(self) -> bool:
        return self.err == 0 and self.grid is not None


ZERO = Bound(Fraction(0), 0.0, 0)


@dataclass(frozen=True, slots=True)
class LookupCheck:
    name: str
    score_units: int  # largest sum of |products| in q.k, in units of the score grid
    limit: int  # 2**mantissa, or 2**63 for int64 scores
    ok: bool
    reason: str = ""  # why not ok


@dataclass(frozen=True, slots=True)
class NumericsReport:
    dtype: str
    score_dtype: str
    mantissa_bits: int
    max_len: int
    lookups: tuple[LookupCheck, ...]
    inexact: tuple[str, ...]  # features whose float value may differ from the exact one
    logit_error: float  # worst-case |float logit - exact logit|
    min_margin: Value
    problems: tuple[str, ...]  # lookups that are not exact (fatal)

    @property
    def exact(self) -> bool:
        """Every feature and logit is bit-exact."""
        return not self.problems and self.logit_error == 0

    @property
    def proven(self) -> bool:
        """The argmax is guaranteed to be the evaluator's token at every position."""
        return not self.problems and 2 * self.logit_error < self.min_margin

    def summary(self) -> str:
        verdict = ("exact" if self.exact else "proven (errors below half the margin)"
                   if self.proven else "NOT proven")
        return (f"{self.dtype} ({self.score_dtype} scores): {verdict}; worst logit error "
                f"{self.logit_error:.3g} "
                f"(margin {self.min_margin}); positions < {self.max_len}")


def check_numerics(program: Program, dtype: torch.dtype, *, score_dtype: str | None = None,
                   allow_approximate: bool = False) -> NumericsReport:
    """The report for ``program`` in ``dtype``; raise NumericsError where it is not safe."""
    report = analyse(program, dtype, score_dtype)
    if report.problems:
        raise NumericsError(f"{report.dtype}: " + "; ".join(report.problems))
    if not report.proven and not allow_approximate:
        raise NumericsError(
            f"{report.dtype}: worst-case logit error {report.logit_error:.3g} is not below "
            f"half the output margin {report.min_margin} at max_len {report.max_len} "
            f"(inexact: {', '.join(report.inexact)}); use a shorter max_len, float64, "
            f"or allow_approximate=True")
    return report


def analyse(program: Program, dtype: torch.dtype,
            score_dtype: str | None = None) -> NumericsReport:
    """The bounds of every feature of ``program`` run in ``dtype``, its lookups' scores in
    ``score_dtype`` (default: ``dtype``; "int64" needs float64)."""
    bits = round(-math.log2(torch.finfo(dtype).eps)) + 1  # 53 or 24
    score_dtype = score_dtype or str(dtype).removeprefix("torch.")
    if score_dtype == "int64" and bits != 53:
        raise NumericsError("int64 scores need a float64 model")
    score_bits = {"int64": None, "float64": 53, "float32": 24}[score_dtype]
    bounds = {f: _source_bound(f, bits) for f in program.sources}
    checks, problems = [], []
    for op in program.ops:
        if isinstance(op, Mlp):
            bounds[op.output] = _mlp_bound(op, bounds, bits)
            continue
        values = [_form_bound(v, bounds, bits) for v in op.values]
        if op.kind == "mean":  # sum_j fl(1/n) * v_j over n <= max_len terms
            v = values[0]
            rounding = _gamma(program.max_len + 2, bits) * (float(v.mag) + v.err)
            values = [Bound(v.mag, v.err + rounding, None)]
        else:
            check = _lookup_check(op, bounds, bits, score_bits)
            checks.append(check)
            if not check.ok:
                problems.append(f"lookup {op.name!r} is not exact: {check.reason}")
        bounds.update(zip(op.outputs, values, strict=True))
    logit_error = max((_form_bound(f, bounds, bits).err for f in program.logits), default=0.0)
    inexact = tuple(f.name for f, b in bounds.items() if not b.exact)
    return NumericsReport(str(dtype).removeprefix("torch."), score_dtype, bits,
                          program.max_len,
                          tuple(checks), inexact, logit_error, program.min_margin,
                          tuple(problems))


def _gamma(n: int, bits: int) -> float:
    """The classic bound on the relative error of n rounded operations, with u = 2**-bits."""
    nu = n * 2.0**-bits
    return nu / (1 - nu)


def _grid(c: Value) -> int | None:
    """The least g with c * 2**g an integer (None: c is not dyadic). c != 0."""
    c = Fraction(c)
    den, num = c.denominator, abs(c.numerator)
    if den & (den - 1):
        return None
    if den > 1:
        return den.bit_length() - 1
    return -((num & -num).bit_length() - 1)


def _fits(mag: Fraction, grid: int, bits: int) -> bool:
    """Whether every multiple of 2**-grid up to ``mag`` is representable."""
    return mag * Fraction(2) ** grid < 2**bits


def _source_bound(f: Feature, bits: int) -> Bound:
    """An embedding column is exact when every entry is representable; p and p**2
    (computed as p * p) are exact integers below 2**bits."""
    if f.table is None:
        mag = Fraction(f.range.hi)
        return Bound(mag, 0.0, 0) if _fits(mag, 0, bits) else Bound(mag, 2.0**-bits * mag, None)
    entries = [v for v in f.table if v != 0]
    if not entries:
        return ZERO
    mag = Fraction(max(abs(v) for v in entries))
    grids = [_grid(v) for v in entries]
    if None not in grids and all(_fits(abs(Fraction(v)), _grid(v), bits) for v in entries):
        return Bound(mag, 0.0, max(grids))
    return Bound(mag, 2.0**-bits * float(mag), None)


def _sum_bound(terms: list[tuple[Value, Bound]], bits: int) -> Bound:
    """sum(c * x) as a dot product in floats, in any order."""
    terms = [(c, b) for c, b in terms if c != 0 and (b.mag != 0 or b.err != 0)]
    if not terms:
        return ZERO
    mag = sum((abs(Fraction(c)) * b.mag for c, b in terms), Fraction(0))
    if all(b.exact and _grid(c) is not None for c, b in terms):
        grid = max(_grid(c) + b.grid for c, b in terms)
        coefficients_fit = all(_fits(abs(Fraction(c)), _grid(c), bits) for c, _ in terms)
        if coefficients_fit and _fits(mag, grid, bits):
            return Bound(mag, 0.0, grid)
    carried = sum(abs(float(c)) * b.err for c, b in terms)
    rounding = _gamma(len(terms) + 1, bits) * sum(abs(float(c)) * (float(b.mag) + b.err)
                                                  for c, b in terms)
    return Bound(mag, carried + rounding, None)


def _form_bound(form: Form, bounds: dict[Feature, Bound], bits: int) -> Bound:
    return _sum_bound([(c, bounds[f]) for f, c in form.terms], bits)


def _row_bound(form: Form, bounds: dict[Feature, Bound], bits: int) -> Bound:
    """A query or key row's bound: ``_form_bound``, its magnitude tightened to the row's
    interval over its features' declared ranges (an exact feature lies in its range), which
    knows that a shifted key's offset and the key's own range cancel: |key - centre| is half
    the key's range, where the triangle inequality would add |centre| to it."""
    bound = _form_bound(form, bounds, bits)
    if not bound.exact:
        return bound
    r = form.range
    return Bound(min(bound.mag, max(abs(Fraction(r.lo)), abs(Fraction(r.hi)))), 0.0, bound.grid)


def _relu_bound(gate: Form, bounds: dict[Feature, Bound], bits: int) -> Bound:
    """relu(gate)'s bound: the gate's, its magnitude tightened to the top of the gate's
    interval (relu(g) lies in 0 .. max(0, g.hi)): a gate that a large negative term shuts
    (an enable flag times an offset) costs nothing for that term."""
    bound = _form_bound(gate, bounds, bits)
    if not bound.exact:
        return bound
    top = max(Fraction(0), Fraction(gate.range.hi))
    return Bound(min(bound.mag, top), 0.0, bound.grid)


def _product_bound(a: Bound, b: Bound, bits: int) -> Bound:
    mag = a.mag * b.mag
    if mag == 0 and a.err == 0 and b.err == 0:
        return ZERO
    if a.exact and b.exact and _fits(mag, a.grid + b.grid, bits):
        return Bound(mag, 0.0, a.grid + b.grid)
    am, bm = float(a.mag), float(b.mag)
    err = a.err * bm + am * b.err + a.err * b.err + 2.0**-bits * (am + a.err) * (bm + b.err)
    return Bound(mag, err, None)


def _mlp_bound(op: Mlp, bounds: dict[Feature, Bound], bits: int) -> Bound:
    """Each unit: relu(gate) * value (relu is exact and 1-Lipschitz), then the weighted sum."""
    hidden = [(u.weight, _product_bound(_relu_bound(u.gate, bounds, bits),
                                        _form_bound(u.value, bounds, bits), bits))
              for u in op.units]
    out = _sum_bound(hidden, bits)  # checks that this node's own partial sums are exact
    if out.exact:
        # An exact result lies in the node's declared range (the evaluator enforces ranges), so
        # later bounds start from that range rather than from the sum of |unit| bounds, which
        # would compound with depth.
        declared = max(abs(Fraction(op.output.range.lo)), abs(Fraction(op.output.range.hi)))
        return Bound(min(out.mag, declared), 0.0, out.grid)
    return out


def _lookup_check(op: Head, bounds, bits: int, score_bits: int | None) -> LookupCheck:
    """Exact scores: float scores within the mantissa (``score_bits``), or (None) int64
    scores of exact integer rows below 2**63."""
    pairs = [(_row_bound(q, bounds, bits), _row_bound(k, bounds, bits))
             for q, k in zip(op.query, op.key, strict=True)]
    pairs = [(q, k) for q, k in pairs if q.mag != 0 and k.mag != 0]
    if not all(q.exact and k.exact for q, k in pairs):
        return LookupCheck(op.name, -1, 2**(score_bits or 63), False, "its query or key is "
                           "not exact (it depends on a mean head or a non-dyadic coefficient)")
    total = sum((q.mag * k.mag for q, k in pairs), Fraction(0))
    if score_bits is None:
        if any(q.grid > 0 or k.grid > 0 for q, k in pairs):
            return LookupCheck(op.name, -1, 2**63, False, "int64 scores need integer query "
                               "and key rows")
        units = math.ceil(total)
        limit, unit = 63, "1"
    else:
        grid = max((q.grid + k.grid for q, k in pairs), default=-64)
        units = math.ceil(total * Fraction(2) ** grid)
        limit, unit = score_bits, f"2**{-grid}"
    if units >= 2**limit:
        return LookupCheck(op.name, units, 2**limit, False, f"|q.k| reaches {units} units of "
                           f"{unit}, over the exact limit 2**{limit}; shorten max_len or "
                           f"narrow the key range")
    return LookupCheck(op.name, units, 2**limit, True)
