"""The differential fuzzer with the fast engine in the loop (scripts/fuzz.py --transformer):
a short fixed-seed slice of exec cases whose traced calls also run on the fast engine (the
transformer), token for token against the reference token machine, and a check that the
harness sees a fast engine that answers wrongly."""

from __future__ import annotations

import dataclasses
import io
import random

import pytest
import wasmtime
from rich.console import Console
from test_fuzz_slice import COUNTER, fuzz

from wasmformer.engine.session import Session

CASES = 3  # seed 7: about 40 s on one core, the model's load (from the disk cache) included


@pytest.fixture
def small_streams(monkeypatch):
    """Streams of at most 2^14 positions: a few seconds per case."""
    monkeypatch.setattr(fuzz.FAST, "max_positions", 1 << 14)


def test_fast_engine_slice_agrees_token_for_token(small_streams):
    log = io.StringIO()
    totals = fuzz.fuzz(seed=7, seconds=600, generators=["exec"], out=None,
                       console=Console(file=log, width=200), count=CASES, fast=True)
    assert totals.cases["exec"] == CASES
    assert not totals.mismatches, log.getvalue()
    # not vacuous: calls were decoded by the transformer and compared
    assert totals.fast["calls compared"] >= 3 and totals.fast["tokens compared"] >= 100, totals.fast
    assert not fuzz.FAST.enabled  # the option ends with the run


def _check_fast() -> list:
    fuzz.FAST.enabled = True
    try:
        outcome = fuzz.check_exec(random.Random(0), bytes(wasmtime.wat2wasm(COUNTER)))
    finally:
        fuzz.FAST.enabled = False
    assert outcome.fast["calls compared"] > 0
    return outcome.mismatches


def test_fast_harness_catches_a_wrong_token(small_streams, monkeypatch):
    assert _check_fast() == []
    real = Session.invoke

    def one_token_off(self, name, args=(), **kwargs):
        ran = real(self, name, args, **kwargs)
        tokens = list(ran.tokens)
        tokens[-2] = (tokens[-2] + 1) % 256  # a byte of the result (or the trap's payload)
        return dataclasses.replace(ran, tokens=tokens)

    monkeypatch.setattr(Session, "invoke", one_token_off)
    assert {m.kind for m in _check_fast() if not m.explained} == {"fast tokens"}


DEEP = """
(module
  (func $down (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0))
      (then (i32.const 0))
      (else (i32.add (i32.const 1) (call $down (i32.sub (local.get 0) (i32.const 1)))))))
  (func (export "deep") (result i32) (call $down (i32.const 130))))
"""


def test_fast_engine_call_depth_limit_is_explained_only_there(small_streams):
    """130 frames: the reference machine returns 130; the model traps past its 127 frames,
    saying so. The harness explains that difference (the streams agree up to the trap and
    the token machine's next CALL enters frame 128), and nothing else."""
    fuzz.FAST.enabled = True
    try:
        outcome = fuzz.check_exec(random.Random(0), bytes(wasmtime.wat2wasm(DEEP)))
    finally:
        fuzz.FAST.enabled = False
    assert outcome.calls == 1 + fuzz.EXEC_CALLS and outcome.trail[0]["wasmtime"] == [130]
    assert [(m.kind, m.explained) for m in outcome.mismatches] == \
        [("fast tokens", fuzz.DEPTH_EXPLANATION)] * outcome.calls  # every call, and nothing else


def test_fast_engine_call_depth_limit_explains_nothing_shallower(small_streams, monkeypatch):
    """The same trap with the token machine's CALL one frame shallower is a mismatch."""
    monkeypatch.setattr(fuzz, "call_depth", lambda tokens, at: 127)
    fuzz.FAST.enabled = True
    try:
        outcome = fuzz.check_exec(random.Random(0), bytes(wasmtime.wat2wasm(DEEP)))
    finally:
        fuzz.FAST.enabled = False
    assert outcome.mismatches and not any(m.explained for m in outcome.mismatches)
