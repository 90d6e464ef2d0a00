"""The torch model built from a compiled graph.

    compiled = compile_graph(graph)                 # wasmformer.compiler
    model = build_model(compiled, torch.float32)    # refuses where float32 is not exact
    logits = model(tokens)                          # (B, T) -> (B, T, vocab), causal
    cache = model.new_cache(); model.step(t, cache) # incremental decoding, same numbers
    save_model(model, "m.safetensors"); load_model("m.safetensors")

Files: ``transformer.py`` (the nn.Module, nanoGPT-style), ``build.py`` (weights from a
CompiledModel), ``numerics.py`` (the exactness guard and its stated ranges), ``io.py``.
"""

from .build import build_model, config_of
from .io import load_model, save_model
from .numerics import NumericsError, NumericsReport, PositionLimitError, analyse, check_numerics
from .transformer import KVCache, ModelConfig, Transformer

__all__ = [
    "KVCache", "ModelConfig", "NumericsError", "NumericsReport", "PositionLimitError",
    "Transformer", "analyse", "build_model", "check_numerics", "config_of", "load_model",
    "save_model",
]
