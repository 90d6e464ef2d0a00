"""Run every minimised fuzzer finding in this folder (see README.md for the format)."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest
import wasmtime

import wasmformer
from wasmformer.errors import InvalidModule, MalformedModule
from wasmformer.wasm import load_module

HERE = Path(__file__).resolve().parent
SCRIPT = HERE.parent.parent / "scripts" / "fuzz.py"
CASES = sorted(p.stem for p in HERE.glob("*.json"))


def _fuzz():
    name = "wasmformer_fuzz"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


def _input(name: str) -> bytes:
    wat = HERE / f"{name}.wat"
    if wat.exists():
        return bytes(wasmtime.wat2wasm(wat.read_text()))
    return (HERE / f"{name}.wasm").read_bytes()


def _verdict(wasm: bytes) -> str:
    try:
        load_module(wasm)
    except MalformedModule:
        return "malformed"
    except InvalidModule:
        return "invalid"
    return "valid"


def test_every_case_has_an_input():
    assert CASES, "no regression cases found"
    for name in CASES:
        assert (HERE / f"{name}.wat").exists() or (HERE / f"{name}.wasm").exists(), name


@pytest.mark.parametrize("name", CASES)
def test_regression(name: str):
    spec = json.loads((HERE / f"{name}.json").read_text())
    wasm = _input(name)
    if "frontend" in spec:
        assert _verdict(wasm) == spec["frontend"]
    if "calls" in spec or "load_instructions" in spec:
        _check_calls(wasm, spec)
    if "differential" in spec:
        _check_differential(wasm, spec["differential"])


def _check_differential(wasm: bytes, spec: dict) -> None:
    """The fuzzer's own comparison: nothing unexplained, and exactly the expected
    explained kinds (so a fixed wasmtime/wasm-tools shows up here)."""
    fuzz = _fuzz()
    if spec["generator"] == "exec":
        outcome = fuzz.check_exec(random.Random(0), wasm)
        assert outcome.calls > 0
        mismatches = outcome.mismatches
    else:
        mismatches = fuzz.compare_verdicts(wasm)
    assert [m for m in mismatches if not m.explained] == []
    assert sorted({m.kind for m in mismatches}) == sorted(spec["explained"])


def _check_calls(wasm: bytes, spec: dict) -> None:
    instance = wasmformer.load(wasm)
    if "load_instructions" in spec:
        assert instance.instructions == spec["load_instructions"]
    for call in spec.get("calls", []):
        before = instance.instructions
        if "trap" in call:
            with pytest.raises(wasmformer.Trap) as caught:
                instance.invoke(call["invoke"], call["args"])
            assert caught.value.reason.startswith(call["trap"])
        else:
            assert instance.invoke(call["invoke"], call["args"]) == call["results"], call
        if "instructions" in call:
            assert instance.instructions - before == call["instructions"], call
