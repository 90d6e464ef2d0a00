"""The hull against the plain scan, on the same compiled loop: tokens/s against position.

    PYTHONPATH=src python benchmarks/hull_vs_scan.py [--positions 32768]

sum_to(n) (``wasmformer.scaling.workload``, n the largest that fits the positions) decoded
greedily twice by the fast decoder on the same model: once with its convex-hull caches
(O(log n) per lookup), once with every hull switched off, so each of the 64 lookup heads
answers by the model's own average-hard attention over every cached key (O(n) per lookup).
Both must give the token machine's trace. Per window of positions: CPU tokens/s of each
and their ratio, which the O(n / log n) argument predicts to grow about linearly with n.
"""

from __future__ import annotations

import argparse

from wasmformer.scaling import decode_windows, workload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=2**15)
    args = parser.parse_args()
    prompt, trace = workload(args.positions)
    marks, mark = [], 64
    while mark < len(trace):
        marks.append(mark)
        mark *= 2
    marks.append(len(trace))
    rates = {}
    for engine in ("fast", "fast-scan"):
        _, times = decode_windows(engine, prompt, trace, marks)
        rates[engine] = [(b - a) / (t1 - t0) for a, b, t0, t1 in
                         zip([0] + marks, marks, [0.0] + times, times, strict=False)]
    print(f"prompt + header {len(prompt):,} tokens, trace {len(trace):,} tokens")
    print("| positions | hull tokens/s | scan tokens/s | hull / scan |")
    print("|---|---:|---:|---:|")
    for i, b in enumerate(marks):
        a = 0 if i == 0 else marks[i - 1]
        hull, scan = rates["fast"][i], rates["fast-scan"][i]
        print(f"| {len(prompt) + a:,}..{len(prompt) + b - 1:,} | {hull:,.0f} | {scan:,.0f} | "
              f"{hull / scan:.1f}x |")


if __name__ == "__main__":
    main()
