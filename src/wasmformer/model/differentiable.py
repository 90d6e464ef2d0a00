"""The differentiable mode of the transformer: a finite attention temperature, soft tokens,
teacher forcing over a whole trace in one parallel forward pass.

    probs = soft_tokens(tokens, vocab, {position: dist})  # (B, T, vocab), rows sum to 1
    logits = forward(model, probs, sharpness=2**-5)       # (B, T, vocab), differentiable
    loss = trace_loss(logits, tokens, predicted)          # cross-entropy on the trace

The built model's attention is average-hard (``model.transformer``): a lookup's integer
scores have one maximum, which gets weight 1. Here every head is a softmax of
``SOFTMAX_SCALE * sharpness * score`` (SOFTMAX_SCALE = 1024, the inverse temperature that
the compiler folded into the query weights before the model became average-hard): at
sharpness 1 a one-unit gap weighs exp(-1024) == 0, so the weights are exactly 0 or 1 and
no gradient flows through *which* position a head reads (only through the value it
copies, which is linear); 1 is the built model, bit for bit (when its scores are exact in
float64: this mode computes them in float64 even for an int64-score model, so use models
whose guard report proves float64 scores). 2**-k makes a score gap of one unit weigh
exp(-1024 * 2**-k), so the heads
average over near keys and gradients reach the scores (measured on a 66-step trace: exact
down to 2**-5.25, broken from 2**-5.5, docs/DIFFERENTIABLE.md). ``relu_width`` > 0 replaces the
FFN's relu(x) by the softplus w * log(1 + exp(x / w)), a smooth surrogate for its steps
(0 keeps the relu: the steps are then ramps of width 1 with zero slope outside).

A soft token is a probability vector over the vocabulary, embedded as the mixture of
``wte`` rows. Byte tokens carry their value and bits (``universal.features``), so a soft
byte carries the expected value and the expected bits.

This module only reads the model's weights: the hard model (``Transformer.forward``,
``generate``) is unchanged. At sharpness 1 and relu_width 0 the forward here equals it
(tested). It does no KV-cache decoding; for training with a fixed prompt, ``encode_prefix``
computes the prompt's keys and values once and ``forward(..., prefix=...)`` runs the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .numerics import check_runtime
from .transformer import Attention, FeedForward, Transformer


@dataclass(frozen=True)
class Prefix:
    """The keys and values of a fixed prompt, per layer (they depend on the FFN surrogate
    the prompt was run with, so ``forward`` checks it matches)."""

    length: int
    keys: tuple[torch.Tensor, ...]  # per layer (1, H, length, d_qk)
    values: tuple[torch.Tensor, ...]  # per layer (1, H, length, d_v)
    relu_width: float


def soft_tokens(tokens: list[int] | torch.Tensor, vocab_size: int,
                soft: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
    """One-hot rows (1, T, vocab) for ``tokens`` (float64), with the rows at the positions
    of ``soft`` replaced by the given distributions (each (vocab,), or (B, vocab) for a
    batch; the result is then (B, T, vocab) and keeps their autograd graph)."""
    ids = torch.as_tensor(tokens, dtype=torch.long).view(1, -1)
    probs = F.one_hot(ids, vocab_size).to(torch.float64)
    if not soft:
        return probs
    batch = max(d.shape[0] if d.dim() == 2 else 1 for d in soft.values())
    probs = probs.expand(batch, -1, -1).clone()
    for position, dist in soft.items():
        probs[:, position] = dist
    return probs


def embed(model: Transformer, inputs: torch.Tensor, start: int = 0) -> torch.Tensor:
    """Residual stream (B, T, d_model) at positions start.. for token ids (B, T) or soft
    tokens (B, T, vocab): mixtures of ``wte`` rows, plus the positional features."""
    wte = model.wte.weight
    x = wte[inputs] if inputs.dtype == torch.long else inputs.to(wte.dtype) @ wte
    t = x.shape[1]
    p = torch.arange(start, start + t, dtype=wte.dtype, device=wte.device)
    return x + model.wpe(torch.stack([p, p * p], dim=-1))


def forward(model: Transformer, inputs: torch.Tensor, *, sharpness: float = 1.0,
            relu_width: float = 0.0, prefix: Prefix | None = None,
            embedded: torch.Tensor | None = None) -> torch.Tensor:
    """Logits (B, T, vocab) of a causal forward over ``inputs`` (ids or soft tokens) placed
    after ``prefix`` (if given). ``embedded`` replaces ``embed(model, inputs)`` (to take
    gradients with respect to the residual input itself)."""
    start = prefix.length if prefix is not None else 0
    if prefix is not None and prefix.relu_width != relu_width:
        raise ValueError("the prefix was encoded with another relu_width")
    x = embed(model, inputs, start) if embedded is None else embedded
    check_runtime(model.config.torch_dtype, start + x.shape[1], model.config.max_len)
    for i, block in enumerate(model.blocks):
        past = None if prefix is None else (prefix.keys[i], prefix.values[i])
        y, _, _ = attention(block.attn, x, start, past, sharpness)
        x = x + y
        x = x + feed_forward(block.ffn, x, relu_width)
    return model.lm_head(x)


def encode_prefix(model: Transformer, tokens: list[int], *, sharpness: float = 1.0,
                  relu_width: float = 0.0) -> Prefix:
    """The keys and values of a fixed prompt (hard tokens, no gradient) for ``forward``,
    its own heads run at ``sharpness`` (later positions use the sharpness given to
    ``forward``)."""
    keys, values = [], []
    with torch.no_grad():
        x = embed(model, torch.tensor([tokens], device=model.wte.weight.device))
        for block in model.blocks:
            y, k, v = attention(block.attn, x, 0, None, sharpness)
            keys.append(k)
            values.append(v)
            x = x + y
            x = x + feed_forward(block.ffn, x, relu_width)
    return Prefix(len(tokens), tuple(keys), tuple(values), relu_width)


def attention(attn: Attention, x: torch.Tensor, start: int,
              past: tuple[torch.Tensor, torch.Tensor] | None, sharpness: float):
    """``Attention.forward`` with every score times ``sharpness``; also returns the keys
    and values of these positions (B, H, T, d)."""
    q, k_new, v_new = attn.project(x)
    scores = q @ k_new.transpose(-2, -1)  # (B, H, T, T)
    if past is not None:  # the prompt's keys broadcast over the batch (no copy per row)
        scores = torch.cat([q @ past[0].transpose(-2, -1), scores], dim=-1)
    weights = attn.weights(scores, start, sharpness=sharpness)
    y = weights[..., start:] @ v_new if past is not None else weights @ v_new
    if past is not None:
        y = y + weights[..., :start] @ past[1]
    return attn.merge(y), k_new, v_new


def feed_forward(ffn: FeedForward, x: torch.Tensor, relu_width: float) -> torch.Tensor:
    """``FeedForward.forward``, with relu replaced by w * softplus(x / w) when w > 0."""
    if relu_width == 0:
        return ffn(x)
    return ffn(x, activation=lambda gate: relu_width * F.softplus(gate / relu_width))


def trace_loss(logits: torch.Tensor, tokens: torch.Tensor, predicted: torch.Tensor
               ) -> torch.Tensor:
    """Teacher-forced cross-entropy (summed) of the next token at the predicted positions:
    logits (B, T, vocab), tokens (B, T) or (T,), predicted (T,) bool (position i predicts
    token i + 1)."""
    tokens = torch.as_tensor(tokens).view(-1, logits.shape[1]).expand(logits.shape[0], -1)
    at = torch.nonzero(torch.as_tensor(predicted)).view(-1)
    picked = logits[:, at]  # (B, n, vocab)
    target = tokens[:, at + 1]
    return F.cross_entropy(picked.reshape(-1, picked.shape[-1]), target.reshape(-1),
                           reduction="sum")


def argmax_exact(logits: torch.Tensor, tokens: torch.Tensor, predicted: torch.Tensor
                 ) -> torch.Tensor:
    """Per sequence (B,): whether the argmax at every predicted position is the next token."""
    tokens = torch.as_tensor(tokens).view(-1, logits.shape[1]).expand(logits.shape[0], -1)
    at = torch.nonzero(torch.as_tensor(predicted)).view(-1)
    return (logits[:, at].argmax(-1) == tokens[:, at + 1]).all(-1)
