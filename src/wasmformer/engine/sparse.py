"""The same model with sparse linear maps and sparse attention reads: the engine's fast path.

The universal model's weights are almost all zero (55,850 non-zeros of 38.8M: every unit and
head touches a few residual slots), so a dense matmul spends nearly all its time adding
zeros. ``sparse_copy(model)`` replaces each ``nn.Linear`` by a ``SparseLinear`` holding the
same weight in CSR form. Attention weights are sparse too: a lookup head's average-hard
weights are one-hot, so ``weights @ values`` reads the whole value cache (T x d_v per head,
the bulk of a decoded token's time at a few thousand positions) to keep one row.
``SparseAttention`` reads, for a head whose rows have at most one non-zero weight each (a
lookup head), only those value rows; a mean head keeps the dense product. The scores,
weights, KV cache and ``Transformer.run``/``step`` are untouched. (The universal model has
lookup heads only, and padding heads whose value map is zero: their read is skipped.)

Exactness: a sparse product adds the same non-zero products, skipping only zeros, and a
one-hot row's read is 0 + 1 * v_j = v_j either way. The numerics guard proves the model's
values exact under any summation order (model/numerics.py), so the outputs are
bit-identical to the dense model's (tests check the tokens and logits).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ..model import Transformer
from ..model.transformer import SCORE_BLOCK, Attention


class SparseLinear(nn.Module):
    """``x @ weight.T`` with ``weight`` (out, in) stored as a CSR matrix."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        with warnings.catch_warnings():  # "sparse CSR support is in beta": we use mm only
            warnings.simplefilter("ignore", UserWarning)
            self.weight = weight.detach().to_sparse_csr()
        self.out_features = weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])  # (N, in)
        y = torch.sparse.mm(self.weight, flat.T).T  # (N, out)
        return y.reshape(*x.shape[:-1], self.out_features)


class SparseAttention(Attention):
    """``Attention`` (average-hard) whose value read skips zero weights (``sparse_read``)."""

    silent: list[bool]  # per head: its value map is zero (set by ``sparse_copy``)

    def forward(self, x: torch.Tensor, start: int, cache=None) -> torch.Tensor:
        q, k, v = self.project(x)  # (B, H, T, .)
        if cache is not None:
            k, v = cache.extend(start, k, v)  # (B, H, start+T, .)
        b, h, t, _ = q.shape
        block = max(1, SCORE_BLOCK // (b * h * k.shape[2]))  # queries per block of scores
        y = [sparse_read(self.weights(self.scores(q[:, :, i:i + block], k), start + i), v,
                         self.silent) for i in range(0, t, block)]
        return self.merge(torch.cat(y, dim=2))


def sparse_read(w: torch.Tensor, v: torch.Tensor, silent: list[bool]) -> torch.Tensor:
    """``w @ v`` for weights (B, H, T, Tk) and values (B, H, Tk, d): a ``silent`` head (its
    value map is zero: a padding head) gives 0 (every product is w * 0); a head whose every
    row has at most one non-zero weight (a lookup head) reads just those value rows; any
    other (a mean head, whose weights fl(1/n) the guard bounds in any summation order) the
    dense product."""
    b, h, t, _ = w.shape
    y = w.new_zeros(b, h, t, v.shape[-1])
    flat = y.view(b * h * t, -1)
    for head in range(h):
        if silent[head]:
            continue
        wh = w[:, head]  # (B, T, Tk)
        if int(wh.count_nonzero(-1).max()) > 1:
            y[:, head] = wh @ v[:, head]
            continue
        at = wh.nonzero(as_tuple=True)  # (batch, query, key) of each non-zero weight
        rows = v[at[0], head, at[2]] * wh[at].unsqueeze(-1)  # w * v: the one product
        flat.index_add_(0, (at[0] * h + head) * t + at[1], rows)  # 0 + w * v, exact
    return y


def sparse_copy(model: Transformer) -> Transformer:
    """A copy of ``model`` with sparse linear maps and attention reads (the dense model is
    left as it is)."""
    fast = copy.deepcopy(model)
    for module in list(fast.modules()):
        if isinstance(module, Attention):
            module.__class__ = SparseAttention  # same parameters and buffers, sparse read
            rows = module.value.weight.view(module.n_head, module.d_v, -1)
            module.silent = [not bool(r.any()) for r in rows]
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, SparseLinear(child.weight))
    return fast
