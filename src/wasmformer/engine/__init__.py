"""Engines that decode the compiled model's weights.

``hull`` (a convex-hull key cache: one lookup head's hardmax in O(log n), certified exact
per query), ``fast`` (the fast decoder: ``generate_fast`` / ``FastDecoder``, a drop-in for
``Transformer.generate`` that reads the torch module's weights and answers every lookup
head from its hull) and ``kernel`` (the fast decoder's per-token loop compiled with numba).
docs/FAST.md has the design and the measurements.
"""
