"""Micro-benchmark: tokens/s of the torch model's KV-cached decoding vs the fast decoder.

    PYTHONPATH=src python benchmarks/fast_decoder.py [--max-len 4096] [--profile]

One looping program (sum_to(n), n chosen to fill max_len) is decoded greedily by the
engines (the fast decoder's compiled loop, its numpy/Python form, torch) from the same universal model (full ALU, float64); every window of tokens is timed,
so the table shows how the speed changes with the position (torch's attention is O(n) per
token, the hull's O(log n)). Both engines' tokens are checked against the reference token
machine's trace. ``--profile`` adds where the fast decoder's time goes: for the compiled
loop, the share of the embedding and sparse products (timed alone) against the rest; for the
numpy/Python form, cProfile grouped. Needs numba (pinned in constraints.txt).

The universal model is proven exact in float64 up to max_len 4096 (docs/UNIVERSAL.md), so
that is the longest trace measured here: the fast decoder refuses positions past max_len,
as the torch model does.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

import numba
import numpy as np
import torch

from wasmformer.compiler import compile_graph
from wasmformer.engine import kernel
from wasmformer.engine.fast import FastDecoder
from wasmformer.machine import vocab
from wasmformer.model import build_model
from wasmformer.scaling import workload  # the sum_to program sized to max_len (shared with bench)
from wasmformer.universal.interpreter import build_universal_graph
from wasmformer.universal.limits import Limits

# The machine these run on may be shared: time is this process's CPU time (one thread), a
# fair stand-in for one free core; the wall time of each run is printed beside it.
clock = time.process_time


def decode_torch(model, prompt: list[int], count: int, marks: list[int]):
    """Greedy decoding as Transformer.generate does it, with a timestamp at each mark."""
    times, out = [], []
    with torch.no_grad():
        start = clock()
        cache = model.new_cache()
        logits = model.run(torch.tensor([prompt]), 0, cache)[:, -1]
        times.append(clock() - start)
        while len(out) < count:
            out.append(int(logits.argmax(-1)))
            if len(out) in marks:
                times.append(clock() - start)
            if len(out) < count:
                logits = model.step(torch.tensor([out[-1]]), cache)
    return out, times


def decode_fast(model, prompt: list[int], count: int, marks: list[int], compiled: bool):
    """The fast decoder (compiled loop or numpy/Python), generating window by window."""
    start = clock()
    decoder = FastDecoder(model, compiled=compiled)
    setup = clock() - start
    start = clock()
    decoder.feed(prompt)
    times = [clock() - start]
    out = [decoder.next()]
    for mark in marks:
        out += decoder.generate(mark - len(out), set())
        times.append(clock() - start)
    assert decoder.scans == 0, "a hull could not certify a query"
    return out, times, setup


def table(name: str, prompt_len: int, marks: list[int], times: list[float]) -> None:
    print(f"\n{name}: prompt {prompt_len} tokens in {times[0]:.2f} s (prefill)")
    print(f"{'positions':>16} {'tokens':>7} {'CPU s':>8} {'tokens/s':>9}")
    previous = 0
    for mark, t0, t1 in zip(marks, times, times[1:], strict=False):
        span = f"{prompt_len + previous}..{prompt_len + mark - 1}"
        print(f"{span:>16} {mark - previous:>7} {t1 - t0:>8.2f} {(mark - previous) / (t1 - t0):>9.1f}")
        previous = mark
    total = times[-1] - times[0]
    print(f"{'all':>16} {marks[-1]:>7} {total:>8.2f} {marks[-1] / total:>9.1f}")


def profile_python(model, prompt: list[int], count: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    decode_fast(model, prompt, count, [count], compiled=False)
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
    print(f"\nnumpy/Python fast decoder profile, prompt + {count} tokens ({total:.2f} s under "
          f"cProfile; self time per group):")
    for key, t in sorted(groups.items(), key=lambda kv: -kv[1])[:12]:
        print(f"  {t / total:6.1%}  {t * 1e6 / (len(prompt) + count):8.1f} us/token  {key}")


@numba.njit(cache=True)
def _products_only(tokens, wte, wpe, ptr, idx, dat, row0, nrows, layers, x, buf, logits):
    """The compiled loop's embedding and sparse products alone: the dense part of the
    per-token cost (no heads: their outputs stay zero, so the open gates are near the real
    run's, not equal)."""
    for t in range(tokens.shape[0]):
        for i in range(x.shape[0]):
            x[i] = wte[tokens[t], i] + wpe[i, 0] * t
        for li in range(layers.shape[0]):
            kernel._matvec(5 * li, ptr, idx, dat, row0, nrows, x, buf[0], False)
            kernel._matvec(5 * li + 1, ptr, idx, dat, row0, nrows, buf[1], x, True)
            kernel._matvec(5 * li + 2, ptr, idx, dat, row0, nrows, x, buf[2], False)
            for u in range(nrows[5 * li + 2]):  # the kernel's FFN: shut gates skip
                if buf[2, u] > 0.0:
                    h = buf[2, u] * kernel._row_dot(5 * li + 3, u, ptr, idx, dat, row0, x)
                    kernel._row_add(5 * li + 4, u, ptr, idx, dat, row0, h, x)
        kernel._matvec(5 * layers.shape[0], ptr, idx, dat, row0, nrows, x, logits, False)


def profile_compiled(model, tokens: list[int], seconds_per_token: float) -> None:
    decoder = FastDecoder(model, compiled=True)
    s = decoder.state
    array = np.array(tokens, dtype=np.int64)
    args = (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[24], s[25], s[26])
    _products_only(array[:2], *args)  # compile
    start = clock()
    _products_only(array, *args)
    products = (clock() - start) / len(tokens)
    nnz = len(s[4])
    print(f"\ncompiled fast decoder, per token: {seconds_per_token * 1e6:.1f} us in all; "
          f"embedding + sparse products ({nnz:,} non-zeros) {products * 1e6:.1f} us "
          f"({products / seconds_per_token:.0%}); heads (hull insert + query, value copy), "
          f"relu and argmax {(seconds_per_token - products) * 1e6:.1f} us")


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
          f"(max_len {args.max_len}); one thread, CPU time")
    start = time.perf_counter()
    graph = build_universal_graph(Limits(max_len=args.max_len))[0]
    model = build_model(compile_graph(graph), torch.float64)
    print(f"model built in {time.perf_counter() - start:.1f} s: {model.info['numerics']['summary']}")
    marks = list(range(args.window, len(want), args.window)) + [len(want)]
    warm = FastDecoder(model, compiled=True)  # compile the loops (cached on disk)
    warm.feed(prompt[:2])
    warm.next()
    warm.generate(2, set())
    rates = {}
    engines = [("fast decoder, compiled loop (numba)", True), ("fast decoder, numpy/Python", False)]
    for name, compiled in engines:
        wall = time.perf_counter()
        got, times, setup = decode_fast(model, prompt, len(want), marks, compiled)
        print(f"\n[{name}: wall time {time.perf_counter() - wall:.2f} s]", end="")
        assert got == want, f"{name}: not the reference trace"
        table(f"{name}; setup {setup:.2f} s", len(prompt), marks, times)
        rates[compiled] = (times[-1] - times[0]) / len(want)
    if not args.skip_torch:
        wall = time.perf_counter()
        got, times = decode_torch(model, prompt, len(want), marks)
        print(f"\n[torch: wall time {time.perf_counter() - wall:.2f} s]", end="")
        assert got == want, "torch: not the reference trace"
        table("torch (Transformer.step, KV cache)", len(prompt), marks, times)
    if args.profile:
        profile_compiled(model, prompt + want, rates[True])
        profile_python(model, prompt, len(want))
    print(f"\nHALT last: {vocab.describe(want[-1])}")


if __name__ == "__main__":
    main()
