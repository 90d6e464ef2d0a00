"""Demo 1 and 2: learning digits from sums, through a program running in the frozen
transformer, beside a neural adder, exact inference and the supervised ceiling.

    PYTHONPATH=src python examples/differentiable/digits.py --digits 1 --method computer

scikit-learn's bundled ``load_digits`` (8x8, no download), a fixed split (seed 0: 1,258
training images, 539 held out). An MLP 64 -> 128 -> 10 reads the 2N images of two N-digit
numbers; the only training signal is their sum. Methods (``adders``):

- ``computer``: the network's digit distributions feed the column-addition program in the
  frozen universal transformer (``column.COLUMN``), straight-through: forward on sampled
  digits (the exact execution), gradient through the transformer's Jacobian there.
- ``neural``: the same, with a learnt MLP column adder in place of the transformer.
- ``exact``: the exact log-likelihood of the sum (carry forward pass), no adder.
- ``supervised``: the network trained on the digit labels (the ceiling p^(2N)).

A step sees 32 training images (32 // (2N) sums; one sum of 30 images at N = 15); an epoch
sees each training image once. Held out: per-image digit accuracy on the 539 test images,
and sum accuracy on 1,000 sums drawn from test images only (fixed seed), at the trained N
and at ``--test-digits``. The curves and the numbers: docs/DIFFERENTIABLE.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))

from adders import (  # noqa: E402
    NeuralAdder,
    exact_log_likelihood,
    local_expectation_columns,
    run_columns,
    sum_digits,
)

METHODS = ("computer", "neural", "exact", "supervised")
IMAGES_PER_STEP = 32
TEST_SUMS = 1000
MEMO = Path(__file__).parent / ".cache" / "column-memo.pt"


def load_split(seed: int = 0):
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit("digits.py needs scikit-learn (the test extra: pip install -e '.[test]')")
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float64) / 16
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    test, train = order[:int(0.3 * len(y))], order[int(0.3 * len(y)):]
    return (x[train], y[train]), (x[test], y[test])


def network(head: str = "softmax") -> nn.Module:
    """The MLP 64 -> 128 -> 10 digit logits; "unimodal": logits -(v - 4.5 - mu)^2 / 0.5
    from one output mu (``digits_meanfield.UnimodalHead``), a single peak that moves
    smoothly with mu."""
    from digits_meanfield import UnimodalHead

    last = nn.Linear(128, 10) if head == "softmax" else UnimodalHead(128)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), last).double()


def test_sums(count: int, n: int, pool: int, seed: int = 1) -> torch.Tensor:
    """(count, 2, n) image indices into a pool of ``pool`` images, distinct within a sum."""
    gen = torch.Generator().manual_seed(seed * 1000 + n)
    return torch.stack([torch.randperm(pool, generator=gen)[:2 * n] for _ in range(count)]
                       ).view(count, 2, n)


class Learner:
    """The network and (for ``neural``) the adder, one method's loss and its decoding."""

    def __init__(self, method: str, estimator: str, score: float, memo=None,
                 temperature: float = 1.0, pathwise: float = 1.0, entropy: float = 0.0,
                 head: str = "softmax"):
        self.method, self.estimator, self.score = method, estimator, score
        self.temperature, self.pathwise, self.entropy = temperature, pathwise, entropy
        self.net = network(head)
        self.adder = NeuralAdder() if method == "neural" else None
        self.memo = memo

    def parameters(self):
        extra = list(self.adder.parameters()) if self.adder is not None else []
        return list(self.net.parameters()) + extra

    def column_logits(self):
        if self.method == "computer":
            return self.memo.result_logits
        return self.adder.column_logits

    def hard_digits(self, probs: torch.Tensor) -> torch.Tensor:
        if self.estimator == "argmax":
            return probs.argmax(-1)  # "local" samples too
        flat = probs.reshape(-1, 10)
        return torch.multinomial(flat, 1).view(probs.shape[:-1])

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean loss of a batch of sums: images x (B, 2, N, 64), labels y (B, 2, N) (only
        ``supervised`` reads them; the others read their sum)."""
        logits = self.net(x)
        if self.method == "supervised":
            return nn.functional.cross_entropy(logits.reshape(-1, 10), y.reshape(-1))
        target = sum_digits(y[:, 0], y[:, 1])
        probs = torch.softmax(logits, dim=-1)
        if self.method == "exact":
            return -exact_log_likelihood(probs[:, 0], probs[:, 1], target).mean()
        if self.estimator == "gumbel":  # the sample is argmax(log p + g); the backward
            noisy = torch.log_softmax(logits, -1) - torch.empty_like(logits).exponential_().log()
            digits = noisy.argmax(-1).detach()  # goes through softmax((log p + g) / tau)
            probs = torch.softmax(noisy / self.temperature, -1)
        else:
            digits = self.hard_digits(probs.detach())
        if self.estimator == "local":
            return local_expectation_columns(self.memo, probs[:, 0], probs[:, 1],
                                             digits[:, 0], digits[:, 1], target).mean()
        per_sum, printed = run_columns(self.column_logits(), probs[:, 0], probs[:, 1],
                                       digits[:, 0], digits[:, 1], target)
        loss = self.pathwise * per_sum.mean()
        if self.score:  # score function; reward: the share of the sum's digits printed right
            logp = torch.log_softmax(logits, -1).gather(-1, digits[..., None])[..., 0]
            reward = (printed == target).double().mean(-1)
            advantage = reward - reward.mean()
            loss = loss - self.score * (advantage * logp.sum((1, 2))).mean()
        if self.entropy:  # asks for spread-out distributions (against early collapse)
            entropy = -(probs * torch.log_softmax(logits, -1)).sum(-1).mean()
            loss = loss - self.entropy * entropy
        return loss

    @torch.no_grad()
    def predict_sums(self, x: torch.Tensor) -> torch.Tensor:
        """The printed sum's digits (B, N+1) for images (B, 2, N, 64): the argmax digits,
        added by the method's adder (the transformer for ``computer``; exact integer
        addition for ``exact`` and ``supervised``, which have no adder)."""
        digits = self.net(x).argmax(-1)
        if self.method in ("computer", "neural"):
            probs = nn.functional.one_hot(digits, 10).double()
            return run_columns(self.column_logits(), probs[:, 0], probs[:, 1],
                               digits[:, 0], digits[:, 1], None)[1]
        return sum_digits(digits[:, 0], digits[:, 1])


def evaluate(learner: Learner, test, sums: dict[int, torch.Tensor]) -> dict:
    x, y = test
    with torch.no_grad():
        digit_acc = float((learner.net(x).argmax(-1) == y).double().mean())
    out = {"digit_acc": digit_acc}
    for n, idx in sums.items():
        got = learner.predict_sums(x[idx])
        want = sum_digits(y[idx][:, 0], y[idx][:, 1])
        out[f"sum_acc_{n}"] = float((got == want).all(-1).double().mean())
    return out


def train(method: str, n: int, epochs: int, *, lr: float = 3e-3, seed: int = 0,
          estimator: str = "sample", score: float = 0.0, temperature: float = 1.0,
          pathwise: float = 1.0, entropy: float = 0.0, head: str = "softmax",
          test_digits=(), memo=None, log=print) -> dict:
    torch.manual_seed(seed)
    train_set, test = load_split()
    learner = Learner(method, estimator, score, memo, temperature, pathwise, entropy, head)
    opt = torch.optim.Adam(learner.parameters(), lr=lr)
    x, y = train_set
    per_step = max(1, IMAGES_PER_STEP // (2 * n))
    sums = {m: test_sums(TEST_SUMS, m, len(test[1])) for m in (n, *test_digits)}
    curve, start = [], time.time()
    for epoch in range(epochs):
        order = torch.randperm(len(y))
        groups = order[:len(y) // (2 * n) * 2 * n].view(-1, 2, n)
        total = 0.0
        for batch in groups.split(per_step):
            loss = learner.loss(x[batch], y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
        row = {"epoch": epoch + 1, "loss": total / len(groups),
               "seconds": time.time() - start, **evaluate(learner, test, sums)}
        curve.append(row)
        log(json.dumps(row))
    final = curve[-1]
    return {"method": method, "digits": n, "epochs": epochs, "estimator": estimator,
            "score": score, "temperature": temperature, "pathwise": pathwise, "entropy": entropy, "head": head,
            "lr": lr, "seed": seed, "train_seconds": final["seconds"],
            **{k: v for k, v in final.items() if k not in ("epoch", "seconds", "loss")},
            "curve": curve}


def plot_curve(result: dict, path: Path) -> None:
    """Held-out digit accuracy and sum accuracy at every measured N, by epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = result["curve"]
    epochs = [row["epoch"] for row in curve]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for key in [k for k in curve[0] if k == "digit_acc" or k.startswith("sum_acc_")]:
        label = "digits" if key == "digit_acc" else f"sums, N = {key[8:]}"
        ax.plot(epochs, [100 * row[key] for row in curve], label=label)
    ax.set_title(f"{result['method']}, trained at N = {result['digits']}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("held-out accuracy, %")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=1)
    parser.add_argument("--method", choices=METHODS, default="computer")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--estimator", choices=("sample", "argmax", "gumbel", "local"),
                        default="sample",
                        help="the hard digits the program runs on: sampled from p (backward "
                        "through p), argmax of p, or Gumbel-max (backward through the "
                        "Gumbel-softmax at --temperature); local: sampled, and each digit's "
                        "alternatives scored by the transformer's first-order model")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--pathwise", type=float, default=1.0,
                        help="weight of the gradient through the transformer (0: score "
                        "function alone)")
    parser.add_argument("--head", choices=("softmax", "unimodal"), default="softmax")
    parser.add_argument("--entropy", type=float, default=0.0,
                        help="weight of an entropy bonus on the digit distributions")
    parser.add_argument("--score", type=float, default=0.0,
                        help="weight of the score-function term (0: pathwise only)")
    parser.add_argument("--test-digits", type=int, nargs="*", default=[],
                        help="also measure sum accuracy at these N (generalisation)")
    parser.add_argument("--memo", type=Path, default=MEMO,
                        help="cache of the transformer's column values and Jacobians")
    parser.add_argument("--live", action="store_true",
                        help="run the transformer every batch instead of the memo (slow)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--png", type=Path, help="plot the curves of --json's file (no run)")
    a = parser.parse_args()
    if a.png:
        plot_curve(json.loads(a.json.read_text()), a.png)
        return
    torch.set_num_threads(1)
    if not 1 <= a.digits <= 15:
        sys.exit("digits: --digits must be 1..15")
    memo = None
    if a.method == "computer":
        from column import Column, Live, Memo
        built = time.time()
        memo = Live(Column()) if a.live else Memo(Column(), a.memo)
        if not memo.exact:
            sys.exit("digits: the transformer's column trace is not exact")
        print(f"memo ready in {time.time() - built:.0f} s", flush=True)
    result = train(a.method, a.digits, a.epochs, lr=a.lr, seed=a.seed,
                   estimator=a.estimator, score=a.score, temperature=a.temperature,
                   pathwise=a.pathwise, entropy=a.entropy, head=a.head,
                   test_digits=a.test_digits,
                   memo=memo, log=lambda s: print(s, flush=True))
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
