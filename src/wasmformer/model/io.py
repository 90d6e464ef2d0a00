"""Save and load a built model: one safetensors file holding the weights, with the JSON
config (format, version, ModelConfig, model card, numerics report) in its metadata.

Weights are stored in the model's own dtype, so a loaded model is bit-identical.
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

from .transformer import ModelConfig, Transformer

FORMAT = "wasmformer-model"
VERSION = 1


def save_model(model: Transformer, path: str | Path) -> None:
    config = {"format": FORMAT, "version": VERSION,
              "config": {f: getattr(model.config, f) for f in ModelConfig.__dataclass_fields__},
              "info": model.info}
    tensors = {name: t.contiguous() for name, t in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"wasmformer": json.dumps(config)})


def load_model(path: str | Path) -> Transformer:
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads((f.metadata() or {}).get("wasmformer", "{}"))
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ValueError(f"{path}: not a {FORMAT} v{VERSION} file "
                             f"(found {meta.get('format')!r} v{meta.get('version')!r})")
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    model = Transformer(ModelConfig(**meta["config"]))
    model.load_state_dict(tensors, strict=True)
    model.info = meta["info"]
    return model
