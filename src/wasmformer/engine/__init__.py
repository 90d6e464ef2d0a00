"""Engines: programs executed by the universal model's greedy decoding.

  models.py   the universal model per max_len bucket, built once, cached in process and on
              disk (``universal_model``), and ``build_universal`` (no cache)
  sparse.py   the same model with sparse linear maps (bit-identical, faster): the default
  session.py  ``Session`` (``TorchSession``): one instance's token stream (prompt, then per
              invocation the header and the generated trace) in one model cache; refusals,
              budgets, streaming output; engine "torch" or "fast"
  decoders.py the two decoders a session drives: ``TorchDecoding`` (the torch module's KV
              cache) and ``FastDecoding`` (the fast decoder below)
  hull.py     a convex-hull key cache: one lookup head's hardmax in O(log n), certified
              exact per query
  fast.py     the fast decoder (``generate_fast`` / ``FastDecoder``): a drop-in for
              ``Transformer.generate`` reading the torch module's weights, every lookup head
              answered from its hull; kernel.py: its per-token loop compiled with numba
              (docs/FAST.md)

The API (``wasmformer.run(..., engine="torch"|"fast")``, ``Instance.invoke(..., engine=...)``)
and the CLI (``wasmformer run --engine torch|fast``, ``wasmformer build``) sit on top.
"""

from .models import (
    BUCKETS,
    DTYPES,
    bucket_for,
    build_universal,
    fast_model,
    model_key,
    universal_model,
)
from .session import ENGINES, Invocation, Session, TorchSession

__all__ = ["BUCKETS", "DTYPES", "ENGINES", "Invocation", "Session", "TorchSession", "bucket_for", "build_universal",
           "fast_model", "model_key", "universal_model"]
