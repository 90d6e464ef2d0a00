"""Engines that decode the compiled model's weights.

``hull`` (a convex-hull key cache: one lookup head's hardmax in O(log n)) and ``fast`` (the
fast decoder: ``generate_fast`` / ``FastDecoder``, a drop-in for ``Transformer.generate``
that reads the torch module's weights and answers every lookup head from its hull).
"""
