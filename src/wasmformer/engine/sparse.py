"""The same model with its linear maps as sparse matrices: the engine's fast path.

The universal model's weights are almost all zero (55,850 non-zeros of 38.8M: every unit and
head touches a few residual slots), so a dense matmul spends nearly all its time adding
zeros. ``sparse_copy(model)`` replaces each ``nn.Linear`` by a ``SparseLinear`` holding the
same weight in CSR form; ``Transformer.run``/``step`` and the KV cache are untouched.

Exactness: a sparse product adds the same non-zero products, skipping only zeros. The
numerics guard proves the model's values exact under any summation order (model/numerics.py),
so the outputs are bit-identical to the dense model's (tests check the tokens and logits).
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ..model import Transformer


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


def sparse_copy(model: Transformer) -> Transformer:
    """A copy of ``model`` whose linear maps are sparse (the dense model is left as it is)."""
    fast = copy.deepcopy(model)
    for module in list(fast.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, name, SparseLinear(child.weight))
    return fast
