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
from fractions import Fraction

import numpy as np
import scipy.sparse as sparse
import torch

from wasmformer.errors import ModelNotProven
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
    kind: int = 0  # the compiled loop's value store for it (``value_kind``)

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
    # (units,): the one residual dim a unit's value row reads (-1: none, or several): where
    # it is 0 the unit's output is gate * 0 = 0 whatever the gate, so the loop skips it
    value_guards: np.ndarray
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
    (the default) uses it when numba is installed, else the numpy/Python path.
    ``hulls=False`` (compiled only): no hull and no positional formula, every lookup a scan
    over every cached key (the model's own attention): the baseline the hulls are measured
    against."""

    def __init__(self, model: Transformer, compiled: bool | None = None, hulls: bool = True):
        cfg = model.config
        if cfg.torch_dtype != torch.float64:
            raise NumericsError(f"the fast decoder runs float64 models, not {cfg.dtype}")
        self.max_len = cfg.max_len
        # the per-position arrays (keys, values, hull chains) start at ``capacity`` positions
        # and double as the stream grows: a long model costs what the stream uses
        self.capacity = min(cfg.max_len, START_CAPACITY)
        self.wte = _numpy(model.wte.weight)  # (vocab, d_model)
        self.wpe = _numpy(model.wpe.weight)  # (d_model, 2): [p, p**2] -> residual
        if compiled is None:
            compiled = kernel_available()
        self.hulls = hulls
        # the compiled loop keeps its caches in its packed state: the heads' own arrays
        # (the numpy/Python form's) hold no positions then
        self.layers = [_layer(block, cfg, 0 if compiled else self.capacity)
                       for block in model.blocks]
        self.lm_head = sparse.csr_array(_numpy(model.lm_head.weight))
        self.integer_scores = cfg.score_dtype == "int64"
        self.length = 0  # tokens appended so far
        self.pending: int | None = None  # predicted, not yet appended
        self.best: int | None = None  # the argmax after the last appended token
        self.state = _pack(self, self.capacity) if compiled else None
        # per store (keys, then each value store): bytes per position (``memory_needed``)
        self.store_bytes = _bytes_per_position(self._fields()) if compiled else []

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
            done = 0
            while done < len(array):  # the kernel stops where a hull chain must grow
                self._grow_chains()
                count = int(kernel.run_tokens(array[done:], self.length, *self.state))
                self.length += count
                done += count
                self._check_status()
            self.best = int(kernel.argmax(self._field("logits")))
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
            self._grow_chains()
            count = int(kernel.generate(self.pending, self.length, allowed, stops, out,
                                        *self.state))
            self._check_status()
            if count:
                new += out[:count].tolist()
                self.length += count
                self.pending = self.best = new[-1]
        if len(new) < max_new_tokens and not (new and new[-1] in stop):
            check_runtime(torch.float64, self.length + 1, self.max_len)  # raises
        return new

    def memory_needed(self, positions: int) -> int:
        """Bytes the compiled loop's state would add to hold ``positions`` positions: the
        new positions' keys and value rows, and, when that doubles its arrays, a copy of the
        largest store's used part (a doubling copies one store at a time). The hull chains'
        points (a few dozen bytes per position at most) are not counted; 0 for the numpy
        form."""
        if self.state is None or positions <= self.length:
            return 0
        need = sum(self.store_bytes) * (positions - self.length)
        if positions > self.capacity:
            need += max(self.store_bytes) * self.length
        return need

    def _reserve(self, positions: int) -> None:
        """Grow the per-position arrays (doubling, up to max_len) to hold ``positions``."""
        if positions <= self.capacity:
            return
        old, new = self.capacity, min(self.max_len, max(positions, 2 * self.capacity))
        if new == old:
            return  # at max_len already: check_runtime refuses what does not fit
        if self.state is not None:
            fields = self._fields()
            self.state = None  # so that each old store is freed as soon as it is copied
            _grow_state(fields, old, new)
            self.state = tuple(fields.values())
        else:
            for layer in self.layers:
                for head in layer.heads:
                    head.keys = _grown(head.keys, new)
                    head.values = _grown(head.values, new)
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
        g = next(i for i, h in enumerate(at) if h is mine)
        row = self._field("heads")[g]
        d, dv, voff, koff = int(row[1]), int(row[5]), int(row[7]), int(row[10])
        store = self._field(_STORES[int(row[9])])
        values = store[voff + start * dv:voff + stop * dv].reshape(-1, dv)
        form = self._field("pform")[g]
        if form[0]:  # a positional head's keys are its formula's
            j = np.arange(start, stop, dtype=np.int64)
            keys = np.stack([form[1 + 3 * r] + form[2 + 3 * r] * j + form[3 + 3 * r] * j * j
                             for r in range(2)], axis=1).astype(np.float64)
        else:
            keys = self._field("keys")[koff + start * d:koff + stop * d].reshape(-1, d)
        return keys[:, kc].copy(), values[:, vc].astype(np.float64)

    @property
    def scans(self) -> int:
        """Queries the hulls could not certify (answered by a full scan)."""
        if self.state is not None:
            return int(self._field("scans").sum())
        return sum(h.scans for layer in self.layers for h in layer.heads)

    @property
    def margin(self) -> float | None:
        """The smallest gap certified between a lookup's winning score and every other
        key's (attention logits), over every hull-answered query so far: each such query's
        scores lie on a grid of that spacing (``hull``). None: none yet, or the numpy/Python
        form (which does not track it)."""
        if self.state is None:
            return None
        smallest = float(self._field("margins").min())
        return None if smallest == np.inf else smallest

    def _field(self, name: str) -> np.ndarray:
        """One array of the compiled loop's packed state (``kernel.STATE_FIELDS``)."""
        from .kernel import STATE_FIELDS
        return self.state[STATE_FIELDS.index(name)]

    def _fields(self) -> dict[str, np.ndarray]:
        """The compiled loop's packed state by name, in ``kernel.STATE_FIELDS``'s order (so
        ``tuple(fields.values())`` packs it again)."""
        from .kernel import STATE_FIELDS
        return dict(zip(STATE_FIELDS, self.state, strict=True))

    def _check_status(self) -> None:
        """Stop with an error where a cached value broke its store's proven range: the
        token it fed is not returned (the model's weights do not match their claims)."""
        bad = int(self._field("status")[0])
        if bad < 0:
            raise ModelNotProven(f"attention head {-bad - 1} of the fast decoder: a key is not "
                                 "the fixed function of the position its weights promise, or "
                                 "a query of it has no single certified winner (no token was "
                                 "emitted from it)")
        if bad:
            raise ModelNotProven(f"the model's value ranges do not hold: attention head "
                                 f"{bad - 1} of the fast decoder cached a value outside the "
                                 "range its model proves (no token was emitted from it)")

    def _grow_chains(self) -> None:
        """Double every hull chain that has no room for another point (``kernel.chains_full``)."""
        fields = self._fields()
        if _grow_full_chains(fields):
            self.state = tuple(fields.values())

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
CHAIN_START = 16  # points a hull chain holds at first (it doubles when full)
# the compiled loop's value stores: a head's kind is its store's index here (the kernel's
# ``KIND_*`` read it from this tuple), and the integer range each store holds exactly
_STORES = ("v64", "v8", "vu8", "v16", "v32")
_KIND_RANGES = tuple((_STORES.index(name), lo, hi) for name, lo, hi in (
    ("vu8", 0, 255), ("v8", -128, 127), ("v16", -2**15, 2**15 - 1), ("v32", -2**31, 2**31 - 1)))
_STORE_DTYPES = {"v64": np.float64, "v8": np.int8, "vu8": np.uint8, "v16": np.int16,
                 "v32": np.int32}
_CHAIN_POOLS = ("hx", "hy", "ht", "hp", "hs")


def value_kind(lo: int, hi: int) -> int:
    """The narrowest value store (``kernel.KIND_*``) holding integers lo..hi; 0: float64."""
    return next((kind for kind, low, high in _KIND_RANGES if low <= lo and hi <= high), 0)


def _grown(a: np.ndarray, size: int, axis: int = 0) -> np.ndarray:
    """``a`` with its ``axis`` extended to ``size`` (zeros after the old entries)."""
    shape = list(a.shape)
    shape[axis] = size
    out = np.zeros(shape, dtype=a.dtype)
    out[(slice(None),) * axis + (slice(0, a.shape[axis]),)] = a
    return out


def _relayout(store: np.ndarray, segments: list[tuple[int, int, int]]) -> tuple[np.ndarray,
                                                                              list[int]]:
    """A new store holding each (offset, used, size) segment of ``store``: its ``used``
    entries copied to the start of a ``size``-entry segment. Returns it and the offsets."""
    out = np.zeros(max(sum(size for _, _, size in segments), 1), dtype=store.dtype)
    offsets, at = [], 0
    for offset, used, size in segments:
        out[at:at + used] = store[offset:offset + used]
        offsets.append(at)
        at += size
    return out, offsets


def _grow_state(fields: dict, old: int, new: int) -> None:
    """Room for ``new`` positions in the packed state ``fields`` (in place): each lookup
    head's key and value segments (``old`` positions at their offsets) moved to segments of
    ``new`` positions, one store at a time (the old store is dropped before the next is
    copied: the peak is the state plus one store, not twice the state)."""
    heads = fields["heads"].copy()
    lookups = [h for h in range(heads.shape[0]) if heads[h, 1] > 0]  # mean heads: a total
    keyed = [h for h in lookups if not fields["pform"][h, 0]]  # positional heads: no keys
    for kind, name in enumerate(_STORES):
        mine = [h for h in lookups if heads[h, 9] == kind]
        fields[name], offsets = _relayout(fields[name], [
            (heads[h, 7], old * heads[h, 5], new * heads[h, 5]) for h in mine])
        heads[mine, 7] = offsets
    fields["keys"], offsets = _relayout(fields["keys"], [
        (heads[h, 10], old * heads[h, 1], new * heads[h, 1]) for h in keyed])
    heads[keyed, 10] = offsets
    fields["heads"] = heads


def _bytes_per_position(fields: dict) -> list[int]:
    """Per store of the packed state (the keys, then each value store): the bytes it keeps
    per position."""
    heads = fields["heads"]
    lookups = heads[:, 1] > 0
    keyed = lookups & (fields["pform"][:heads.shape[0], 0] == 0)
    out = [int(heads[keyed, 1].sum()) * fields["keys"].itemsize]
    for kind, name in enumerate(_STORES):
        mine = lookups & (heads[:, 9] == kind)
        out.append(int(heads[mine, 5].sum()) * fields[name].itemsize)
    return out


def _grow_full_chains(fields: dict) -> bool:
    """Double the capacity of every usable hull chain that is full, in place in ``fields``
    (the chain pools re-laid out); False when none is."""
    hlen, hcap, usable = fields["hlen"], fields["hcap"], fields["usable"]
    full = (hlen >= hcap) & usable[:, None]
    if not full.any():
        return False
    hoff = fields["hoff"]
    chains = [(h, c) for h in range(hcap.shape[0]) for c in range(2)]
    segments = [(hoff[h, c], hlen[h, c], hcap[h, c] * (2 if full[h, c] else 1))
                for h, c in chains]
    for name in _CHAIN_POOLS:
        fields[name], offsets = _relayout(fields[name], segments)
    for (h, c), offset, (_, _, size) in zip(chains, offsets, segments, strict=True):
        hoff[h, c], hcap[h, c] = offset, size
    return True


def _pack(decoder: FastDecoder, capacity: int) -> tuple:
    """The arguments of ``kernel.run_tokens``/``kernel.generate`` after the positions
    (``kernel.STATE_FIELDS``): the weights as one CSR store (per layer: projection, out,
    gate, up, and down transposed, a row per unit, so a unit whose gate is shut costs
    nothing; then lm_head), the head table, the caches and the scratch buffers."""
    from .kernel import STATE_FIELDS
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
    heads, layers, groups = [], [], []
    positional = positional_keys(decoder)
    if not decoder.hulls:
        positional[:] = 0
    voff = [0] * len(_STORES)  # per value store
    koff = toff = units = 0
    for layer in decoder.layers:
        first = len(heads)
        for h in layer.heads:
            d, dv = h.q.stop - h.q.start, h.v.stop - h.v.start
            heads.append([h.strict, d, h.q.start, h.k.start, h.v.start, dv, h.o.start,
                          voff[h.kind], toff, h.kind, koff])
            if d:  # a mean head keeps only its total; a positional head no keys
                voff[h.kind] += capacity * dv
                koff += 0 if positional[len(heads) - 1, 0] else capacity * d
            else:
                toff += dv
        # the layer's units in runs that share both gate guards (``_layer`` sorts them so):
        # a run whose guard is 0 is skipped as a whole
        g = layer.guards
        starts = [u for u in range(len(g)) if u == 0 or (g[u] != g[u - 1]).any()]
        group0 = len(groups)
        for a, b in zip(starts, starts[1:] + [len(g)]):  # noqa: B905 (none when no units)
            groups.append([units + a, units + b, g[a, 0], g[a, 1]])
        layers.append([first, len(heads), layer.projection.shape[0], layer.out.shape[1],
                       layer.gate.shape[0], units, group0, len(groups)])
        units += layer.gate.shape[0]
    n_heads = max(len(heads), 1)
    widths = [row[1] for row in heads]  # d: the hull holds 2-D keys, or 2-D plus the tie term
    # a positional head answers from its key formula: no hull
    usable = np.array([decoder.hulls and d in (2, 3) and not positional[h, 0]
                       for h, d in enumerate(widths)] or [False], dtype=np.bool_)
    width = max([1] + [max(r[2], r[3], r[4]) for r in layers])  # rows: q/k/v, outputs, units
    d_model = decoder.wte.shape[1]
    chains = n_heads * 2 * CHAIN_START
    fields = dict(
        wte=np.ascontiguousarray(decoder.wte), wpe=np.ascontiguousarray(decoder.wpe),
        ptr=np.concatenate(ptr).astype(np.int64), idx=np.concatenate(idx).astype(np.int64),
        dat=np.concatenate(dat).astype(np.float64), row0=np.array(row0, dtype=np.int64),
        nrows=np.array(nrows, dtype=np.int64),
        layers=np.array(layers, dtype=np.int64).reshape(-1, 8),
        groups=np.array(groups, dtype=np.int64).reshape(-1, 4),  # unit runs: start, stop, guards
        heads=np.array(heads, dtype=np.int64).reshape(-1, 11),
        keys=np.zeros(max(koff, 1)),  # per lookup head: capacity x d, for the scan
        totals=np.zeros(max(toff, 1)),
        # the hull chains (per head, lower and upper): pools of x, y (upper chain: -y), t,
        # position, and whether several positions share the point; each chain a segment
        hx=np.zeros(chains, dtype=np.int64), hy=np.zeros(chains, dtype=np.int64),
        ht=np.zeros(chains, dtype=np.int64), hp=np.zeros(chains, dtype=np.int64),
        hs=np.zeros(chains, dtype=np.bool_),
        hoff=np.arange(0, chains, CHAIN_START, dtype=np.int64).reshape(n_heads, 2),
        hcap=np.full((n_heads, 2), CHAIN_START, dtype=np.int64),
        hlen=np.zeros((n_heads, 2), dtype=np.int64),  # chain lengths
        usable=usable,
        sides=hull_sides(decoder, n_heads),  # the chains (lower, upper) each head keeps
        pform=np.concatenate([positional, np.zeros((n_heads - len(positional), 7),
                                                   dtype=np.int64)]),
        tmeta=np.zeros((n_heads, 2), dtype=np.int64),  # t_first, t_last
        maxabs=np.zeros((n_heads, 3), dtype=np.int64),  # max |x|, |y|, |t|
        scans=np.zeros(n_heads, dtype=np.int64),
        margins=np.full(n_heads, np.inf),  # smallest certified score gap
        int_scores=np.array([decoder.integer_scores]),  # ModelConfig.score_dtype
        # per unit, in order: its value guard
        guards=np.concatenate([layer.value_guards for layer in decoder.layers]
                              + [np.full(1, -1)]).astype(np.int64),
        status=np.zeros(1, dtype=np.int64),  # 1 + a head whose value broke its store
        x=np.zeros(d_model), buf=np.zeros((3, width)), active=np.zeros(width, dtype=np.int64),
        logits=np.zeros(decoder.lm_head.shape[0]),
    )
    for kind, name in enumerate(_STORES):
        fields[name] = np.zeros(max(voff[kind], 1), dtype=_STORE_DTYPES[name])
    return tuple(fields[n] for n in STATE_FIELDS)


def hull_sides(decoder: FastDecoder, n_heads: int) -> np.ndarray:
    """Per head, in the compiled loop's order (``n_heads`` rows at least), which hull chains
    its queries can read: (lower, upper). A query reads the lower chain when its y weight
    b < 0, the upper one when b > 0. Where b is computed only from residual dims that no
    token, position or earlier layer changes (the constant dims), and each of its terms has the same
    sign, that sign is b's on every token: the other chain is never read and is not kept.
    Otherwise (and for b = 0, which scans) both are kept."""
    wte, wpe = decoder.wte, decoder.wpe
    alike = (wte == wte[:1]).all(axis=0) & (wpe == 0).all(axis=1)
    sides = np.ones((n_heads, 2), dtype=np.bool_)
    for i, (layer, head, constant) in enumerate(_heads_reading(decoder, alike)):
        if head.q.stop - head.q.start not in (2, 3):  # no hull
            continue
        row = layer.projection[[head.q.start + 1]]  # the query's y weight b
        cols, weights = row.indices, row.data
        if len(cols) == 0 or not constant[cols].all():
            continue
        terms = weights * wte[0, cols]
        if (terms < 0).all():
            sides[i, 1] = False
        elif (terms > 0).all():
            sides[i, 0] = False
    return sides


def positional_keys(decoder: FastDecoder) -> np.ndarray:
    """Per head, in the compiled loop's order: [1, x0, x1, x2, y0, y1, y2] for a lookup head
    whose two key rows are fixed quadratics of the position, x(p) = x0 + x1 p + x2 p**2 and
    y(p) likewise, with integer coefficients; else zeros. Such a head (a position-keyed one:
    a window, a record field) keeps no keys and no hull: its winner is the peak of a
    quadratic in the position (``kernel._positional_argmax``). Proven from the weights: its
    key rows read only residual dims that every token embeds alike and no earlier layer
    writes, so they hold wte[0] + wpe [p, p**2] there; the loop still checks every key it
    computes against the formula. The key values must stay below 2**62 for every position
    of the model (exact int64 in the loop)."""
    wte, wpe = decoder.wte, decoder.wpe
    alike = (wte == wte[:1]).all(axis=0)
    heads = _heads_reading(decoder, alike)
    out = np.zeros((len(heads), 7), dtype=np.int64)
    top = Fraction(decoder.max_len - 1)
    for i, (layer, head, static) in enumerate(heads):
        if head.q.stop - head.q.start != 2:  # a key with a tie term repeats: not positional
            continue
        coefficients = []
        for r in range(2):
            row = layer.projection[[head.k.start + r]]
            if not static[row.indices].all():
                break
            terms = [sum((Fraction(w) * Fraction(float(col[c])) for c, w in
                          zip(row.indices, row.data, strict=True)), Fraction(0))
                     for col in (wte[0], wpe[:, 0], wpe[:, 1])]
            biggest = abs(terms[0]) + abs(terms[1]) * top + abs(terms[2]) * top * top
            if any(t.denominator != 1 for t in terms) or biggest >= 2**62:
                break
            coefficients += [int(t) for t in terms]
        else:
            out[i] = [1, *coefficients]
    return out


def _heads_reading(decoder: FastDecoder, embedded: np.ndarray) -> list[tuple]:
    """(layer, head, static) per head in the compiled loop's order: ``static`` marks the
    residual dims that hold their embedding (``embedded`` ones: the caller's condition on
    wte/wpe) when the head reads them, i.e. that no earlier layer's head output or FFN unit
    writes (the compiler reuses a freed dim for a later feature, so a dim written later may
    still be static when read)."""
    written = np.zeros(decoder.wte.shape[1], dtype=bool)
    out = []
    for layer in decoder.layers:
        out += [(layer, head, embedded & ~written) for head in layer.heads]
        written = written | (np.diff(layer.out.indptr) > 0) | (np.diff(layer.down.indptr) > 0)
    return out


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
        bounds = attn.value_range[[vs.start + r for r in values]]
        kind = value_kind(int(bounds[:, 0].min()), int(bounds[:, 1].max()))
        head = _Head(bool(attn.strict[h]), q, k, v, o, np.zeros((capacity, d)),
                     np.zeros((capacity, dv)), hull, integer=integer, index=h,
                     score_rows=tuple(used), value_rows=tuple(values), kind=kind)
        if d == 0:
            head.total = np.zeros(dv)
        heads.append(head)
        out_columns += [vs.start + r for r in values]
    projection = np.concatenate(rows) if rows else np.zeros((0, cfg.d_model))
    wg, wu, wd = _numpy(ffn.gate.weight), _numpy(ffn.up.weight), _numpy(ffn.down.weight)
    guards = ffn.guards.detach().cpu().numpy().astype(np.int64)
    units = [u for u in range(cfg.d_ff) if wg[u].any() and wu[u].any() and wd[:, u].any()]
    units.sort(key=lambda u: tuple(guards[u]))  # units of one guard together: x read once
    up = sparse.csr_array(wu[units])
    return _Layer(sparse.csr_array(projection), heads, sparse.csr_array(wo[:, out_columns]),
                  sparse.csr_array(wg[units]), up, sparse.csr_array(wd[:, units]),
                  guards[units].reshape(-1, 2), value_guards(up))


def value_guards(up: sparse.csr_array) -> np.ndarray:
    """Per unit (a row of ``up``, no bias): the residual dim its value reads when it reads
    just one, else -1. Plain arithmetic, no proof needed: a gated unit's output is
    relu(gate) * value, and a finite gate times 0 is 0."""
    counts = np.diff(up.indptr)
    single = counts == 1
    out = np.full(up.shape[0], -1, dtype=np.int64)
    out[single] = up.indices[up.indptr[:-1][single]]
    return out
