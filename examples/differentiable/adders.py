"""What reads the digit distributions in the digit demo: the three adders compared.

All three see the same thing per column i of a sum (least significant first): the two
digit distributions and a carry-in, and all three are scored the same way: the column's
result s (0..19) must write the sum's digit, s mod 10 = T_i (s = T_i or T_i + 10; the carry
out is not known without digit labels, so both count), except the last digit column, whose
carry out is the sum's top digit: there s = T_(N-1) + 10 T_N. Column N (a = b = 0) writes
the final carry.

- ``computer_columns``: the frozen transformer running ``column.COLUMN``, straight-through
  (``column.Memo`` or the live model).
- ``NeuralAdder``: a plain MLP in its place, (22 -> 64 -> 20 logits over s), trained with the
  classifier (Demo 2a).
- ``exact_log_likelihood``: no adder to learn: log P(the sum's digits are T) under the
  digit distributions, by a forward pass over the carry (Demo 2b; what DeepProbLog-style
  exact inference computes, in O(N * 100) here because addition factorises by column).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn


def digit_event_log_prob(log_probs: torch.Tensor, target: torch.Tensor,
                         carry_out: torch.Tensor | None = None) -> torch.Tensor:
    """log P(s mod 10 = target) from log-probabilities (B, >= 20) over s = 0..19 (and
    whatever else the row covers); log P(s = target + 10 carry_out) when the carry out is
    known (the last digit column: the sum's top digit is its carry)."""
    if carry_out is not None:
        return log_probs.gather(-1, (target + 10 * carry_out)[..., None])[..., 0]
    both = torch.stack([target, target + 10], dim=-1)
    return torch.logsumexp(log_probs.gather(-1, both), dim=-1)


def sum_digits(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The digits (B, N+1) of a + b for digit rows a, b (B, N), least significant first."""
    n = a.shape[1]
    total = (a * 10 ** torch.arange(n)).sum(1) + (b * 10 ** torch.arange(n)).sum(1)
    return torch.stack([(total // 10**i) % 10 for i in range(n + 1)], dim=1)


def carry_rows(carry: torch.Tensor, soft_carry: torch.Tensor | None, dtype) -> torch.Tensor:
    """The carry's soft input (B, 2): one-hot of the hard carry, plus the straight-through
    part of P(carry = 1) when given."""
    rows = nn.functional.one_hot(carry, 2).to(dtype)
    if soft_carry is not None:
        q = torch.stack([1 - soft_carry, soft_carry], dim=-1)
        rows = rows + (q - q.detach())
    return rows


def run_columns(column_logits, pa: torch.Tensor, pb: torch.Tensor, a: torch.Tensor,
                b: torch.Tensor, target: torch.Tensor | None, straight_through: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the N + 1 columns of a + b. ``column_logits(a, b, carry, soft)`` gives the logits
    over s of one column for hard digits a, b, carry (B,) and soft inputs (B, 22); pa, pb
    (B, N, 10) digit distributions, a, b (B, N) the hard digits they stand for. Returns the
    summed loss -log P(column writes T_i) (B,) (zeros without ``target``) and the printed
    digits (B, N+1) (each column's argmax s, mod 10; the hard carry is s >= 10)."""
    bsz, n = a.shape
    zeros = torch.zeros(bsz, 10, dtype=pa.dtype)
    zeros[:, 0] = 1
    carry = torch.zeros(bsz, dtype=torch.long)
    soft_carry = None
    loss = torch.zeros(bsz, dtype=pa.dtype)
    printed = []
    for i in range(n + 1):
        da, db = (a[:, i], b[:, i]) if i < n else (carry * 0, carry * 0)
        qa, qb = (pa[:, i], pb[:, i]) if i < n else (zeros, zeros)
        soft = torch.cat([qa, qb, carry_rows(carry, soft_carry, pa.dtype)], dim=-1)
        logits = column_logits(da, db, carry, soft)
        log_probs = torch.log_softmax(logits, dim=-1)
        if target is not None:
            known = target[:, n] if i == n - 1 else None
            loss = loss - digit_event_log_prob(log_probs, target[:, i], known)
        s = logits.argmax(-1)
        printed.append(s % 10)
        carry = (s >= 10).long()
        soft_carry = log_probs[:, 10:20].exp().sum(-1) if straight_through else None
    return loss, torch.stack(printed, dim=1)


class NeuralAdder(nn.Module):
    """A column adder to be learnt: (a's distribution, b's, the carry's) -> logits over the
    column result s = 0..19. It reads the distributions themselves (a plain differentiable
    module needs no sampling); the carry is the hard one (s >= 10 of the column before)
    plus the straight-through part of P(s >= 10), as for the computer."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(22, hidden), nn.ReLU(), nn.Linear(hidden, 20))
        self.double()

    def column_logits(self, a, b, carry, soft: torch.Tensor) -> torch.Tensor:
        return self.net(soft)


def exact_log_likelihood(pa: torch.Tensor, pb: torch.Tensor, target: torch.Tensor
                         ) -> torch.Tensor:
    """log P(a + b has the digits ``target`` (B, N+1)) (B,) for independent digits with
    distributions pa, pb (B, N, 10): forward over the carry, alpha(c) = P(columns so far
    right, carry c)."""
    bsz, n, _ = pa.shape
    alpha = torch.zeros(bsz, 2, dtype=pa.dtype)
    alpha[:, 0] = 1
    s = torch.arange(10)[:, None] + torch.arange(10)[None, :]  # x + y
    for i in range(n):
        pair = (pa[:, i, :, None] * pb[:, i, None, :]).reshape(bsz, 100)  # P(x, y)
        column = torch.zeros(bsz, 19, dtype=pa.dtype).index_add(1, s.reshape(-1), pair)
        new = torch.zeros_like(alpha)
        for c in range(2):  # column sum x + y + c must write target digit, carry out s // 10
            for out in range(2):
                k = target[:, i] + 10 * out - c  # x + y
                ok = (k >= 0) & (k <= 18)
                new[:, out] = new[:, out] + alpha[:, c] * torch.where(
                    ok, column.gather(1, k.clamp(0, 18)[:, None])[:, 0], 0.0)
        alpha = new
    top = alpha.gather(1, target[:, n].clamp(max=1)[:, None])[:, 0]
    return torch.where(target[:, n] <= 1, top, 0.0).clamp_min(1e-300).log()


def brute_force_probability(pa: torch.Tensor, pb: torch.Tensor, total: int) -> float:
    """P(a + b = total) for one pair (N, 10) of digit distributions, by enumerating every
    pair of numbers (10^(2N) terms; for tests)."""
    n = pa.shape[0]
    prob = 0.0
    for da in itertools.product(range(10), repeat=n):
        pa_val = float(torch.prod(pa[torch.arange(n), torch.tensor(da)]))
        a = sum(d * 10**i for i, d in enumerate(da))
        for db in itertools.product(range(10), repeat=n):
            if a + sum(d * 10**i for i, d in enumerate(db)) == total:
                prob += pa_val * float(torch.prod(pb[torch.arange(n), torch.tensor(db)]))
    return prob


def local_expectation_columns(memo, pa: torch.Tensor, pb: torch.Tensor, a: torch.Tensor,
                              b: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per sum (B,): sum over the columns and over the two digits of E_{v ~ p}[loss if that
    digit were v], the other inputs at their sampled values, with the loss at v taken from
    the transformer's first-order model around the executed point: logits(s) + J (e_v - e_s)
    (``column.Memo``: its logits and Jacobian at the hard inputs). Differentiable in pa, pb
    (the weights p_v); the transformer's values and Jacobian are constants."""
    bsz, n = a.shape
    carry = torch.zeros(bsz, dtype=torch.long)
    loss = torch.zeros(bsz, dtype=pa.dtype)
    for i in range(n + 1):
        da, db = (a[:, i], b[:, i]) if i < n else (carry * 0, carry * 0)
        u = memo.index(da, db, carry)
        logits, jac = memo.logits[u], memo.jacobian[u]  # (B, V), (B, V, 22)
        if i < n:
            for block, digit, probs in ((0, da, pa[:, i]), (10, db, pb[:, i])):
                moves = jac[:, :, block:block + 10]
                here = moves.gather(2, digit[:, None, None].expand(-1, moves.shape[1], 1))
                alternatives = logits[:, :, None] + moves - here  # (B, V, 10)
                log_probs = torch.log_softmax(alternatives, dim=1).transpose(1, 2)
                known = target[:, n, None].expand(-1, 10) if i == n - 1 else None
                event = digit_event_log_prob(log_probs, target[:, i, None].expand(-1, 10),
                                             known)
                loss = loss - (probs * event).sum(-1)
        carry = (logits.argmax(-1) >= 10).long()
    return loss
