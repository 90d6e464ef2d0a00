"""What the digit demo's gradient is: the slope of the printed value along a digit token's
move, from the transformer's Jacobian at a few column inputs.

    PYTHONPATH=src python examples/differentiable/slope.py

For column(a, b, carry) (``column.COLUMN``), the memo's logits at the printed result are
-g (x - t)^2 + const over the byte tokens t (g = 1 measured), so a first difference of logits gives x, and of
the Jacobian the change of x as a's token moves from a to v (and the carry's from 0 to 1).
Prints the least-squares slope dx / dv over v = 0..9, its largest residual, and the
carry's slope. About a minute on one core (a 5-input memo; ``column.Memo``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from column import Column, Memo  # noqa: E402

INPUTS = [(3, 4, 0), (5, 5, 0), (9, 9, 1), (1, 8, 1), (0, 0, 0)]


def value_change(d: torch.Tensor, t: int, g: torch.Tensor) -> float:
    """The change of the printed value x for a change d of the logits -g (x - t)^2."""
    return float((d[t + 1] - d[t]) / (2 * g))


def main() -> None:
    torch.set_num_threads(1)
    column = Column()
    memo = Memo(column, inputs=INPUTS, chunk=len(INPUTS))
    print(f"model {len(column.model.blocks)} layers, vocabulary {column.vocab}, prefix "
          f"{column.prefix.length} + stream {len(column.stream(*INPUTS[0]).tokens)} positions; "
          f"exact: {memo.exact}")
    for k, (a, b, c) in enumerate(INPUTS):
        logits, jac = memo.logits[k], memo.jacobian[k]  # (V,), (V, 22)
        t = max(a + b + c - 3, 0)
        # logits -g (x - t)^2 + const: first differences 2g(x - t) - g, second -2g
        g = -(logits[t + 2] - 2 * logits[t + 1] + logits[t]) / 2
        x = t + (logits[t + 1] - logits[t] + g) / (2 * g)

        moves = [(v - a, value_change(jac[:, v] - jac[:, a], t, g)) for v in range(10)]
        slope = sum(m * d for m, d in moves) / sum(m * m for m, _ in moves)
        residual = max(abs(d - slope * m) for m, d in moves)
        print(f"column{(a, b, c)}: printed value {float(x):.6f}; d value / d a-token "
              f"{slope:.4f} (residual {residual:.1e}); d value / d carry "
              f"{value_change(jac[:, 21] - jac[:, 20], t, g):.4f}")


if __name__ == "__main__":
    main()
