"""A short fixed-seed slice of the differential fuzzer (scripts/fuzz.py), run in CI.

Each generator runs a fixed number of cases, so the slice is the same on every
machine; it must find no unexplained mismatch. The harness itself is checked
too: a wasmformer that answers wrongly must be caught.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import random
import sys
from pathlib import Path

import pytest
import wasmtime
from rich.console import Console

from wasmformer.machine.vocab import STDERR, STDOUT

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "fuzz.py"


def _load_fuzz():
    """scripts/fuzz.py as a module (shared with tests/regressions/test_regressions.py)."""
    name = "wasmformer_fuzz"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        assert spec is not None and spec.loader is not None
        sys.modules[name] = importlib.util.module_from_spec(spec)  # dataclasses need it there
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


fuzz = _load_fuzz()

# (generator, cases): about 30 s in all on one core (exec replays every call's token trace).
SLICE = [("smith", 300), ("mutate", 500), ("exec", 150)]


@pytest.mark.parametrize(("generator", "cases"), SLICE)
def test_fixed_seed_slice_finds_no_unexplained_mismatch(generator: str, cases: int):
    log = io.StringIO()
    totals = fuzz.fuzz(seed=7, seconds=600, generators=[generator], out=None,
                       console=Console(file=log, width=200), count=cases)
    assert totals.cases[generator] == cases
    assert not totals.mismatches, log.getvalue()
    assert totals.modules >= cases * 0.9  # smith rarely gives up on a seed
    if generator == "exec":
        assert totals.calls >= cases * 3
        assert totals.instructions >= 2_000
        assert totals.endings["call returned"] > 0 and len(totals.endings) >= 3  # traps of several kinds
    else:
        assert totals.endings["verdict: ok"] > 0  # the front end accepted some
    if generator == "mutate":
        assert totals.endings["verdict: malformed"] > 0 and totals.endings["verdict: invalid"] > 0


def test_slice_is_deterministic():
    first = fuzz.run_case(11, "exec", 3)
    again = fuzz.run_case(11, "exec", 3)
    assert first.wasm == again.wasm and first.trail == again.trail


# --- the harness can see a bug: wrong answers from wasmformer are reported ---

COUNTER = """
(module
  (memory (export "mem") 1 2)
  (global $g (export "g") (mut i32) (i32.const 0))
  (func (export "bump") (param i32) (result i32)
    (global.set $g (i32.add (global.get $g) (local.get 0)))
    (i32.store (i32.const 8) (global.get $g))
    (i32.div_s (i32.const 100) (local.get 0))))
"""


def _check() -> list:
    outcome = fuzz.check_exec(random.Random(0), bytes(wasmtime.wat2wasm(COUNTER)))
    return outcome.mismatches


def test_harness_agrees_on_a_correct_module():
    assert _check() == []


def test_harness_catches_a_wrong_result(monkeypatch):
    real = fuzz.Ours.call

    def off_by_one(self, f, args):
        results, trap = real(self, f, args)
        return (None, trap) if results is None else ([r + 1 for r in results], trap)

    monkeypatch.setattr(fuzz.Ours, "call", off_by_one)
    assert {m.kind for m in _check()} >= {"result"}


def test_harness_catches_a_wrong_count(monkeypatch):
    monkeypatch.setattr(fuzz.Ours, "instructions", property(lambda self: self.instance.instructions * 2))
    assert "count" in {m.kind for m in _check()}


def test_harness_replays_the_tokens_of_every_call(monkeypatch):
    real = fuzz.TokenMachine.invoke

    def one_byte_off(self, name, args=(), **kwargs):
        trace = real(self, name, args, **kwargs)
        at = next(i for i in range(len(trace.tokens) - 1, -1, -1) if trace.tokens[i] < STDOUT)
        trace.tokens[at] = (trace.tokens[at] + 1) % 256  # the last value byte: a result or a store
        return trace

    assert "tokens" not in {m.kind for m in _check()}
    monkeypatch.setattr(fuzz.TokenMachine, "invoke", one_byte_off)
    assert "tokens" in {m.kind for m in _check()}


def test_harness_catches_wrong_state(monkeypatch):
    real = fuzz.Ours.state

    def forgetful(self, names):
        return {name: 0 if name == "g" else value for name, value in real(self, names).items()}

    monkeypatch.setattr(fuzz.Ours, "state", forgetful)
    assert "state" in {m.kind for m in _check()}


def test_harness_catches_a_wrong_trap(monkeypatch):
    real = fuzz.Ours.call

    def never_traps(self, f, args):
        results, trap = real(self, f, args)
        return ([0] if trap else results), None

    monkeypatch.setattr(fuzz.Ours, "call", never_traps)
    assert "trap" in {m.kind for m in fuzz.check_exec(random.Random(0), bytes(wasmtime.wat2wasm(
        '(module (func (export "f") (param i32) (result i32) (i32.div_u (i32.const 1) (i32.const 0))))'
    ))).mismatches}


def test_verdicts_agree_and_disagreements_are_reported(monkeypatch):
    valid = bytes(wasmtime.wat2wasm("(module (func (export \"f\") (result i32) i32.const 1))"))
    truncated = valid[:-3]
    assert fuzz.compare_verdicts(valid) == []
    assert fuzz.compare_verdicts(truncated) == []
    monkeypatch.setattr(fuzz, "load_module", lambda data: None)  # a front end that accepts anything
    assert [m.kind for m in fuzz.compare_verdicts(truncated)] == ["we accept"]


def test_a_crash_in_the_front_end_is_reported(monkeypatch):
    def broken(data):
        raise IndexError("boom")

    monkeypatch.setattr(fuzz, "load_module", broken)
    assert [m.kind for m in fuzz.compare_verdicts(b"\0asm\1\0\0\0")] == ["crash"]


# --- csmith: random C programs (csmith is an optional system tool, absent on CI) ---

CSMITH_CASES = 3  # a few seconds each: compile with zig cc, run in wasmtime and wasmformer


def test_csmith_slice_finds_no_unexplained_mismatch():
    if fuzz.find_csmith() is None:
        pytest.skip(fuzz.CSMITH_INSTALL)
    log = io.StringIO()
    totals = fuzz.fuzz(seed=7, seconds=600, generators=["csmith"], out=None,
                       console=Console(file=log, width=200), count=CSMITH_CASES)
    assert totals.cases["csmith"] == CSMITH_CASES
    assert not totals.mismatches, log.getvalue()
    assert totals.instructions > 0 and totals.endings["program exited 0"] > 0


# A C program in csmith's manner (no csmith needed): state mixed into a printed checksum.
CHECKSUM_C = r"""
#include <stdio.h>
#include <stdint.h>
static uint32_t crc = 0xFFFFFFFFu;
static void mix(uint64_t v) { for (int i = 0; i < 8; i++) { crc ^= (uint8_t)(v >> (8 * i));
    for (int b = 0; b < 8; b++) crc = (crc >> 1) ^ (0xEDB88320u & -(crc & 1)); } }
