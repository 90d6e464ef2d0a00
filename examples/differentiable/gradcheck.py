"""Gradient check: autograd against central finite differences (float64) through a
multi-step trace, with respect to the program's arguments given as soft tokens.

    PYTHONPATH=src python examples/differentiable/gradcheck.py [--program loop|memory]
        [--sharpness 0.03125]

``--program loop`` (default): ``common.LOOP_CALL_BRANCH`` run(5, 6), 66 fused steps (116
WebAssembly instructions: a loop, 6 calls, a branch in the callee, local and stack reads);
1,136 positions. ``--program memory``: ``common.LOOP_MEMORY_BRANCH`` run(5, 4), 58 fused
steps (116 WebAssembly instructions: two loops, 4 stores and 4 memory reads, a branch per
read); 1,147 positions. The first byte of each argument is a soft token, softmax(z) over
the 256 byte tokens with z = 8 * one-hot(true byte) + N(0, 1) noise; the loss is the
teacher-forced cross-entropy of the whole trace. For the gradient's direction and 4 random
unit directions in z, the directional derivative by autograd and by
(L(z + eps d) - L(z - eps d)) / 2 eps (eps: ``common.TRACES``). A few minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from common import TRACES, gradient_check, model_for, relative_error, run_of  # noqa: E402

from wasmformer.model import differentiable as D  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--program", choices=sorted(TRACES), default="loop")
    parser.add_argument("--sharpness", type=float, default=2**-5)
    parser.add_argument("--relu-width", type=float, default=0.0)
    parser.add_argument("--directions", type=int, default=4)
    parser.add_argument("--eps", type=float, help="the step (default: 1e-5 loop, 1e-3 memory)")
    parser.add_argument("--threads", type=int, default=1)
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    wat, args, data, eps = TRACES[a.program]
    eps = a.eps or eps
    run = run_of(wat, "run", args)
    model = model_for(wat, 2048)
    with torch.no_grad():  # the working point: is the teacher-forced trace still exact?
        logits = D.forward(model, torch.tensor([run.tokens]), sharpness=a.sharpness,
                           relu_width=a.relu_width)
    exact = bool(D.argmax_exact(logits, torch.tensor([run.tokens]), run.predicted))
    positions = [run.arg_position(0), run.arg_position(1), *map(run.data_position, data)]
    pairs = gradient_check(model, run, positions, sharpness=a.sharpness,
                           relu_width=a.relu_width, directions=a.directions, eps=eps)
    print(f"{a.program}: {run.steps} fused steps, {run.instructions} WebAssembly "
          f"instructions, {len(run.tokens)} positions, {len(positions)} soft tokens; model {len(model.blocks)} layers, "
          f"d_model {model.config.d_model}; sharpness {a.sharpness:g}, eps {eps:g}; "
          f"trace exact at this sharpness: {exact}")
    for i, (grad, fd) in enumerate(pairs):
        name = "gradient" if i == 0 else f"random {i}"
        print(f"{name:>9}: autograd {grad: .12e}  finite difference {fd: .12e}  "
              f"|diff| {abs(grad - fd):.2e}")
    print(f"relative error (max |diff| / |gradient|): {relative_error(pairs):.2e}")


if __name__ == "__main__":
    main()
