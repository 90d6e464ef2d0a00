"""The fast decoder: the torch model's own weights, one token at a time, hull-cached heads.

``generate_fast(model, prompt, max_new_tokens, stop)`` is a drop-in for
``Transformer.generate`` (same arguments, same tokens); ``FastDecoder(model)`` is its
stepping form, for an engine that splices tokens in (host output, invocation headers):

    decoder = FastDecoder(model)
    decoder.feed(prompt)            # append tokens (no prediction is kept for them)
    token = decoder.next()          # the model's next token; it is appended lazily, before
                                    # the next feed/next, so a stop token costs no step

Nothing here knows what the heads mean: everything is read from the ``Transformer`` module.
Per layer, the used rows of the query/key/value projections become one sparse matrix (one
product gives every head's q, k and v), the used FFN units three more (gate, value, output:
in the compiled loop a unit whose gate is shut skips its value and output rows, most of
them on any token, since each token's instruction enables few of the circuits); the residual stream is
a dense float64 vector. Per head:

* a *lookup* head (query . key rows that are not all zero: 2 of them, or 3 with the
  position tie-break) keeps its keys in a ``HullCache``; the winner's value row is copied,
  exactly as the model's average-hard attention does. A query the hull cannot certify (see
  ``hull``) is answered by the model's own computation over every cached key (a scan:
  the scores in the model's score dtype -- exact int64 for an int64-score model -- and the
  average of the values at the maximal ones);
* a *mean* head (no query/key rows: uniform attention) keeps a running sum of its values;
  the average of n of them is that sum times fl(1/n) (the numerics guard's error bound for a
  mean covers any summation order, so the proof of the torch model holds for this one);
* a head with no value or output weights is skipped.

Float64 models only: every dot product here is exact wherever the numerics guard proved the
torch model exact (the order of summation does not matter then), and within its error bound
elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sparse
import torch

from wasmformer.model.numerics import NumericsError, check_runtime
from wasmformer.model.transformer import Transformer

from .hull import HullCache


@dataclass(slots=True)
class _Head:
    """One attention head's slices of its layer's projection vector, and its cache."""

    strict: bool
    q: slice
    k: slice
    v: slice
    o: slice  # its slice of the layer's concatenated head outputs
    keys: np.ndarray  # (capacity, d): every position's key (for the scan); grows by doubling
    values: np.ndarray  # (capacity, d_v): a lookup's values (a mean head keeps only a total)
    hull: HullCache | None  # None: a mean head, or a lookup the hull cannot hold
    total: np.ndarray | None = None  # a mean head's running sum of values
    count: int = 0
    scans: int = 0  # queries answered by the full scan (the hull could not certify them)
    integer: bool = False  # the model's scores are int64 (``ModelConfig.score_dtype``)
    index: int = -1  # the head's number in its layer of the torch module
    score_rows: tuple[int, ...] = ()  # the module's query/key rows kept (the key columns)
    value_rows: tuple[int, ...] = ()  # the module's value rows kept (the value columns)

    @property
    def is_mean(self) -> bool:
        return self.q.stop == self.q.start

    def append(self, k: np.ndarray, v: np.ndarray) -> None:
        n = self.count
        if self.is_mean:
            self.total += v
        else:
            self.keys[n] = k
            self.values[n] = v
            if self.hull is not None:
                self.hull.append(k)
        self.count = n + 1

    def attend(self, q: np.ndarray) -> np.ndarray | None:
        """The head's output over the positions cached so far (None: no candidate, 0)."""
        n = self.count
        if n == 0:
            return None
        if self.is_mean:
            return self.total * (1.0 / n)
        if self.hull is not None:
            winner = self.hull.argmax(q)
            if winner is not None:
                return self.values[winner]
        self.scans += 1
        if self.integer:
            scores = self.keys[:n].astype(np.int64) @ q.astype(np.int64)  # exact, as the model
        else:
            scores = self.keys[:n] @ q
        best = np.flatnonzero(scores == scores.max())  # the model's average-hard attention
        return (self.values[best] * (1.0 / len(best))).sum(axis=0)


