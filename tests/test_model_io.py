"""Model files: a saved model loads bit-identical; a tampered, foreign or mismatched file is
refused with one ModelFileError (docs/ERRORS.md)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from wasmformer.errors import ModelFileError
from wasmformer.model import ModelConfig, Transformer, load_model, save_model
from wasmformer.model.io import VERSION


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Transformer, Path]:
    torch.manual_seed(0)
    model = Transformer(ModelConfig(12, 16, 8, 1, 2, 4, 4, 8))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    model.info = {"card": {"params": 1234}}
    path = tmp_path / "m.safetensors"
    save_model(model, path)
    return model, path


def _rewrite_metadata(path: Path, edit) -> None:
    """Save the same tensors again with the wasmformer metadata changed by ``edit``."""
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["wasmformer"])
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    edit(meta)
    save_file(tensors, str(path), metadata={"wasmformer": json.dumps(meta)})


def test_round_trip_is_bit_identical(saved) -> None:
    model, path = saved
    loaded = load_model(path)
    assert loaded.config == model.config and loaded.info == model.info
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(),
                                 strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("where", [0, -1])  # the first and the last byte of the weights
def test_one_changed_weight_byte_is_refused(saved, where: int) -> None:
    _, path = saved
    data = bytearray(path.read_bytes())
    header = struct.unpack("<Q", data[:8])[0]
    data[8 + header if where == 0 else len(data) - 1] ^= 0x01
    path.write_bytes(data)
    with pytest.raises(ModelFileError, match="do not match the file's checksum"):
        load_model(path)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.update(version=1), f"model file format v1, this wasmformer reads v{VERSION}"),
    (lambda m: m.update(protocol=99), "token protocol v99"),
    (lambda m: m.update(format="other"), "not a wasmformer-model file"),
    (lambda m: m["config"].update(d_ff=9), "do not match the file's checksum"),
    (lambda m: m.pop("sha256"), "do not match the file's checksum"),
])
def test_edited_metadata_is_refused(saved, edit, message: str) -> None:
    _, path = saved
    _rewrite_metadata(path, edit)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_files_that_are_not_models_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for path, message in [(foreign, "not a wasmformer-model file"),
                          (text, "not a wasmformer-model file"),
                          (tmp_path / "missing.safetensors", "no such model file"),
                          (tmp_path, "not a model file")]:
        with pytest.raises(ModelFileError, match=message):
            load_model(path)
