"""Building the torch module from a ``CompiledModel``: check the numerics, set the weights.

Every weight is an exact number from the compiler, rounded once into the model's dtype
(exact for the dyadic weights that lookups and integer arithmetic use).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from wasmformer.compiler import Block as CompiledBlock
from wasmformer.compiler import CompiledModel, Row

from .numerics import check_numerics
from .transformer import UNBOUNDED, Block, ModelConfig, Transformer


def config_of(compiled: CompiledModel, dtype: torch.dtype,
              score_dtype: str | None = None) -> ModelConfig:
    name = str(dtype).removeprefix("torch.")
    return ModelConfig(compiled.vocab_size, compiled.max_len, compiled.d_model,
                       len(compiled.blocks), compiled.n_head, compiled.d_qk, compiled.d_v,
                       compiled.d_ff, name, score_dtype or name)


def build_model(compiled: CompiledModel, dtype: torch.dtype = torch.float64, *,
                score_dtype: str | None = None, allow_approximate: bool = False) -> Transformer:
    """The transformer for ``compiled`` in ``dtype``, its attention scores in
    ``score_dtype`` (default: ``dtype``; "int64" for exact integer scores up to 2**63);
    raises NumericsError where the model is not proven to emit the evaluator's tokens
    (see ``numerics``)."""
    report = check_numerics(compiled.program, dtype, score_dtype=score_dtype,
                            allow_approximate=allow_approximate)
    model = Transformer(config_of(compiled, dtype, score_dtype))
    with torch.no_grad():
        model.wte.weight.copy_(_dense(compiled.embedding, compiled.d_model))
        model.wpe.weight.zero_()
        for column, slot in enumerate(compiled.position_slots):
            if slot is not None:
                model.wpe.weight[slot, column] = 1
        for block, weights in zip(model.blocks, compiled.blocks, strict=True):
            _set_block(block, weights, model.config, guarded=report.exact)
        model.lm_head.weight.copy_(_dense(compiled.unembedding, compiled.d_model))
    model.info = {"card": dataclasses.asdict(compiled.card),
                  "numerics": {"summary": report.summary(), "exact": report.exact,
                               "proven": report.proven, "logit_error": report.logit_error,
                               "inexact": list(report.inexact),
                               "lookup_bits": {c.name: c.score_units.bit_length()
                                               for c in report.lookups}}}
    return model


def _dense(rows: Sequence[Row], width: int) -> torch.Tensor:
    """Sparse exact rows as a float64 matrix (len(rows), width); Fractions round once."""
    matrix = torch.zeros(len(rows), width, dtype=torch.float64)
    for i, row in enumerate(rows):
        for slot, c in row:
            matrix[i, slot] = float(c)
    return matrix


def _set_block(block: Block, weights: CompiledBlock, cfg: ModelConfig, guarded: bool) -> None:
    """``guarded``: write the units' gate guards (``compiler.guards``) and the value rows'
    integer ranges, claims about exact values, so only for a model whose every feature is
    computed exactly."""
    attn, ffn = block.attn, block.ffn
    for w in (attn.query, attn.key, attn.value, attn.out, ffn.gate, ffn.up, ffn.down):
        w.weight.zero_()
    for h, head in enumerate(weights.heads):
        attn.strict[h] = head.strict
        rows = slice(h * cfg.d_qk, h * cfg.d_qk + len(head.query))  # as many key rows
        attn.query.weight[rows] = _dense(head.query, cfg.d_model)
        attn.key.weight[rows] = _dense(head.key, cfg.d_model)
        first = h * cfg.d_v
        attn.value.weight[first:first + len(head.value)] = _dense(head.value, cfg.d_model)
        for i, slot in enumerate(head.out_slots):
            attn.out.weight[slot, first + i] = 1
        if guarded:  # a claim about exact values, as the guards
            for i, r in enumerate(head.value_ranges):
                if r.integer and UNBOUNDED[0] <= r.lo and r.hi <= UNBOUNDED[1]:
                    attn.value_range[first + i] = torch.tensor([int(r.lo), int(r.hi)])
    units = weights.units
    ffn.gate.weight[:len(units)] = _dense([u.gate for u in units], cfg.d_model)
    ffn.up.weight[:len(units)] = _dense([u.value for u in units], cfg.d_model)
    ffn.guards.fill_(-1)
    for i, u in enumerate(units):
        ffn.down.weight[u.out_slot, i] = float(u.weight)
        if guarded:
            kept = u.guards[:ffn.guards.shape[1]]
            ffn.guards[i, :len(kept)] = torch.tensor(kept, dtype=torch.long)
