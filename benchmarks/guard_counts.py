"""Units evaluated per token, per layer, by the fast decoder's gate guards on a program's stream.

    PYTHONPATH=src python benchmarks/guard_counts.py examples/hello.c [--names 12]

The stream is the fast engine's own run of the program (every position: prompt, headers,
trace). At each position and layer, a unit is *evaluated* unless one of its guards
(``FeedForward.guards``) is 0 there: what the compiled loop computes the gate row of.
The count is taken on the numpy/Python form of the decoder, layer by layer; it also checks
the guards' claim (a skipped unit's gate is <= 0), and counts the slot-clearing units
evaluated where their slot is already 0. ``--names N``: the N FFN nodes with the
most evaluated units per token (compiles the graph again to name the units; only where
that gives the cached model's schedule, which a loaded machine may not: the MILP's time limit).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from wasmformer import api, machine
from wasmformer.engine.fast import FastDecoder, _numpy
from wasmformer.engine.models import bucket_for, engine_limits, universal_model


def fast_stream(program: str) -> list[int]:
    instance = api.Instance(program, host=machine.WasiHost())
    instance.invoke_tokens("_start", engine="fast")
    return list(instance.session.stream)


def used_units(block, d_ff: int) -> list[int]:
    """The model's unit indices in the fast decoder's order (``fast._layer``)."""
    ffn = block.ffn
    wg, wu, wd = _numpy(ffn.gate.weight), _numpy(ffn.up.weight), _numpy(ffn.down.weight)
    guards = ffn.guards.detach().cpu().numpy().astype(np.int64)
    units = [u for u in range(d_ff) if wg[u].any() and wu[u].any() and wd[:, u].any()]
    units.sort(key=lambda u: tuple(guards[u]))
    return units


def _clearing(layer) -> tuple[np.ndarray, np.ndarray]:
    """The layer's slot-clearing units (``compiler.compiled._clear_unit``: gate row the
    constant alone, value row -x[s], output to s) and their slots s, found by that shape."""
    gate, up, down = layer.gate.tocsr(), layer.up.tocsr(), layer.down.tocsc()
    units, slots = [], []
    for u in range(gate.shape[0]):
        g, v = gate[[u]], up[[u]]
        d = down[:, [u]]
        if g.nnz == 1 and g.data[0] == 1 and v.nnz == 1 and v.data[0] == -1 and d.nnz == 1 \
                and d.indices[0] == v.indices[0] and d.data[0] == 1:
            units.append(u)
            slots.append(int(v.indices[0]))
    return np.array(units, dtype=np.int64), np.array(slots, dtype=np.int64)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("program")
    parser.add_argument("--names", type=int, default=0)
    args = parser.parse_args()
    tokens = fast_stream(args.program)
    bucket = bucket_for(len(tokens))
    model = universal_model(bucket)
    decoder = FastDecoder(model, compiled=False)
    layers = decoder.layers
    evaluated = np.zeros((len(layers), max(layer.gate.shape[0] for layer in layers)))
    clearing = [_clearing(layer) for layer in layers]
    clears = np.zeros((len(layers), 2))  # clearing units evaluated; of which on a slot at 0
    start = time.process_time()
    for p, token in enumerate(tokens):
        decoder._reserve(p + 1)
        x = decoder.wte[token] + decoder.wpe[:, 0] * p + decoder.wpe[:, 1] * (p * p)
        for i, layer in enumerate(layers):
            x = layer.attend(x)
            g = layer.guards
            off = ((g[:, 0] >= 0) & (x[g[:, 0]] == 0)) | ((g[:, 1] >= 0) & (x[g[:, 1]] == 0))
            gate = layer.gate @ x
            assert gate[off].max(initial=0.0) <= 0.0, (p, i)
            evaluated[i, :len(off)] += ~off
            units, slots = clearing[i]
            clears[i] += (np.count_nonzero(~off[units]),
                          np.count_nonzero(~off[units] & (x[slots] == 0)))
            x = x + layer.down @ (np.maximum(gate, 0.0) * (layer.up @ x))
        decoder.length = p + 1
    n = len(tokens)
    print(f"{args.program}: {n} positions, bucket {bucket}, {len(layers)} layers "
          f"({time.process_time() - start:.0f} s CPU)")
    print(f"{'layer':>5} {'units':>6} {'evaluated/token':>16} {'clearing':>9} {'at 0':>7}")
    total = 0.0
    for i, layer in enumerate(layers):
        per = evaluated[i].sum() / n
        total += per
        print(f"{i:>5} {layer.gate.shape[0]:>6} {per:>16.1f} {clears[i, 0] / n:>9.1f} "
              f"{clears[i, 1] / n:>7.1f}")
    print(f"{'all':>5} {sum(layer.gate.shape[0] for layer in layers):>6} {total:>16.1f} "
          f"{clears[:, 0].sum() / n:>9.1f} {clears[:, 1].sum() / n:>7.1f}")
    print("(clearing: the allocation's slot-clearing units relu(1) * -x[s] evaluated; at 0: "
          "of which x[s] was already 0, so the unit adds nothing)")
    if args.names:
        from wasmformer.compiler import compile_graph
        from wasmformer.universal import build_universal_graph
        compiled = compile_graph(build_universal_graph(engine_limits(bucket))[0])
        cfg = model.config
        # the schedule's MILP has a time limit (compiler.schedule): a loaded machine may
        # compile another schedule than the cached model's, whose units cannot be named so
        def same(block, weights) -> bool:
            gate = _numpy(block.ffn.gate.weight)
            return len(weights.units) <= len(gate) and all(
                {slot for slot, _ in u.gate} == set(np.flatnonzero(gate[i]).tolist())
                for i, u in enumerate(weights.units))

        if compiled.d_model != cfg.d_model or not all(
                same(b, w) for b, w in zip(model.blocks, compiled.blocks, strict=True)):
            print("\n(the graph compiled to another schedule than the cached model's: "
                  "no names)")
            return
        by_node: Counter = Counter()
        by_family: Counter = Counter()  # the name's first part, per layer
        for i, (block, weights) in enumerate(zip(model.blocks, compiled.blocks, strict=True)):
            order = used_units(block, cfg.d_ff)
            for j, u in enumerate(order):
                name = weights.units[u].name
                by_node[i, name.split(".")[0] + "." + ".".join(name.split(".")[1:2])] += \
                    evaluated[i, j] / n
                by_family[name.split(".")[0], i] += evaluated[i, j] / n
        print(f"\nthe {args.names} node groups with the most evaluated units per token:")
        for (i, name), per in by_node.most_common(args.names):
            print(f"  layer {i:>2}  {per:8.1f}  {name}")

        families = sorted({f for f, _ in by_family},
                          key=lambda f: -sum(by_family[f, i] for i in range(len(layers))))
        print("\nevaluated units per token by the node name's first part, per layer:")
        print(f"{'':>12}" + "".join(f"{i:>7}" for i in range(len(layers))) + f"{'all':>8}")
        for f in families[:args.names]:
            row = [by_family[f, i] for i in range(len(layers))]
            print(f"{f[:12]:>12}" + "".join(f"{x:>7.1f}" for x in row) + f"{sum(row):>8.1f}")


if __name__ == "__main__":
    main()