int main(void) {
    int64_t g = 0x1234;
    for (int i = 0; i < 50; i++) { g = g * 6364136223846793005LL + i; mix(g); mix(g % 7 - 3); }
    printf("checksum = %X\n", crc ^ 0xFFFFFFFFu);
    return 0;
}
"""


def _check_c(source: str = CHECKSUM_C) -> list:
    return fuzz.check_csmith(random.Random(0), source).mismatches


def test_c_harness_agrees_on_a_correct_program():
    outcome = fuzz.check_csmith(random.Random(0), CHECKSUM_C)
    assert outcome.mismatches == [] and outcome.instructions > 1000
    assert outcome.endings["program exited 0"] == 1 and outcome.endings["token trace replayed"] == 1


def test_c_harness_catches_wrong_output_and_count(monkeypatch):
    real = fuzz.wasmformer.run

    def garbled(wasm, **kwargs):
        result = real(wasm, **kwargs)
        return dataclasses.replace(result, stdout=result.stdout[:-2] + b"0\n", instructions=result.instructions + 1)

    monkeypatch.setattr(fuzz.wasmformer, "run", garbled)
    assert {m.kind for m in _check_c()} == {"stdout", "count"}


def _garble_trace(monkeypatch, edit) -> None:
    """wasmformer.trace with its tokens edited by ``edit``."""
    real = fuzz.wasmformer.trace

    def garbled(wasm, **kwargs):
        result = real(wasm, **kwargs)
        return dataclasses.replace(result, trace=dataclasses.replace(result.trace, tokens=edit(result.trace.tokens)))

    monkeypatch.setattr(fuzz.wasmformer, "trace", garbled)


def test_c_harness_reads_the_output_from_the_tokens(monkeypatch):
    def drop_last_output_byte(tokens):
        last = max(i for i, t in enumerate(tokens) if STDOUT <= t < STDERR)
        return tokens[:last] + tokens[last + 1:]

    _garble_trace(monkeypatch, drop_last_output_byte)
    # (the replayer reads a host call's output tokens, it cannot predict them: only the
    # detokenized stdout shows the loss)
    assert {m.kind for m in _check_c()} == {"trace stdout"}


def test_c_harness_replays_every_token(monkeypatch):
    def change_a_value_byte(tokens):
        at = len(tokens) // 2 + next(i for i, t in enumerate(tokens[len(tokens) // 2:]) if t < STDOUT)
        return tokens[:at] + [(tokens[at] + 1) % 256] + tokens[at + 1:]

    _garble_trace(monkeypatch, change_a_value_byte)
    assert [m.kind for m in _check_c()] == ["replay"]


def test_c_harness_catches_a_wrong_trap(monkeypatch):
    real = fuzz.wasmformer.run
    monkeypatch.setattr(fuzz.wasmformer, "run",
                        lambda wasm, **kw: dataclasses.replace(real(wasm, **kw), exit_code=134, trap="unreachable"))
    assert "trap" in {m.kind for m in _check_c()}


def test_c_harness_catches_a_native_disagreement():
    if fuzz.native_cc() is None:
        pytest.skip("no gcc -m32 on this machine (Debian: apt-get install gcc-multilib)")
    # sizeof(long) is 4 in wasm32 and with gcc -m32 alike: the native check agrees ...
    assert _check_c(CHECKSUM_C.replace("0x1234", "0x1234 + sizeof(long)")) == []
    # ... and a program whose output depends on the compiler (zig's clang or gcc) is caught.
    platform = '#include <stdio.h>\nint main(void) { printf("%s\\n", __VERSION__); return 0; }\n'
    assert [m.kind for m in _check_c(platform)] == ["native"]
