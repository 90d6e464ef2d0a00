"""The two ways a session decodes the universal model's weights, behind one small interface.

A ``Decoder`` holds the model's cache for a token stream's first ``length`` tokens and
answers one call, ``decode(tokens, limit, stops)``: append ``tokens`` (at least one), then
generate greedily up to ``limit`` tokens, each appended before the next is predicted, the
first token in ``stops`` ending it (included); the last generated token is *not* appended
(the session feeds it with whatever follows, as ``Transformer.generate`` leaves it).

``TorchDecoding``: the torch module and its KV cache (``Transformer.run``), one token per
forward pass. ``FastDecoding``: ``fast.FastDecoder`` (hull-cached heads, the loop compiled
with numba), which runs a whole ``decode`` in compiled code. The session (``session.py``)
does everything else: prompt, headers, refusals, budgets, streaming output, detokenizing.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from ..model import Transformer
from .fast import FastDecoder

PREFILL_CHUNK = 1024  # positions fed per forward pass when filling the torch cache


class Decoder(Protocol):
    max_len: int  # positions the model is proven for
    chunk: int  # most tokens one decode call should generate (the session checks its
    #             budgets between calls)

    @property
    def length(self) -> int: ...

    def decode(self, tokens: list[int], limit: int, stops: frozenset[int]) -> list[int]: ...

    def truncate(self, length: int) -> None: ...

    def rows(self, layer: int, head: int, score_row: int, value_rows: list[int], start: int,
             stop: int) -> tuple[np.ndarray, np.ndarray]:
        """The cache's rows of one head (the torch module's numbering) for positions
        start..stop-1: its key row ``score_row`` and its value rows ``value_rows``."""
        ...

    def memory_needed(self, positions: int) -> int:
        """Bytes of memory the decoder would add to hold ``positions`` positions (an
        estimate; 0 where it does not know)."""
        ...


class TorchDecoding:
    """Greedy decoding with the torch module's KV cache."""

    chunk = 16

    def __init__(self, model: Transformer):
        self.model = model
        self.max_len = model.config.max_len
        self.cache = model.new_cache()
        self.length = 0
        self.device = model.lm_head.weight.device

    def decode(self, tokens: list[int], limit: int, stops: frozenset[int]) -> list[int]:
        logits = self._feed(tokens)
        out: list[int] = []
        while True:
            token = int(logits.argmax())
            out.append(token)
            if token in stops or len(out) >= limit:
                return out
            logits = self._feed([token])

    def truncate(self, length: int) -> None:
        """Forget the tokens from ``length`` on (the cache's later entries are overwritten)."""
        self.length = min(self.length, length)

    def memory_needed(self, positions: int) -> int:
        return 0  # not estimated: the torch engine's streams are short on a CPU

    def rows(self, layer: int, head: int, score_row: int, value_rows: list[int], start: int,
             stop: int) -> tuple[np.ndarray, np.ndarray]:
        cache = self.cache.layers[layer]
        keys = cache.keys[0, head, start:stop, score_row]
        values = cache.values[0, head, start:stop][:, value_rows]
        return keys.cpu().numpy(), values.cpu().numpy()

    def _feed(self, tokens: list[int]) -> torch.Tensor:
        logits = None
        with torch.inference_mode():
            for at in range(0, len(tokens), PREFILL_CHUNK):
                chunk = tokens[at:at + PREFILL_CHUNK]
                out = self.model.run(torch.tensor([chunk], device=self.device), self.length,
                                     self.cache)
                logits = out[0, -1]
                self.length += len(chunk)
        assert logits is not None
        return logits


class FastDecoding:
    """Greedy decoding by the fast decoder (``fast.FastDecoder``) over the same weights."""

    chunk = 512

    def __init__(self, model: Transformer, hulls: bool = True):
        self.model = model
        self.max_len = model.config.max_len
        self.hulls = hulls  # False: every lookup a scan (``FastDecoder``'s baseline)
        self.fast = FastDecoder(model, hulls=hulls)

    @property
    def length(self) -> int:
        return self.fast.length

    def decode(self, tokens: list[int], limit: int, stops: frozenset[int]) -> list[int]:
        fast = self.fast
        fast.pending = None  # the session feeds the previous call's last token itself
        fast.feed(tokens[:-1])
        fast.pending = tokens[-1]  # generate appends it first
        out = fast.generate(limit, set(stops))
        fast.pending = None
        return out

    def truncate(self, length: int) -> None:
        """A hull only grows: going back means a fresh decoder (the session feeds again)."""
        if length < self.fast.length:
            self.fast = FastDecoder(self.model, hulls=self.hulls)

    def memory_needed(self, positions: int) -> int:
        return self.fast.memory_needed(positions)

    def rows(self, layer: int, head: int, score_row: int, value_rows: list[int], start: int,
             stop: int) -> tuple[np.ndarray, np.ndarray]:
        return self.fast.rows(layer, head, score_row, value_rows, start, stop)

    @property
    def scans(self) -> int:
        """Queries the hulls could not certify (answered by a scan of every key)."""
        return self.fast.scans

    @property
    def margin(self) -> float | None:
        """The smallest certified score gap seen (None: no certified query yet)."""
        return self.fast.margin

