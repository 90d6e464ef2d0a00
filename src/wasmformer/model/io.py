"""Save and load a built model: one safetensors file holding the weights, with the JSON
config in its metadata: format and file version, the token-protocol version the model
speaks, ModelConfig, model card, numerics report, and a sha256 checksum of all of that
and the weights.

Weights are stored in the model's own dtype, so a loaded model is bit-identical. A file
that is not a wasmformer model, was written by another format or protocol version, or
whose weights or config do not match the checksum (corrupted, edited) is refused with a
``ModelFileError``: an engine must never run weights it cannot vouch for.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import ModelFileError
from ..machine.prompt import VERSION as PROTOCOL_VERSION
from .transformer import ModelConfig, Transformer

FORMAT = "wasmformer-model"
VERSION = 5  # of the file format; 2 added the protocol version and the checksum, 3 the
# config's score_dtype (and average-hard attention), 4 the FFN units' gate guards, 5 the
# value rows' integer ranges


def checksum(described: dict, tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of the config and model card (canonical JSON) and of every tensor's name,
    dtype, shape and bytes, in name order."""
    h = hashlib.sha256(json.dumps(described, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"\n{name} {str(t.dtype)} {tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def save_model(model: Transformer, path: str | Path) -> None:
    described = {"config": {f: getattr(model.config, f) for f in ModelConfig.__dataclass_fields__},
                 "info": model.info}
    described = json.loads(json.dumps(described))  # as load will see it (str keys, lists)
    tensors = {name: t.contiguous() for name, t in model.state_dict().items()}
    meta = {"format": FORMAT, "version": VERSION, "protocol": PROTOCOL_VERSION, **described,
            "sha256": checksum(described, tensors)}
    save_file(tensors, str(path), metadata={"wasmformer": json.dumps(meta)})


def load_model(path: str | Path) -> Transformer:
    meta, tensors = _read(Path(path))
    described = {"config": meta.get("config"), "info": meta.get("info")}
    if meta.get("sha256") != checksum(described, tensors):
        raise ModelFileError(f"{path}: the weights do not match the file's checksum "
                             "(the file is corrupted or was modified)")
    with torch.device("meta"):  # no random initialisation of weights about to be replaced
        model = Transformer(ModelConfig(**meta["config"]))
    model.load_state_dict(tensors, strict=True, assign=True)
    model.info = meta["info"]
    return model


def _read(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """The file's wasmformer metadata (format and versions checked) and its tensors."""
    if not path.exists():
        raise ModelFileError(f"no such model file: {path}")
    if not path.is_file():
        raise ModelFileError(f"not a model file: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = _metadata(path, (f.metadata() or {}).get("wasmformer"))
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except SafetensorError as exc:
        raise ModelFileError(f"{path}: not a {FORMAT} file (unreadable safetensors: "
                             f"{exc})") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    return meta, tensors


def _metadata(path: Path, text: str | None) -> dict:
    try:
        meta = json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a {FORMAT} file (no wasmformer metadata)")
    if meta.get("version") != VERSION:
        raise ModelFileError(f"{path}: model file format v{meta.get('version')}, this "
                             f"wasmformer reads v{VERSION}: rebuild the model")
    if meta.get("protocol") != PROTOCOL_VERSION:
        raise ModelFileError(f"{path}: model built for token protocol v{meta.get('protocol')}, "
                             f"this wasmformer speaks v{PROTOCOL_VERSION}: rebuild the model")
    return meta