@dataclass(slots=True)
class _Layer:
    projection: sparse.csr_array  # residual -> every head's q, k, v
    heads: list[_Head]
    out: sparse.csr_array  # heads' outputs (concatenated) -> residual
    gate: sparse.csr_array  # residual -> the used units' gates
    up: sparse.csr_array  # residual -> the used units' values
    down: sparse.csr_array  # units -> residual
    guards: np.ndarray  # (units, 2): residual dims whose 0 shuts the unit's gate (-1: none)
    outputs: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.outputs = np.zeros(self.out.shape[1])

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self.attend(x)
        return x + self.down @ (np.maximum(self.gate @ x, 0.0) * (self.up @ x))

    def attend(self, x: np.ndarray) -> np.ndarray:
        """The attention sublayer: x plus every head's output (the FFN's input)."""
        p = self.projection @ x
        for head in self.heads:
            q, k, v = p[head.q], p[head.k], p[head.v]
            if not head.strict:
                head.append(k, v)
            y = head.attend(q)
            self.outputs[head.o] = 0.0 if y is None else y
            if head.strict:
                head.append(k, v)
        return x + self.out @ self.outputs


class FastDecoder:
    """Greedy decoding of ``model``'s weights with per-head hull caches (see module doc).

    ``compiled``: run the per-token loop in compiled code (``engine.kernel``, numba); None
    (the default) uses it when numba is installed, else the numpy/Python path."""

    def __init__(self, model: Transformer, compiled: bool | None = None):
        cfg = model.config
        if cfg.torch_dtype != torch.float64:
            raise NumericsError(f"the fast decoder runs float64 models, not {cfg.dtype}")
        self.max_len = cfg.max_len
        # the per-position arrays (keys, values, hull chains) start at ``capacity`` positions
        # and double as the stream grows: a long model costs what the stream uses
        self.capacity = min(cfg.max_len, START_CAPACITY)
        self.wte = _numpy(model.wte.weight)  # (vocab, d_model)
        self.wpe = _numpy(model.wpe.weight)  # (d_model, 2): [p, p**2] -> residual
        self.layers = [_layer(block, cfg, self.capacity) for block in model.blocks]
        self.lm_head = sparse.csr_array(_numpy(model.lm_head.weight))
        self.integer_scores = cfg.score_dtype == "int64"
        self.length = 0  # tokens appended so far
        self.pending: int | None = None  # predicted, not yet appended
        self.best: int | None = None  # the argmax after the last appended token
        if compiled is None:
            compiled = kernel_available()
        self.state = _pack(self, self.capacity) if compiled else None

    @property
    def compiled(self) -> bool:
        return self.state is not None

    def feed(self, tokens: Iterable[int]) -> None:
        """Append ``tokens`` (after any pending prediction)."""
        self._flush()
        tokens = list(tokens)
        if not tokens:
            return
        check_runtime(torch.float64, self.length + len(tokens), self.max_len)
        self._reserve(self.length + len(tokens))
        if self.state is not None:
            from . import kernel
            array = np.asarray(tokens, dtype=np.int64)
            self.best = int(kernel.run_tokens(array, self.length, *self.state))
            self.length += len(tokens)
            return
        for token in tokens:
            self._append(token)

    def next(self) -> int:
        """The model's next token (argmax, first on ties as torch); appended lazily."""
        self._flush()
        if self.best is None:
            raise ValueError("the fast decoder needs at least one token before next()")
        self.pending = self.best
        return self.pending

    def generate(self, max_new_tokens: int, stop: set[int]) -> list[int]:
        """Up to ``max_new_tokens`` predictions, the first stop token ending them (included);
        the last one stays pending (appended only if decoding goes on)."""
        if self.state is None or self.pending is None or max_new_tokens <= 0:
            new: list[int] = []
            while len(new) < max_new_tokens:
                new.append(self.next())
                if new[-1] in stop:
                    break
            return new
        from . import kernel
        stops = np.array(sorted(stop), dtype=np.int64)
        new = []
        while len(new) < max_new_tokens and not (new and new[-1] in stop):
            # generate appends the pending token and each prediction but the last
            if self.length == self.capacity:
                self._reserve(self.length + 1)
            allowed = min(max_new_tokens - len(new), self.capacity - self.length)
            if allowed <= 0:
                break
            out = np.zeros(allowed, dtype=np.int64)
            count = int(kernel.generate(self.pending, self.length, allowed, stops, out,
                                        *self.state))
            new += out[:count].tolist()
            self.length += count
            self.pending = self.best = new[-1]
        if len(new) < max_new_tokens and not (new and new[-1] in stop):
            check_runtime(torch.float64, self.length + 1, self.max_len)  # raises
        return new

    def _reserve(self, positions: int) -> None:
        """Grow the per-position arrays (doubling, up to max_len) to hold ``positions``."""
        if positions <= self.capacity:
            return
        old, new = self.capacity, min(self.max_len, max(positions, 2 * self.capacity))
        if new == old:
            return  # at max_len already: check_runtime refuses what does not fit
        for layer in self.layers:
            for head in layer.heads:
                head.keys = _grown(head.keys, new)
                head.values = _grown(head.values, new)
        if self.state is not None:
            self.state = _grow_state(self.state, old, new)
        self.capacity = new

    def rows(self, layer: int, head: int, score_row: int, value_rows: list[int], start: int,
             stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Cached rows of the torch module's head ``head`` of ``layer`` for positions
        start..stop-1: key row ``score_row`` (stop - start,) and ``value_rows``
        (stop - start, len(value_rows)), as the head holds them."""
        at = [h for layer_heads in self.layers for h in layer_heads.heads]
        mine = next(h for h in self.layers[layer].heads if h.index == head)
        kc = mine.score_rows.index(score_row)
        vc = [mine.value_rows.index(r) for r in value_rows]
        if self.state is None:
            return mine.keys[start:stop, kc].copy(), mine.values[start:stop][:, vc]
        g = at.index(mine)
        dv, voff = int(self.state[8][g, 5]), int(self.state[8][g, 7])
        values = self.state[10][voff + start * dv:voff + stop * dv].reshape(-1, dv)
        return self.state[9][g, start:stop, kc].copy(), values[:, vc]

    @property
    def scans(self) -> int:
        """Queries the hulls could not certify (answered by a full scan)."""
        if self.state is not None:
            return int(self.state[_SCANS].sum())
        return sum(h.scans for layer in self.layers for h in layer.heads)

    @property
    def margin(self) -> float | None:
        """The smallest gap certified between a lookup's winning score and every other
        key's (attention logits), over every hull-answered query so far: each such query's
        scores lie on a grid of that spacing (``hull``). None: none yet, or the numpy/Python
        form (which does not track it)."""
        if self.state is None:
            return None
        smallest = float(self.state[_MARGINS].min())
        return None if smallest == np.inf else smallest

    def _flush(self) -> None:
        if self.pending is not None:
            token, self.pending = self.pending, None
            self.feed([token])

    def _append(self, token: int) -> None:
        p = self.length
        self._reserve(p + 1)
        pf = float(p)
        x = self.wte[token] + (self.wpe[:, 0] * pf + self.wpe[:, 1] * (pf * pf))
        for layer in self.layers:
            x = layer.forward(x)
        self.best = int(np.argmax(self.lm_head @ x))
        self.length = p + 1


def generate_fast(model: Transformer, prompt: list[int], max_new_tokens: int,
                  stop: int | tuple[int, ...] = (), compiled: bool | None = None) -> list[int]:
    """``model.generate`` by the fast decoder: the new tokens (a stop token included, last)."""
    if not prompt:
        raise ValueError("generate needs a non-empty prompt")
    stops = {stop} if isinstance(stop, int) else set(stop)
    decoder = FastDecoder(model, compiled)
    decoder.feed(prompt[:-1])
    decoder.pending = prompt[-1]  # generate appends it first
    decoder.best = None
    if not decoder.compiled:
        decoder.feed([])
    return decoder.generate(max_new_tokens, stops)


def kernel_available() -> bool:
    """Whether numba (the compiled per-token loop) is installed."""
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


START_CAPACITY = 4096  # positions the per-position arrays hold at first
_SCANS = 21  # the index of the per-head scan counters in the packed state
_MARGINS = 22  # the per-head smallest certified gap between the winner's score and the rest
_KEYS, _VALUES, _HEADS = 9, 10, 8  # the per-position key and value stores, the head table
_CHAINS = range(12, 17)  # the hull chains' per-position arrays (n_heads, 2, capacity)


def _grown(a: np.ndarray, size: int, axis: int = 0) -> np.ndarray:
    """``a`` with its ``axis`` extended to ``size`` (zeros after the old entries)."""
    shape = list(a.shape)
    shape[axis] = size
    out = np.zeros(shape, dtype=a.dtype)
    out[(slice(None),) * axis + (slice(0, a.shape[axis]),)] = a
    return out


def _grow_state(state: tuple, old: int, new: int) -> tuple:
    """The packed state with room for ``new`` positions: the key store and hull chains
    extended, each head's value segment (``old`` * d_v entries at its offset) moved to its
    new offset (``new`` * the d_v of the heads before it)."""
    state = list(state)
    heads = state[_HEADS].copy()
    values = np.zeros(max(int((heads[heads[:, 1] > 0, 5] * new).sum()), 1))
    at = 0
    for h in range(heads.shape[0]):
        dv, voff = int(heads[h, 5]), int(heads[h, 7])
        if heads[h, 1] == 0:  # a mean head keeps only its total
            heads[h, 7] = at
            continue
        values[at:at + old * dv] = state[_VALUES][voff:voff + old * dv]
        heads[h, 7] = at
        at += new * dv
    state[_HEADS], state[_VALUES] = heads, values
    state[_KEYS] = _grown(state[_KEYS], new, axis=1)
    for i in _CHAINS:
        state[i] = _grown(state[i], new, axis=2)
    return tuple(state)


def _pack(decoder: FastDecoder, capacity: int) -> tuple:
    """The arguments of ``kernel.run_tokens``/``kernel.generate`` after the positions: the
    weights as one CSR store (per layer: projection, out, gate, up, and down transposed, a
    row per unit, so a unit whose gate is shut costs nothing; then lm_head), the head table,
    the caches and the scratch buffers."""
    matrices = [m for layer in decoder.layers
                for m in (layer.projection, layer.out, layer.gate, layer.up, layer.down.T)]
    matrices.append(decoder.lm_head)
    ptr, idx, dat, row0, nrows = [], [], [], [], []
    nnz = rows = 0
    for m in matrices:
        m = sparse.csr_array(m)
        m.sort_indices()
        row0.append(rows)
        nrows.append(m.shape[0])
        ptr.append(m.indptr[:-1] + nnz)
        ptr.append(np.array([nnz + m.nnz]))
        idx.append(m.indices)
        dat.append(m.data)
        nnz += m.nnz
        rows += m.shape[0] + 1
    heads, layers = [], []
    voff = toff = units = 0
    for layer in decoder.layers:
        first = len(heads)
        for h in layer.heads:
            d, dv = h.q.stop - h.q.start, h.v.stop - h.v.start
            heads.append([h.strict, d, h.q.start, h.k.start, h.v.start, dv, h.o.start,
                          voff, toff])
            voff += capacity * dv if d else 0  # a mean head keeps only its total
            toff += dv if d == 0 else 0
        layers.append([first, len(heads), layer.projection.shape[0], layer.out.shape[1],
                       layer.gate.shape[0], units])
        units += layer.gate.shape[0]
    n_heads = max(len(heads), 1)
    widths = [row[1] for row in heads]  # d: the hull holds 2-D keys, or 2-D plus the tie term
    usable = np.array([d in (2, 3) for d in widths] or [False], dtype=np.bool_)
    width = max([1] + [max(r[2], r[3], r[4]) for r in layers])  # rows: q/k/v, outputs, units
    d_model = decoder.wte.shape[1]
    state = (
        np.ascontiguousarray(decoder.wte), np.ascontiguousarray(decoder.wpe),
        np.concatenate(ptr).astype(np.int64), np.concatenate(idx).astype(np.int64),
        np.concatenate(dat).astype(np.float64), np.array(row0, dtype=np.int64),
        np.array(nrows, dtype=np.int64), np.array(layers, dtype=np.int64).reshape(-1, 6),
        np.array(heads, dtype=np.int64).reshape(-1, 9),
        np.zeros((n_heads, capacity, max([3] + widths))), np.zeros(max(voff, 1)),
        np.zeros(max(toff, 1)),
        np.zeros((n_heads, 2, capacity), dtype=np.int64),  # hull chains: x
        np.zeros((n_heads, 2, capacity), dtype=np.int64),  # y (upper chain: -y)
        np.zeros((n_heads, 2, capacity), dtype=np.int64),  # t
        np.zeros((n_heads, 2, capacity), dtype=np.int64),  # position
        np.zeros((n_heads, 2, capacity), dtype=np.bool_),  # shared by several positions
        np.zeros((n_heads, 2), dtype=np.int64),  # chain lengths
        usable,
        np.zeros((n_heads, 2), dtype=np.int64),  # t_first, t_last
        np.zeros((n_heads, 3), dtype=np.int64),  # max |x|, |y|, |t|
        np.zeros(n_heads, dtype=np.int64),  # scans (index _SCANS)
        np.full(n_heads, np.inf),  # smallest certified score gap (index _MARGINS)
        np.array([decoder.integer_scores]),  # int64 scores (ModelConfig.score_dtype)
        np.concatenate([layer.guards for layer in decoder.layers] + [np.full((1, 2), -1)])
        .astype(np.int64),  # every layer's units' gate guards, in order
        np.zeros(d_model), np.zeros((3, width)), np.zeros(decoder.lm_head.shape[0]),
    )
    return state


def _numpy(w: torch.Tensor) -> np.ndarray:
    return w.detach().cpu().numpy().astype(np.float64)


def _nonzero_rows(w: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.any(w != 0, axis=1))


def _layer(block, cfg, capacity: int) -> _Layer:
    """A block's used heads and units as sparse matrices and head caches."""
    attn, ffn = block.attn, block.ffn
    wq, wk, wv = _numpy(attn.query.weight), _numpy(attn.key.weight), _numpy(attn.value.weight)
    wo = _numpy(attn.out.weight)
    rows: list[np.ndarray] = []  # projection rows, in the order the slices below name
    out_columns: list[int] = []
    heads: list[_Head] = []
    at = 0
    for h in range(cfg.n_head):
        qk = slice(h * cfg.d_qk, (h + 1) * cfg.d_qk)
        vs = slice(h * cfg.d_v, (h + 1) * cfg.d_v)
        # a score row counts when both its query and key rows are non-zero
        used = [r for r in range(cfg.d_qk)
                if wq[qk][r].any() and wk[qk][r].any()]
        values = [r for r in range(cfg.d_v)
                  if wv[vs][r].any() and wo[:, vs][:, r].any()]
        if not values:
            continue  # contributes nothing to the residual
        d, dv = len(used), len(values)
        q = slice(at, at + d)
        k = slice(at + d, at + 2 * d)
        v = slice(at + 2 * d, at + 2 * d + dv)
        o = slice(len(out_columns), len(out_columns) + dv)
        at += 2 * d + dv
        rows += [wq[qk][used], wk[qk][used], wv[vs][values]]
        integer = cfg.score_dtype == "int64"
        hull = HullCache(tie=d == 3, integer_scores=integer) if d in (2, 3) else None
        head = _Head(bool(attn.strict[h]), q, k, v, o, np.zeros((capacity, d)),
                     np.zeros((capacity, dv)), hull, integer=integer, index=h,
                     score_rows=tuple(used), value_rows=tuple(values))
        if d == 0:
            head.total = np.zeros(dv)
        heads.append(head)
        out_columns += [vs.start + r for r in values]
    projection = np.concatenate(rows) if rows else np.zeros((0, cfg.d_model))
    wg, wu, wd = _numpy(ffn.gate.weight), _numpy(ffn.up.weight), _numpy(ffn.down.weight)
    guards = ffn.guards.detach().cpu().numpy().astype(np.int64)
    units = [u for u in range(cfg.d_ff) if wg[u].any() and wu[u].any() and wd[:, u].any()]
    units.sort(key=lambda u: tuple(guards[u]))  # units of one guard together: x read once
    return _Layer(sparse.csr_array(projection), heads, sparse.csr_array(wo[:, out_columns]),
                  sparse.csr_array(wg[units]), sparse.csr_array(wu[units]),
                  sparse.csr_array(wd[:, units]), guards[units].reshape(-1, 2))
