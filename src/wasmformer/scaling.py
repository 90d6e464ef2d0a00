"""Speed against trace length for the transformer engines: one looping program, one long run.

``workload(positions)``: the prompt (+ invocation header) and the trace of ``sum_to(n)``
(a wat loop the universal graph covers), n the largest whose stream fits ``positions``.
``decode_windows(engine, prompt, trace, marks)``: decode it greedily with the engine's own
decoder (``engine.decoders``: the torch KV cache, or the fast decoder's hull caches) on the
model proven for the whole stream, timing every window of tokens; the tokens must be the
token machine's. Used by ``wasmformer bench`` (its scaling section) and
benchmarks/fast_decoder.py.

Time is the process's CPU time on one thread (``torch.set_num_threads(1)``): the machine
may be shared, and CPU time stands in for one free core.
"""

from __future__ import annotations

import time

SUM_TO = """(module
  (func (export "sum_to") (param $n i32) (result i32) (local $acc i32)
    (loop $next
      local.get $acc  local.get $n  i32.add  local.set $acc
      local.get $n  i32.const 1  i32.sub  local.tee $n
      br_if $next)
    local.get $acc))"""


def _sum_to_stream(n: int) -> tuple[list[int], list[int]]:
    """(prompt + invocation header, the trace after the header) of sum_to(n) on a fresh
    instance (the trace's first step is the header the engine writes)."""
    from .machine import Instance, TokenMachine, prompt_tokens
    from .toolchain import program_bytes
    from .wasm import load_module

    inst = Instance(load_module(program_bytes(SUM_TO).wasm))
    machine = TokenMachine(inst)
    prompt = prompt_tokens(inst, machine.fused, machine.func_index)
    trace = machine.invoke("sum_to", [n])
    header = trace.step_tokens(0)
    return prompt + header, trace.tokens[len(header):]


def workload(positions: int) -> tuple[list[int], list[int]]:
    """(prompt + invocation header, the trace to generate) of the longest sum_to run whose
    stream fits ``positions``."""
    def fits(n: int) -> bool:
        prompt, trace = _sum_to_stream(n)
        return len(prompt) + len(trace) <= positions

    lo = 1
    while fits(lo * 2):  # the trace grows by a fixed number of tokens per iteration
        lo *= 2
    hi = lo * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return _sum_to_stream(lo)


def decoder_for(engine: str, positions: int):
    """The engine's decoder (``engine.decoders``) on the smallest model proven for
    ``positions``, as the engine's session would pick it; "fast-scan" is the fast decoder
    with its hulls switched off (the same compiled loop, every lookup a scan)."""
    from .engine import bucket_for, fast_model, universal_model
    from .engine.decoders import FastDecoding, TorchDecoding
    from .engine.models import engine_buckets

    bucket = bucket_for(positions, engine_buckets(engine))
    if bucket is None:
        raise ValueError(f"{positions} positions: over the proven buckets")
    if engine in ("fast", "fast-scan"):
        # fast-scan: every lookup by the model's own attention over all keys
        return FastDecoding(universal_model(bucket), hulls=engine == "fast")
    return TorchDecoding(fast_model(bucket))


def decode_windows(engine: str, prompt: list[int], trace: list[int],
                   marks: list[int]) -> tuple[float, list[float]]:
    """Decode ``trace`` after ``prompt``; (prefill CPU seconds, CPU seconds at each mark:
    tokens generated so far). Raises AssertionError where a token differs from the trace."""
    import torch

    torch.set_num_threads(1)
    decoder = decoder_for(engine, len(prompt) + len(trace))
    if engine != "torch":  # load the compiled loops (numba's disk cache) before timing
        decoder_for(engine, 8).decode(prompt[:4], 2, frozenset())
    start = time.process_time()
    out = decoder.decode(prompt, 1, frozenset())
    prefill = time.process_time() - start
    times = []
    for mark in marks:
        if mark > len(out):
            out += decoder.decode(out[-1:], mark - len(out), frozenset())
        times.append(time.process_time() - start)
    assert out == trace[:len(out)], f"{engine}: not the token machine's trace"
    return prefill, times
