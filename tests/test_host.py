"""Host calls (WASI) through the transformer engines (engine/host.py, universal/host.py).

- the trace of a host call: output tokens, ``MEM`` runs, ``JUMP`` to the call's first
  ``result`` record, the results as those records' spans; the replay oracle reads it back;
- the universal model after a splice: with the host calls' tokens forced, every token it
  predicts is the token machine's (one causal forward), and at a host call's first token
  it writes ``CALL``; without ``universal/host.py`` this program's spliced tokens wrote
  spurious local and memory keys (3 tokens differed, measured);
- the torch and fast engines execute it: the host reads its arguments and memory from the
  model's lookup rows; tokens equal the token machine's, output and exit code equal, the
  output streamed as it comes.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from token_replay import replayer_for  # noqa: E402

import wasmformer  # noqa: E402
from wasmformer.engine import BUCKETS, Session, universal_model  # noqa: E402
from wasmformer.machine import Instance, TokenMachine, prompt_tokens, vocab  # noqa: E402
from wasmformer.machine.tokens import Trace  # noqa: E402
from wasmformer.machine.wasi import WasiHost  # noqa: E402
from wasmformer.toolchain import program_bytes  # noqa: E402
from wasmformer.wasm import load_module  # noqa: E402

# fd_write to stdout with several iovecs (the first empty: WASI writes the first non-empty
# one), its result and the nwritten it stored used afterwards, a branch over writes that a
# drifting X would otherwise replay, more arithmetic on memory and the stack, a second
# fd_write of bytes computed from the first's nwritten, then proc_exit of a value that
# depends on all of it.
WRITES = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory 1)
  (data (i32.const 16) "Hello, host!\\n")
  (func (export "_start") (local $r i32) (local $n i32) (local $m i32)
    (i32.store (i32.const 64) (i32.const 16))
    (i32.store (i32.const 72) (i32.const 16))
    (i32.store (i32.const 76) (i32.const 13))
    (i32.store (i32.const 84) (i32.const 2))
    (local.set $r (call $fd_write (i32.const 1) (i32.const 64) (i32.const 2) (i32.const 100)))
    (block $skip
      (br_if $skip (i32.eqz (local.get $r)))
      (local.set $n (i32.const 99))
      (local.set $m (i32.const 98))
      (i32.store (i32.const 200) (i32.const 97))
      (local.set $n (i32.const 96))
      (local.set $m (i32.const 95)))
    (local.set $n (i32.load (i32.const 100)))
    (i32.store8 (i32.const 40) (i32.add (i32.const 48) (local.get $n)))
    (i32.store8 (i32.const 41) (i32.const 10))
    (i32.store (i32.const 80) (i32.const 40))
    (i32.store (i32.const 76) (i32.const 0))
    (i32.eqz (call $fd_write (i32.const 1) (i32.const 64) (i32.const 3) (i32.const 100)))
    (i32.load (i32.const 100))
    i32.add
    (local.get $n)
    i32.add
    (i32.load8_u (i32.const 17))
    i32.add
    (i32.load (i32.const 200))
    i32.add
    (local.get $m)
    i32.add
    local.get $r
    i32.sub
    call $exit))"""
WRITES_OUT, WRITES_EXIT = b"Hello, host!\n=\n", 117

# A smaller one for the default run: one fd_write, its nwritten loaded, proc_exit.
SHORT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory 1)
  (data (i32.const 16) "hi\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 3))
    (call $exit (i32.add (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
                         (i32.mul (i32.load (i32.const 8)) (i32.const 10))))))"""

# A host call, then a loop that takes the stream past the first bucket (2,048 positions),
# then host calls from a function one frame deep: the view must read the larger model's
# lookups (each bucket's schedule puts them in other heads).
AFTER_A_MOVE = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory 1)
  (data (i32.const 16) "hi\\n")
  (func $say (param $c i32) (result i32)
    (i32.store8 (i32.const 17) (local.get $c))
    (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
  (func (export "_start") (local $i i32)
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 3))
    (drop (call $say (i32.const 105)))
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 300))))
    (drop (call $say (i32.add (i32.const 65) (i32.rem_u (local.get $i) (i32.const 26)))))
    (call $exit (i32.add (local.get $i) (i32.load (i32.const 8))))))"""

JUMP, MEM, CALL = vocab.tok("JUMP"), vocab.tok("MEM"), vocab.tok("CALL")


def instance(wat: str) -> tuple[Instance, WasiHost]:
    host = WasiHost()
    return Instance(load_module(program_bytes(wat).wasm), host=host), host


