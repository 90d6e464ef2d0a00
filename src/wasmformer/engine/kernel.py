"""The fast decoder's per-token loop in compiled code (numba): embedding, every layer's
sparse products, every head's hull cache (``hull.HullCache``'s algorithm and checks, in
int64), the FFNs and the unembedding's argmax, with the generation loop itself inside.

``hull.py`` is the readable statement of the data structure and its certification; this
module is the same algorithm over flat arrays (``Kernel`` packs them from a ``FastDecoder``'s
layers), tested against it. int64 replaces Python's integers, so a key must also fit
``X_LIMIT``/``Y_LIMIT``/``T_LIMIT`` (the hull's cross products, up to 2**92, are compared
exactly on 31-bit limbs: ``_product_greater``), and a query's scores must stay below
``SCORE_LIMIT`` (just under 2**63: checked per query in floats with a margin for their
rounding); otherwise that head falls back to the scan, as any uncertified query does.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from .fast import _STORES
from .hull import EXACT_LIMIT

X_LIMIT = 2**30  # |x| bound: differences below 2**31
Y_LIMIT = 2**60  # |y| bound: differences below 2**61
T_LIMIT = 2**40
# |a| |x| + |b| |y| + c |t| (a float sum of 3 terms, relative error below 2**-50) must prove
# the exact integer sum below 2**63: then no score or partial sum overflows int64
SCORE_LIMIT = 2.0**63 * (1 - 2.0**-40)

_jit = nb.njit(cache=True, nogil=True)


@_jit
def _matvec(m, ptr, idx, dat, row0, nrows, x, out, accumulate):
    """out (+)= matrix m (CSR, rows row0[m].. of ptr) @ x. Four partial sums break the
    chain of dependent additions; the numerics guard's bounds hold for any summation order
    (and exact sums are exact in every order)."""
    base = row0[m]
    for r in range(nrows[m]):
        start, stop = ptr[base + r], ptr[base + r + 1]
        s0 = s1 = s2 = s3 = 0.0
        j = start
        while j + 4 <= stop:
            s0 += dat[j] * x[idx[j]]
            s1 += dat[j + 1] * x[idx[j + 1]]
            s2 += dat[j + 2] * x[idx[j + 2]]
            s3 += dat[j + 3] * x[idx[j + 3]]
            j += 4
        while j < stop:
            s0 += dat[j] * x[idx[j]]
            j += 1
        s = (s0 + s1) + (s2 + s3)
        if accumulate:
            out[r] += s
        else:
            out[r] = s


@_jit
def _row_dot(m, r, ptr, idx, dat, row0, x):
    """Row r of matrix m (CSR) dot x."""
    base = row0[m] + r
    s = 0.0
    for j in range(ptr[base], ptr[base + 1]):
        s += dat[j] * x[idx[j]]
    return s


@_jit
def _row_add(m, r, ptr, idx, dat, row0, scale, out):
    """out += scale * row r of matrix m (CSR)."""
    base = row0[m] + r
    for j in range(ptr[base], ptr[base + 1]):
        out[idx[j]] += scale * dat[j]


@_jit
def _product_greater(dx1, dy1, dx2, dy2):
    """dx1 * dy1 > dx2 * dy2 exactly, for 0 <= dx < 2**31 and |dy| < 2**62 (products up to
    2**93): dy = high * 2**31 + low with 0 <= low < 2**31, then the difference is
    D_high * 2**31 + D_low with both parts below 2**63; carrying D_low's high part into
    D_high leaves a remainder in [0, 2**31) whose sign no longer matters."""
    high1, high2 = dy1 >> 31, dy2 >> 31
    low1, low2 = dy1 - (high1 << 31), dy2 - (high2 << 31)
    d_high = dx1 * high1 - dx2 * high2
    d_low = dx1 * low1 - dx2 * low2
    carry = d_low >> 31
    d_high += carry
    rest = d_low - (carry << 31)
    return d_high > 0 or (d_high == 0 and rest > 0)


@_jit
def _above(xa, ya, xb, yb, xc, yc):
    return _product_greater(xc - xa, yb - ya, xb - xa, yc - ya)


@_jit
def _shift(arrs_i, arrs_b, start, stop, by):
    """Move entries [start, stop) by ``by`` places (left when negative)."""
    if by > 0:
        for j in range(stop - 1, start - 1, -1):
            for a in arrs_i:
                a[j + by] = a[j]
            arrs_b[j + by] = arrs_b[j]
    else:
        for j in range(start, stop):
            for a in arrs_i:
                a[j + by] = a[j]
            arrs_b[j + by] = arrs_b[j]


@_jit
def _chain_insert(xs, ys, ts, ps, shared, n, x, y, t, pos):
    """Insert into a lower chain of n points; returns the new length (hull.Chain.insert)."""
    lo, hi = 0, n
    if n > 0 and xs[n - 1] < x:  # a key past the last (a position-keyed head's): no search
        lo = n
    while lo < hi:
        mid = (lo + hi) // 2
        if xs[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    i = lo
    cols = (xs, ys, ts, ps)
    if i < n and xs[i] == x:
        if y > ys[i]:
            return n
        if y == ys[i]:
            ts[i] = t
            ps[i] = pos
            shared[i] = True
            return n
        _shift(cols, shared, i + 1, n, -1)
        n -= 1
    if 0 < i < n and _above(xs[i - 1], ys[i - 1], x, y, xs[i], ys[i]):
        return n
    # the neighbours the new point hides: a run on each side
    left = i
    while left >= 2 and _above(xs[left - 2], ys[left - 2], xs[left - 1], ys[left - 1], x, y):
        left -= 1
    right = i
    while right + 1 < n and _above(x, y, xs[right], ys[right], xs[right + 1], ys[right + 1]):
        right += 1
    # keep [0, left), the new point, then [right, n)
    by = left + 1 - right
    if by != 0:
        _shift(cols, shared, right, n, by)
    xs[left] = x
    ys[left] = y
    ts[left] = t
    ps[left] = pos
    shared[left] = False
    return n + by


@_jit
def _gcd(a, b):
    a, b = abs(a), abs(b)
    while b:
        a, b = b, a % b
    return a


@_jit
def _as_int(v):
    """(ok, int) for a float that is an integer of safe size."""
    if v != math.floor(v) or abs(v) >= 2.0**62:
        return False, 0
    return True, np.int64(v)


@_jit
def _hull_append(h, k, d, pos, hx, hy, ht, hp, hs, hoff, hlen, usable, sides, tmeta, maxabs):
    if not usable[h]:
        return
    ok0, x = _as_int(k[0])
    ok1, y = _as_int(k[1])
    t = np.int64(pos)
    ok2 = True
    if d == 3:
        ok2, t = _as_int(k[2])
    if not (ok0 and ok1 and ok2) or abs(x) >= X_LIMIT or abs(y) >= Y_LIMIT or \
            abs(t) >= T_LIMIT:
        usable[h] = False
        return
    if d == 3:
        if pos > 0 and t <= tmeta[h, 1]:
            usable[h] = False
            return
        if pos == 0:
            tmeta[h, 0] = t
        tmeta[h, 1] = t
    maxabs[h, 0] = max(maxabs[h, 0], abs(x))
    maxabs[h, 1] = max(maxabs[h, 1], abs(y))
    maxabs[h, 2] = max(maxabs[h, 2], abs(t))
    for c in range(2):
        if not sides[h, c]:  # a chain no query of this head can read (``fast.hull_sides``)
            continue
        sign = 1 - 2 * c
        o, n = hoff[h, c], hlen[h, c]  # room for n + 1 points: checked before the token
        hlen[h, c] = _chain_insert(hx[o:], hy[o:], ht[o:], hp[o:], hs[o:], n, x, sign * y,
                                   t, pos)


@_jit
def chains_full(hlen, hcap, usable):
    """Whether some usable head's chain has no room for one more point (a token inserts at
    most one per chain): the caller grows the chains (``FastDecoder``) and goes on."""
    for h in range(hlen.shape[0]):
        if usable[h] and (hlen[h, 0] >= hcap[h, 0] or hlen[h, 1] >= hcap[h, 1]):
            return True
    return False


@_jit
def _hull_argmax(h, q, d, hx, hy, ht, hp, hs, hoff, hlen, usable, sides, tmeta, maxabs,
                 margins, int_scores):
    """The certified winner (hull.HullCache.argmax), or -1: scan. A certified query's
    scores are multiples of ``grid``, so the winner leads every other key by at least
    grid: ``margins[h]`` keeps the smallest such bound seen."""
    if not usable[h]:
        return -1
    ok0, a = _as_int(q[0])
    ok1, b = _as_int(q[1])
    c = np.int64(0)
    ok2 = True
    if d == 3:
        ok2, c = _as_int(q[2])
    if not (ok0 and ok1 and ok2) or b == 0 or c < 0:
        return -1
    spacing = _gcd(a, b)
    grid = _gcd(spacing, c)
    bound = (abs(float(a)) * maxabs[h, 0] + abs(float(b)) * maxabs[h, 1]
             + float(c) * maxabs[h, 2])
    if bound >= SCORE_LIMIT:
        return -1
    if not int_scores[0] and bound >= float(EXACT_LIMIT) * float(grid & -grid) * (1 - 2.0**-40):
        return -1
    ch = 0 if b < 0 else 1
    if not sides[h, ch]:
        return -1  # not kept (``fast.hull_sides`` proves this never happens): scan
    sb = -abs(b)
    o, n = hoff[h, ch], hlen[h, ch]
    xs, ys, ts = hx[o:o + n], hy[o:o + n], ht[o:o + n]
    lo, hi = 0, n - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if a * xs[mid] + sb * ys[mid] < a * xs[mid + 1] + sb * ys[mid + 1]:
            lo = mid + 1
        else:
            hi = mid
    best = a * xs[lo] + sb * ys[lo]
    end = lo + 1
    while end < n and a * xs[end] + sb * ys[end] == best:
        end += 1
    if c > 0:
        if c * (tmeta[h, 1] - tmeta[h, 0]) >= spacing:
            return -1
        win = lo
        for i in range(lo + 1, end):
            if ts[i] > ts[win]:
                win = i
        margins[h] = min(margins[h], float(grid))
        return hp[o + win]
    if end - lo > 1 or hs[o + lo]:
        return -1
    margins[h] = min(margins[h], float(grid))
    return hp[o + lo]


@_jit
def _positional_key(pform, h, row, j):
    """Key row ``row`` (0: x, 1: y) of positional head h at position j: c0 + c1 j + c2 j**2
    (``fast.positional_keys`` proves the coefficients integers and the values below 2**62
    for every position the model has)."""
    c = 1 + 3 * row
    return pform[h, c] + pform[h, c + 1] * j + pform[h, c + 2] * j * j


@_jit
def _positional_score(pform, h, a, b, j):
    return a * _positional_key(pform, h, 0, j) + b * _positional_key(pform, h, 1, j)


@_jit
def _positional_argmax(h, q, n, pform, maxabs, margins, int_scores):
    """The winner among positions 0..n-1 of a head whose keys are a fixed quadratic of the
    position (``fast.positional_keys``), or -1 (the caller stops with an error). Its scores
    s(j) = a x(j) + b y(j) are a quadratic in j with integer coefficients: a concave one
    peaks at the integer nearest its vertex (found from a float estimate, then confirmed by
    exact comparisons with both neighbours: a local maximum of a concave sequence is the
    global one), any other at an end. Scores are exact integers (the bound as the hull's);
    a tie (two winners: the model would average them) is not certified."""
    ok0, a = _as_int(q[0])
    ok1, b = _as_int(q[1])
    if not (ok0 and ok1):
        return -1
    bound = abs(float(a)) * maxabs[h, 0] + abs(float(b)) * maxabs[h, 1]
    if bound >= SCORE_LIMIT:
        return -1
    grid = _gcd(a, b)
    if not int_scores[0] and bound >= float(EXACT_LIMIT) * float(grid & -grid) * (1 - 2.0**-40):
        return -1
    last = n - 1
    if last == 0:
        return 0
    c2 = float(a) * float(pform[h, 3]) + float(b) * float(pform[h, 6])
    c1 = float(a) * float(pform[h, 2]) + float(b) * float(pform[h, 5])
    if abs(float(a)) * abs(float(pform[h, 3])) + abs(float(b)) * abs(float(pform[h, 6])) \
            >= 2.0**62:
        return -1
    c2_exact = a * pform[h, 3] + b * pform[h, 6]
    if c2_exact < 0:  # concave: from the vertex estimate to the peak
        # (the float c2 of a negative c2_exact is below 0 unless it rounded to 0: then start
        # from 0, the climb below finds the peak all the same)
        vertex = -c1 / (2.0 * c2) if c2 < 0.0 else 0.0
        j = 0 if vertex <= 0.0 else last if vertex >= last else np.int64(round(vertex))
        s = _positional_score(pform, h, a, b, j)
        while j < last and _positional_score(pform, h, a, b, j + 1) > s:
            j += 1
            s = _positional_score(pform, h, a, b, j)
        while j > 0 and _positional_score(pform, h, a, b, j - 1) > s:
            j -= 1
            s = _positional_score(pform, h, a, b, j)
        if (j < last and _positional_score(pform, h, a, b, j + 1) == s) or \
                (j > 0 and _positional_score(pform, h, a, b, j - 1) == s):
            return -1
    else:  # convex or linear: an end
        s0 = _positional_score(pform, h, a, b, 0)
        s1 = _positional_score(pform, h, a, b, last)
        if s0 == s1:
            return -1
        j = 0 if s0 > s1 else last
    margins[h] = min(margins[h], float(grid))
    return j


@_jit
def _append(token, p, wte, wpe, ptr, idx, dat, row0, nrows, layers, heads, keys, v64, v8, vu8,
            v16, v32, totals, hx, hy, ht, hp, hs, hoff, hcap, hlen, usable, sides, pform, tmeta,
            maxabs, scans, margins, int_scores, groups, guards, status, x, buf, active, logits):
    """Run one token at position p through the model; logits are left in ``logits``."""
    for i in range(x.shape[0]):
        x[i] = wte[token, i] + (wpe[i, 0] * p + wpe[i, 1] * (p * p))
    n_layers = layers.shape[0]
    for li in range(n_layers):
        h0, h1, n_proj = layers[li, 0], layers[li, 1], layers[li, 2]
        n_out, unit0 = layers[li, 3], layers[li, 5]
        proj = buf[0, :n_proj]
        outs = buf[1, :n_out]
        _matvec(5 * li, ptr, idx, dat, row0, nrows, x, proj, False)
        for h in range(h0, h1):
            strict, d, qo, ko, vo = heads[h, 0], heads[h, 1], heads[h, 2], heads[h, 3], heads[h, 4]
            dv, oo, voff, toff = heads[h, 5], heads[h, 6], heads[h, 7], heads[h, 8]
            kind, koff = heads[h, 9], heads[h, 10]
            q = proj[qo:qo + d]
            k = proj[ko:ko + d]
            v = proj[vo:vo + dv]
            if not strict:
                _store(h, p, d, dv, k, v, kind, voff, toff, koff, keys, v64, v8, vu8, v16, v32,
                       totals, hx, hy, ht, hp, hs, hoff, hlen, usable, sides, pform, tmeta,
                       maxabs, status)
            n = p if strict else p + 1
            out = outs[oo:oo + dv]
            if n == 0:
                out[:] = 0.0
            elif d == 0:
                inv = 1.0 / n
                for j in range(dv):
                    out[j] = totals[toff + j] * inv
            elif pform[h, 0]:
                win = _positional_argmax(h, q, n, pform, maxabs, margins, int_scores)
                out[:] = 0.0
                if win >= 0:
                    _add_row(kind, voff + win * dv, dv, 1.0, out, v64, v8, vu8, v16, v32)
                elif status[0] == 0:
                    status[0] = -(h + 1)  # no keys to scan: the decoder stops with an error
            else:
                win = _hull_argmax(h, q, d, hx, hy, ht, hp, hs, hoff, hlen, usable, sides,
                                   tmeta, maxabs, margins, int_scores)
                if win >= 0:
                    out[:] = 0.0
                    _add_row(kind, voff + win * dv, dv, 1.0, out, v64, v8, vu8, v16, v32)
                else:
                    scans[h] += 1
                    _scan(q, d, dv, n, kind, voff, koff, keys, v64, v8, vu8, v16, v32, out,
                          int_scores[0])
            if strict:
                _store(h, p, d, dv, k, v, kind, voff, toff, koff, keys, v64, v8, vu8, v16, v32,
                       totals, hx, hy, ht, hp, hs, hoff, hlen, usable, sides, pform, tmeta,
                       maxabs, status)
        _matvec(5 * li + 1, ptr, idx, dat, row0, nrows, outs, x, True)
        # a run of units whose gate guard is 0 has shut gates (``FeedForward.guards``):
        # their gates are not even computed; nor is a unit's whose value reads one dim, 0
        # here (its output is gate * 0); a shut gate (relu = 0) skips the unit's value row
        # and its output column. Every value is read from x before any output is added.
        hidden = buf[2]
        n_active = 0
        gate_rows, up_rows = row0[5 * li + 2], row0[5 * li + 3]  # the layer's first rows
        for gi in range(layers[li, 6], layers[li, 7]):
            g1, g2 = groups[gi, 2], groups[gi, 3]
            if (g1 >= 0 and x[g1] == 0.0) or (g2 >= 0 and x[g2] == 0.0):
                continue
            for unit in range(groups[gi, 0], groups[gi, 1]):
                g3 = guards[unit]
                if g3 >= 0 and x[g3] == 0.0:
                    continue
                u = unit - unit0
                # the shorter row first: a shut gate or a zero value makes the other unneeded
                g, w = gate_rows + u, up_rows + u
                if ptr[w + 1] - ptr[w] < ptr[g + 1] - ptr[g]:
                    value = _row_dot(5 * li + 3, u, ptr, idx, dat, row0, x)
                    if value == 0.0:
                        continue
                    gate = _row_dot(5 * li + 2, u, ptr, idx, dat, row0, x)
                    if gate <= 0.0:
                        continue
                else:
                    gate = _row_dot(5 * li + 2, u, ptr, idx, dat, row0, x)
                    if gate <= 0.0:
                        continue
                    value = _row_dot(5 * li + 3, u, ptr, idx, dat, row0, x)
                if value != 0.0:
                    active[n_active] = u
                    hidden[n_active] = gate * value
                    n_active += 1
        for i in range(n_active):
            _row_add(5 * li + 4, active[i], ptr, idx, dat, row0, hidden[i], x)
    _matvec(5 * n_layers, ptr, idx, dat, row0, nrows, x, logits, False)


# the value stores: a head's cached value rows live in the narrowest of these that holds
# every value its rows can take (``Attention.value_range``, proven by the compiler)
KIND_FLOAT64, KIND_INT8, KIND_UINT8, KIND_INT16, KIND_INT32 = (
    _STORES.index(name) for name in ("v64", "v8", "vu8", "v16", "v32"))


@_jit
def _put_row(kind, base, v, v64, v8, vu8, v16, v32):
    """Store the value row v at ``base`` of its kind's store; False when a value is not the
    integer its range promised (then the row is not exact in that store)."""
    ok = True
    for j in range(v.shape[0]):
        if kind == KIND_FLOAT64:
            v64[base + j] = v[j]
        elif kind == KIND_INT8:
            v8[base + j] = np.int8(v[j])
            ok = ok and float(v8[base + j]) == v[j]
        elif kind == KIND_UINT8:
            vu8[base + j] = np.uint8(v[j])
            ok = ok and float(vu8[base + j]) == v[j]
        elif kind == KIND_INT16:
            v16[base + j] = np.int16(v[j])
            ok = ok and float(v16[base + j]) == v[j]
        else:
            v32[base + j] = np.int32(v[j])
            ok = ok and float(v32[base + j]) == v[j]
    return ok


@_jit
def _add_row(kind, base, dv, scale, out, v64, v8, vu8, v16, v32):
    """out += scale * the value row at ``base`` of its kind's store."""
    for j in range(dv):
        if kind == KIND_FLOAT64:
            out[j] += scale * v64[base + j]
        elif kind == KIND_INT8:
            out[j] += scale * float(v8[base + j])
        elif kind == KIND_UINT8:
            out[j] += scale * float(vu8[base + j])
        elif kind == KIND_INT16:
            out[j] += scale * float(v16[base + j])
        else:
            out[j] += scale * float(v32[base + j])


@_jit
def _store(h, p, d, dv, k, v, kind, voff, toff, koff, keys, v64, v8, vu8, v16, v32, totals,
           hx, hy, ht, hp, hs, hoff, hlen, usable, sides, pform, tmeta, maxabs, status):
    if d == 0:  # a mean head keeps only the running total of its values
        for j in range(dv):
            totals[toff + j] += v[j]
        return
    if not _put_row(kind, voff + p * dv, v, v64, v8, vu8, v16, v32) and status[0] == 0:
        status[0] = h + 1  # the decoder stops with an error: never a wrong token
    if pform[h, 0]:  # a positional key is not kept: check it is the one its formula gives
        ok0, x = _as_int(k[0])
        ok1, y = _as_int(k[1])
        if not (ok0 and ok1 and x == _positional_key(pform, h, 0, p)
                and y == _positional_key(pform, h, 1, p)):
            if status[0] == 0:
                status[0] = -(h + 1)
            return
        maxabs[h, 0] = max(maxabs[h, 0], abs(x))
        maxabs[h, 1] = max(maxabs[h, 1], abs(y))
        return
    keys[koff + p * d:koff + (p + 1) * d] = k
    if d == 2 or d == 3:  # other widths have no hull: usable is False, every query scans
        _hull_append(h, k, d, p, hx, hy, ht, hp, hs, hoff, hlen, usable, sides, tmeta, maxabs)


@_jit
def _scan(q, d, dv, n, kind, voff, koff, keys, v64, v8, vu8, v16, v32, out, int_scores):
    """The model's own average-hard attention over every cached key (an uncertified
    query): the scores (exact int64 for an int64-score model), then the mean of the values
    at the maximal ones."""
    best = np.zeros(n, dtype=np.bool_)
    if int_scores:
        iscores = np.empty(n, dtype=np.int64)
        for j in range(n):
            s = np.int64(0)
            for r in range(d):
                s += np.int64(keys[koff + j * d + r]) * np.int64(q[r])
            iscores[j] = s
        best[:] = iscores == iscores.max()
    else:
        scores = np.empty(n)
        for j in range(n):
            s = 0.0
            for r in range(d):
                s += keys[koff + j * d + r] * q[r]
            scores[j] = s
        best[:] = scores == scores.max()
    weight = 1.0 / best.sum()
    out[:] = 0.0
    for j in range(n):
        if best[j]:
            _add_row(kind, voff + j * dv, dv, weight, out, v64, v8, vu8, v16, v32)


@_jit
def _argmax(logits):
    best = 0
    for i in range(1, logits.shape[0]):
        if logits[i] > logits[best]:
            best = i
    return best


@_jit
def argmax(logits):
    return _argmax(logits)


# The packed state: ``_append``'s arguments after the token and its position, in order
# (``fast._pack`` builds it, by these names).
STATE_FIELDS = (
    "wte", "wpe", "ptr", "idx", "dat", "row0", "nrows", "layers", "heads", "keys",
    "v64", "v8", "vu8", "v16", "v32", "totals", "hx", "hy", "ht", "hp", "hs", "hoff", "hcap",
    "hlen", "usable", "sides", "pform", "tmeta", "maxabs", "scans", "margins", "int_scores", "groups",
    "guards", "status", "x", "buf", "active", "logits")
_STATUS, _HLEN = STATE_FIELDS.index("status"), STATE_FIELDS.index("hlen")
_HCAP, _USABLE = STATE_FIELDS.index("hcap"), STATE_FIELDS.index("usable")


@_jit
def run_tokens(tokens, start, *state):
    """Append ``tokens`` at positions start..; returns how many were appended: fewer when
    a hull chain is full (grow it and call again) or a value broke its store (status)."""
    for i in range(tokens.shape[0]):
        if state[_STATUS][0] or chains_full(state[_HLEN], state[_HCAP], state[_USABLE]):
            return i
        _append(tokens[i], start + i, *state)
    return tokens.shape[0]


@_jit
def generate(first, start, max_new, stops, out, *state):
    """Greedy decoding: append ``first`` at ``start``, then each predicted token; the
    predictions go to ``out`` (a stop token ends it, included). Returns how many; the last
    one is not appended (as Transformer.generate). Returns early, before appending, when a
    hull chain is full (the caller grows it and goes on) or after a value broke its store
    (status: that token's prediction is not returned)."""
    token, p, count = first, start, 0
    while count < max_new:
        if chains_full(state[_HLEN], state[_HCAP], state[_USABLE]):
            return count
        _append(token, p, *state)
        if state[_STATUS][0]:
            return count
        token = _argmax(state[-1])
        out[count] = token
        count += 1
        p += 1
        for s in stops:
            if token == s:
                return count
    return count
