"""Temperature sweep: is the teacher-forced trace still exact, and how much gradient reaches
the inputs, as the attention's sharpness (and the FFN surrogate) varies?

    PYTHONPATH=src python examples/differentiable/sweep.py [--widths 0 0.1] [--out FILE.md]

For the program ``common.LOOP_CALL_BRANCH``, run(5, 6) (66 fused steps, 116 WebAssembly
instructions: a loop, calls, a branch, local and stack reads), one parallel forward over
prompt + header + trace per setting and one backward of the teacher-forced cross-entropy.
Columns: wrong argmax positions of the trace, the loss, and the gradient norms reaching
(a) the prompt's input embeddings (without the constant-one dimension), (b) the 8
argument bytes as soft tokens (probability vectors, here one-hot), tangent to the simplex
(and raw). 30-70 s per row on 2 shared CPU cores (the default 11 rows: 8.5 minutes).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from common import LOOP_CALL_BRANCH, model_for, run_of  # noqa: E402

from wasmformer.model import differentiable as D  # noqa: E402

SHARPNESS = (1.0, 2**-2, 2**-4, 2**-5, 2**-5.25, 2**-5.5, 2**-5.75, 2**-6, 2**-7, 2**-8,
             2**-10)


def measure(model, run, sharpness: float, relu_width: float) -> dict:
    tokens = torch.tensor([run.tokens])
    probs = D.soft_tokens(run.tokens, model.config.vocab_size).requires_grad_(True)
    x = D.embed(model, probs)
    x.retain_grad()
    logits = D.forward(model, probs, sharpness=sharpness, relu_width=relu_width, embedded=x)
    loss = D.trace_loss(logits, tokens, run.predicted)
    loss.backward()
    at = run.predicted.nonzero().view(-1)
    wrong = int((logits[0, at].argmax(-1) != tokens[0, at + 1]).sum())
    args = [run.arg_position(0) + i for i in range(8)]
    # Moving probability mass between tokens keeps the total at 1: only the gradient's
    # component tangent to the simplex matters (the rest is the constant-one feature's).
    g = probs.grad[0, args]
    tangent = g - g.mean(-1, keepdim=True)
    one = (model.wte.weight == 1).all(0)  # the residual's constant-one dimension
    prompt = x.grad[0, :len(run.prompt)][:, ~one]
    return {"sharpness": sharpness, "relu_width": relu_width, "wrong": wrong,
            "checked": len(at), "loss": float(loss.detach()),
            "grad_prompt": float(prompt.norm()), "grad_args": float(tangent.norm()),
            "grad_args_raw": float(g.norm())}


def table(rows: list[dict]) -> str:
    lines = ["| sharpness | relu width | trace exact (wrong / predicted) | loss (nats) "
             "| grad norm, prompt embeddings (constant-one dim. excluded) "
             "| grad norm, soft argument tokens (tangent) | (raw) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["sharpness"]
        k = math.log2(s)
        name = "1 (built)" if s == 1 else f"2^{k:.0f}" if k == round(k) else f"2^{k:.2f}"
        exact = "yes" if r["wrong"] == 0 else "no"
        lines.append(f"| {name} | {r['relu_width']:g} | {exact} ({r['wrong']} / {r['checked']}) "
                     f"| {r['loss']:.1f} | {r['grad_prompt']:.3g} | {r['grad_args']:.3g} "
                     f"| {r['grad_args_raw']:.3g} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=float, nargs="+", default=[0.0])
    parser.add_argument("--sharpness", type=float, nargs="+", default=list(SHARPNESS))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    run = run_of(LOOP_CALL_BRANCH, "run", [5, 6])
    model = model_for(LOOP_CALL_BRANCH, 2048)
    print(f"{run.steps} fused steps, {run.instructions} WebAssembly instructions, "
          f"{len(run.tokens)} positions ({len(run.prompt)} prompt)", flush=True)
    rows = []
    for width in a.widths:
        for s in a.sharpness:
            t0 = time.time()
            rows.append(measure(model, run, s, width))
            print(rows[-1], f"{time.time() - t0:.1f}s", flush=True)
    text = table(rows)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
