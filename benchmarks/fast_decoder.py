"""Micro-benchmark: tokens/s of the torch model's KV-cached decoding vs the fast decoder.

    PYTHONPATH=src python benchmarks/fast_decoder.py [--max-len 4096] [--profile]

One looping program (sum_to(n), n chosen to fill max_len) is decoded greedily by both
engines from the same universal model (full ALU, float64); every window of tokens is timed,
so the table shows how the speed changes with the position (torch's attention is O(n) per
token, the hull's O(log n)). Both engines' tokens are checked against the reference token
machine's trace. ``--profile`` adds where the fast decoder's time goes (cProfile, grouped).

The universal model is proven exact in float64 up to max_len 4096 (docs/UNIVERSAL.md), so
that is the longest trace measured here: the fast decoder refuses positions past max_len,
as the torch model does.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import torch

from wasmformer.compiler import compile_graph
from wasmformer.engine.fast import FastDecoder
from wasmformer.machine import Instance, TokenMachine, prompt_tokens, vocab
from wasmformer.model import build_model
from wasmformer.toolchain import program_bytes
from wasmformer.universal.interpreter import build_universal_graph
from wasmformer.universal.limits import Limits
from wasmformer.wasm import load_module

SUM_TO = """(module
  (func (export "sum_to") (param $n i32) (result i32) (local $acc i32)
    (loop $next
      local.get $acc  local.get $n  i32.add  local.set $acc
      local.get $n  i32.const 1  i32.sub  local.tee $n
      br_if $next)
    local.get $acc))"""


def workload(max_len: int) -> tuple[list[int], list[int]]:
    """(prompt + invocation header, the trace to generate) of the longest sum_to run that
    fits in max_len positions."""
    inst = Instance(load_module(program_bytes(SUM_TO).wasm))
    machine = TokenMachine(inst)
    prompt = prompt_tokens(inst, machine.fused, machine.func_index)
    n = 1
    while True:  # the trace grows by a fixed number of tokens per iteration
        probe = TokenMachine(Instance(load_module(program_bytes(SUM_TO).wasm)))
        trace = probe.invoke("sum_to", [n * 2])
        if len(prompt) + len(trace.tokens) > max_len:
            break
        n *= 2
    lo, hi = n, 2 * n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        probe = TokenMachine(Instance(load_module(program_bytes(SUM_TO).wasm)))
        if len(prompt) + len(probe.invoke("sum_to", [mid]).tokens) <= max_len:
            lo = mid
        else:
            hi = mid
    trace = machine.invoke("sum_to", [lo])
    head = trace.step_tokens(0)
    return prompt + head, trace.tokens[len(head):]


def decode_torch(model, prompt: list[int], count: int, marks: list[int]):
    """Greedy decoding as Transformer.generate does it, with a timestamp at each mark."""
    times, out = [], []
    with torch.no_grad():
        start = time.perf_counter()
        cache = model.new_cache()
        logits = model.run(torch.tensor([prompt]), 0, cache)[:, -1]
        times.append(time.perf_counter() - start)
        while len(out) < count:
            out.append(int(logits.argmax(-1)))
            if len(out) in marks:
                times.append(time.perf_counter() - start)
            if len(out) < count:
                logits = model.step(torch.tensor([out[-1]]), cache)
    return out, times


def decode_fast(model, prompt: list[int], count: int, marks: list[int]):
    start = time.perf_counter()
    decoder = FastDecoder(model)
    decoder.feed(prompt)
    times, out = [time.perf_counter() - start], []
    while len(out) < count:
        out.append(decoder.next())
        if len(out) in marks:
            times.append(time.perf_counter() - start)
    assert decoder.scans == 0, "a hull could not certify a query"
    return out, times


def table(name: str, prompt_len: int, marks: list[int], times: list[float]) -> None:
    print(f"\n{name}: prompt {prompt_len} tokens in {times[0]:.2f} s (prefill)")
    print(f"{'positions':>16} {'tokens':>7} {'seconds':>8} {'tokens/s':>9}")
    previous = 0
    for mark, t0, t1 in zip(marks, times, times[1:], strict=False):
        span = f"{prompt_len + previous}..{prompt_len + mark - 1}"
        print(f"{span:>16} {mark - previous:>7} {t1 - t0:>8.2f} {(mark - previous) / (t1 - t0):>9.1f}")
        previous = mark
    total = times[-1] - times[0]
    print(f"{'all':>16} {marks[-1]:>7} {total:>8.2f} {marks[-1] / total:>9.1f}")


def profile_fast(model, prompt: list[int], count: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    decode_fast(model, prompt, count, [count])
    profiler.disable()
    stats = pstats.Stats(profiler)
    groups: dict[str, float] = {}
    for (file, _, func), (_, _, tottime, _, _) in stats.stats.items():
        if "hull.py" in file:
            key = f"hull: {func}"
        elif "scipy" in file:
            key = "scipy sparse (python side)"
        elif "fast.py" in file:
            key = f"fast.py: {func}"
        elif func.startswith("<method") or func.startswith("<built-in"):
            key = func
        else:
            key = "other python"
        groups[key] = groups.get(key, 0.0) + tottime
    total = sum(groups.values())
    print(f"\nfast decoder profile, prompt + {count} tokens ({total:.2f} s under cProfile; "
          f"self time per group):")
    for key, t in sorted(groups.items(), key=lambda kv: -kv[1])[:14]:
        print(f"  {t / total:6.1%}  {t * 1e6 / (len(prompt) + count):8.1f} us/token  {key}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-len", type=int, default=4096)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--skip-torch", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    prompt, want = workload(args.max_len)
    print(f"sum_to: prompt + header {len(prompt)} tokens, trace {len(want)} tokens "
          f"(max_len {args.max_len}); one thread")
    start = time.perf_counter()
    graph = build_universal_graph(Limits(max_len=args.max_len))[0]
    model = build_model(compile_graph(graph), torch.float64)
    print(f"model built in {time.perf_counter() - start:.1f} s: {model.info['numerics']['summary']}")
    marks = list(range(args.window, len(want), args.window)) + [len(want)]
    got, times = decode_fast(model, prompt, len(want), marks)
    assert got == want, "fast decoder: not the reference trace"
    table("fast decoder (hull caches)", len(prompt), marks, times)
    if not args.skip_torch:
        got, times = decode_torch(model, prompt, len(want), marks)
        assert got == want, "torch: not the reference trace"
        table("torch (Transformer.step, KV cache)", len(prompt), marks, times)
    if args.profile:
        profile_fast(model, prompt, len(want))
    print(f"\nHALT last: {vocab.describe(want[-1])}")


if __name__ == "__main__":
    main()
