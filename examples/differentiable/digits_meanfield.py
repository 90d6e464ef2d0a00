"""Demo 1: learning digits through a program running in the frozen transformer.

    PYTHONPATH=src python examples/differentiable/digits.py --digits 1 [--epochs 20]

scikit-learn's bundled ``load_digits`` (8x8 images, no download), a fixed split (seed 0,
30% held out). A small MLP reads 2N images (two N-digit numbers) and emits a distribution
over 0..9 per image. The distributions become the soft argument bytes of
``add(a, b)`` (``common.ADD``, one i32.add) in the universal transformer: the number
a = sum d_i 10^i has the distribution of the product of its digits' distributions, and
each of its 4 little-endian bytes is the soft token of that byte's marginal. The
transformer, frozen, runs the program teacher-forced; the loss is the cross-entropy of the
trace tokens that carry the program's result (the sum's 4 bytes). The network never sees
a digit label.

Reported: per-digit accuracy (argmax) on held-out images, sum accuracy (the frozen
transformer, hard, greedily running add on the argmax digits), training time, and the
supervised ceiling p^(2N) (the same MLP trained on digit labels, same split and budget).
The results, and why a free softmax head does not learn here (soft tokens are a mean
field): docs/DIFFERENTIABLE.md.
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

from common import ADD, model_for, run_of  # noqa: E402
from digits import load_split  # noqa: E402  (the same fixed split as the main demo)

from wasmformer.model import differentiable as D  # noqa: E402

WIDTH = 4  # bytes of an i32 argument


class UnimodalHead(nn.Module):
    """Logits -(v - mu)^2 / (2 sigma^2) over the digits v = 0..9 from one output mu: a
    distribution with a single peak whose mean moves smoothly with mu."""

    def __init__(self, width: int, sigma: float = 0.5):
        super().__init__()
        self.mu = nn.Linear(width, 1)
        self.sigma = sigma

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        v = torch.arange(10, dtype=h.dtype)
        return -(v - 4.5 - self.mu(h)) ** 2 / (2 * self.sigma**2)


def network(head: str = "softmax") -> nn.Module:
    """The MLP 64 -> 128 -> 10 digit logits ("softmax": a free distribution; "unimodal":
    ``UnimodalHead``)."""
    last = nn.Linear(128, 10) if head == "softmax" else UnimodalHead(128)
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), last).double()


def number_bytes(digits: torch.Tensor) -> torch.Tensor:
    """Byte marginals (B, 4, 256) of a = sum_i d_i 10^i for digit distributions (B, N, 10)
    (least significant digit first), the digits independent."""
    b, n, _ = digits.shape
    joint = digits[:, 0]
    for i in range(1, n):  # values 0 .. 10^(i+1)-1, index = d_i * 10^i + lower
        joint = (digits[:, i, :, None] * joint[:, None, :]).reshape(b, -1)
    values = torch.arange(joint.shape[1])
    out = torch.zeros(b, WIDTH, 256, dtype=joint.dtype)
    for k in range(WIDTH):
        out[:, k] = out[:, k].index_add(1, (values >> (8 * k)) & 255, joint)
    return out


class Computer:
    """The frozen transformer running add(a, b): the prompt and the header's fixed part
    are encoded once; a batch runs only the 8 argument bytes and the sum's first bytes."""

    def __init__(self, sharpness: float, relu_width: float):
        self.model = model_for(ADD, 256)
        self.sharpness, self.relu_width = sharpness, relu_width
        run = run_of(ADD, "add", [0, 0])
        self.first_arg = run.arg_position(0)
        self.prefix = D.encode_prefix(self.model, run.tokens[:self.first_arg],
                                      sharpness=sharpness, relu_width=relu_width)
        self.hard_prefix = D.encode_prefix(self.model, run.tokens[:self.first_arg])
        self.vocab = self.model.config.vocab_size

    def loss(self, a: torch.Tensor, b: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the sum's 4 bytes; a, b: byte marginals (B, 4, 256)."""
        args = torch.cat([a, b], dim=1)  # (B, 8, 256)
        sum_bytes = torch.stack([(total >> (8 * k)) & 255 for k in range(WIDTH)], 1)
        known = nn.functional.one_hot(sum_bytes[:, :WIDTH - 1], 256).to(args.dtype)
        soft = torch.cat([args, known], dim=1)  # the last 3 sum bytes are teacher-forced
        probs = torch.zeros(*soft.shape[:2], self.vocab, dtype=soft.dtype)
        probs[..., :256] = soft
        logits = D.forward(self.model, probs, sharpness=self.sharpness,
                           relu_width=self.relu_width, prefix=self.prefix)
        picked = logits[:, 2 * WIDTH - 1:]  # the last argument byte predicts sum byte 0
        return nn.functional.cross_entropy(picked.reshape(-1, self.vocab),
                                           sum_bytes.reshape(-1))

    @torch.no_grad()
    def run_hard(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The sums the built (hard) transformer computes for integer a, b (B,), by greedy
        decoding of the sum's bytes (the prompt's keys and values are the hard ones)."""
        ids = torch.cat([torch.stack([(v >> (8 * k)) & 255 for k in range(WIDTH)], 1)
                         for v in (a, b)], dim=1)
        out = []
        for _ in range(WIDTH):
            logits = D.forward(self.model, ids, prefix=self.hard_prefix)
            out.append(logits[:, -1].argmax(-1))
            ids = torch.cat([ids, out[-1][:, None]], dim=1)
        return sum(o << (8 * k) for k, o in enumerate(out))


def variance(digits: torch.Tensor) -> torch.Tensor:
    """The variance of each digit distribution (..., 10) as a number 0..9."""
    v = torch.arange(10, dtype=digits.dtype)
    mean = (digits * v).sum(-1)
    return (digits * v**2).sum(-1) - mean**2


def numbers(y: torch.Tensor) -> torch.Tensor:
    """Integers from digit rows (B, N), least significant first."""
    return (y * 10 ** torch.arange(y.shape[1])).sum(1)


def evaluate(net, computer, x, y, n: int) -> tuple[float, float, list[int]]:
    """Per-digit accuracy, sum accuracy, and how often each class is the argmax."""
    with torch.no_grad():
        guess = net(x).argmax(-1)
    digit_acc = float((guess == y).double().mean())
    classes = torch.bincount(guess, minlength=10).tolist()
    pairs = len(y) // (2 * n)
    g = guess[:pairs * 2 * n].view(pairs, 2, n)
    t = y[:pairs * 2 * n].view(pairs, 2, n)
    got = computer.run_hard(numbers(g[:, 0]), numbers(g[:, 1]))
    sum_acc = float((got == numbers(t[:, 0]) + numbers(t[:, 1])).double().mean())
    return digit_acc, sum_acc, classes


def supervised(train, test, epochs: int, seed: int, head: str) -> float:
    torch.manual_seed(seed)
    net = network(head)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = train
    for _ in range(epochs):
        for idx in torch.randperm(len(y)).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        return float((net(test[0]).argmax(-1) == test[1]).double().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--sharpness", type=float, default=1.0)
    parser.add_argument("--relu-width", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--head", choices=("softmax", "unimodal"), default="unimodal")
    parser.add_argument("--entropy", type=float, default=0.0,
                        help="weight of the mean entropy of the digit distributions")
    parser.add_argument("--variance", type=float, default=0.0,
                        help="weight of the mean variance of the digit distributions")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest on a shared 2-core machine)")
    parser.add_argument("--json", type=Path)
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    n = a.digits
    if not 1 <= n <= 4:
        sys.exit("digits: --digits must be 1..4 (two 4-digit numbers and their sum fit i32)")
    torch.manual_seed(a.seed)
    train, test = load_split()
    computer = Computer(a.sharpness, a.relu_width)
    net = network(a.head)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    x, y = train
    curve = []
    start = time.time()
    for epoch in range(a.epochs):
        order = torch.randperm(len(y))
        pairs = order[:len(y) // (2 * n) * 2 * n].view(-1, 2, n)
        total_loss = 0.0
        for batch in pairs.split(a.batch):
            digits = torch.softmax(net(x[batch]), dim=-1)  # (B, 2, N, 10)
            total = numbers(y[batch][:, 0]) + numbers(y[batch][:, 1])
            loss = computer.loss(number_bytes(digits[:, 0]), number_bytes(digits[:, 1]), total)
            if a.entropy:  # label-free: asks for confident digits (see the docs)
                loss = loss - a.entropy * (digits * digits.clamp_min(1e-12).log()).sum(-1).mean()
            if a.variance:  # label-free: asks for unimodal digits (see the docs)
                loss = loss + a.variance * variance(digits).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total_loss += float(loss.detach()) * len(batch)
        digit_acc, sum_acc, classes = evaluate(net, computer, *test, n)
        curve.append({"epoch": epoch + 1, "loss": total_loss / len(pairs),
                      "digit_acc": digit_acc, "sum_acc": sum_acc, "argmax_classes": classes,
                      "seconds": time.time() - start})
        print(curve[-1], flush=True)
    seconds = time.time() - start
    p = supervised(train, test, a.epochs, a.seed, a.head)
    result = {"digits": n, "epochs": a.epochs, "sharpness": a.sharpness, "head": a.head, "entropy": a.entropy,
              "variance": a.variance,
              "relu_width": a.relu_width, "digit_acc": curve[-1]["digit_acc"],
              "sum_acc": curve[-1]["sum_acc"], "train_seconds": seconds,
              "supervised_digit_acc": p, "ceiling": p ** (2 * n), "curve": curve}
    print(json.dumps({k: v for k, v in result.items() if k != "curve"}))
    if a.json:
        a.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