@functools.cache
def reference(wat: str) -> tuple[list[int], Trace, TokenMachine]:
    inst, host = instance(wat)
    tm = TokenMachine(inst, host)
    prompt = prompt_tokens(inst, tm.fused, tm.func_index)
    return prompt, tm.invoke("_start"), tm


def host_steps(trace: Trace, tm: TokenMachine) -> list[int]:
    imported = tm.fused.program.module.num_imported_funcs
    return [i for i, pc in enumerate(trace.pcs)
            if pc >= 0 and tm.fused.code[pc].op == "call" and tm.fused.code[pc].args[0] < imported]


def test_host_call_trace_format() -> None:
    _, trace, tm = reference(WRITES)
    assert trace.outcome == "exit" and trace.exit_code == WRITES_EXIT
    steps = host_steps(trace, tm)
    assert len(steps) == 3
    for i in steps[:2]:  # the fd_writes: output, one MEM run (nwritten), JUMP r, the errno
        toks, pc = trace.step_tokens(i), trace.pcs[i]
        assert toks[-8:] == [JUMP, *vocab.le(pc + 1, 3), 0, 0, 0, 0]
        assert tm.fused.code[pc + 1].op == "result"
        at = toks.index(MEM)
        assert all(vocab.output_byte(t) is not None for t in toks[:at])
        assert toks[at:-8] == [MEM, 100, 0, 0, 0, 1, 0, [13, 2][steps.index(i)]]
    assert trace.step_tokens(steps[2])[0] == vocab.tok("EXIT")
    replay = replayer_for(tm)
    assert replay.run(trace.tokens) == "exit"


@pytest.mark.slow
def test_model_predicts_every_token_after_a_splice() -> None:
    prompt, trace, tm = reference(WRITES)
    tokens = prompt + trace.tokens
    forced: set[int] = set()  # positions whose next token the engine writes
    firsts = []
    for i in host_steps(trace, tm):
        start = len(prompt) + trace.ends[i - 1]
        firsts.append(start - 1)
        forced.update(range(start - 1, len(prompt) + trace.ends[i] - 1))
    with torch.no_grad():
        best = universal_model(BUCKETS[0])(torch.tensor([tokens]))[0].argmax(-1).tolist()
    assert [best[p] for p in firsts] == [CALL] * len(firsts)
    checked = 0
    for p in range(len(prompt) + len(trace.step_tokens(0)) - 1, len(tokens) - 1):
        if p not in forced:
            assert best[p] == tokens[p + 1], f"trace token {p + 1 - len(prompt)}"
            checked += 1
    assert checked > 100


def run_engine(wat: str, engine: str) -> None:
    _, want, _ = reference(wat)
    inst, host = instance(wat)
    streamed = bytearray()
    got = Session(inst, engine=engine).invoke("_start",
                                             on_output=lambda fd, data: streamed.extend(data))
    assert got.tokens == want.tokens
    assert got.ending == "exit" and got.outcome.exit_code == want.exit_code
    out = bytes(byte for fd, byte in filter(None, map(vocab.output_byte, want.tokens))
                if fd == 1)
    assert got.outcome.stdout == bytes(streamed) == out
    assert bytes(host.stdout_bytes) == b""  # the host's output went into tokens, not past them


@pytest.mark.parametrize("engine", ["fast", "torch"])
def test_engine_executes_a_host_call(engine: str) -> None:
    run_engine(SHORT, engine)


def test_host_calls_after_the_stream_moves_to_a_larger_bucket(monkeypatch) -> None:
    from wasmformer.engine import models

    monkeypatch.setattr(models, "FAST_BUCKETS", BUCKETS)  # it starts in the smallest here
    prompt, want, _ = reference(AFTER_A_MOVE)
    assert len(prompt) < BUCKETS[0] < len(prompt) + len(want.tokens) <= BUCKETS[1]
    out = bytes(b for fd, b in filter(None, map(vocab.output_byte, want.tokens)) if fd == 1)
    assert out == b"hi\nhO\n" and want.exit_code == 303
    run_engine(AFTER_A_MOVE, "fast")


def test_run_with_host_calls_through_the_api() -> None:
    result = wasmformer.run(SHORT, engine="fast")
    assert (result.stdout, result.exit_code) == (b"hi\n", 30)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["fast", "torch"])
def test_engine_executes_writes_and_exit(engine: str) -> None:
    run_engine(WRITES, engine)
    result = wasmformer.run(WRITES, engine=engine)
    assert (result.stdout, result.exit_code) == (WRITES_OUT, WRITES_EXIT)
