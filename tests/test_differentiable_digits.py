"""The digit demo's pieces (examples/differentiable): the column program in the frozen
transformer, its straight-through estimator (forward exact, gradient through the trace to
the digit tokens, the memoised Jacobian equal to the live one), and the exact baseline's
enumerator against brute force."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "examples" / "differentiable"))

from adders import (  # noqa: E402
    brute_force_probability,
    digit_event_log_prob,
    exact_log_likelihood,
    run_columns,
    sum_digits,
)
from column import Column, Memo, live_result_logits, one_hot_inputs  # noqa: E402

from wasmformer.model import differentiable as D  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def column() -> Column:
    return Column()


def soft_inputs(inputs, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random digit logits z (B, 2, 10) and the soft inputs (B, 22) they give (the carry
    one-hot)."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(len(inputs), 2, 10, generator=gen, dtype=torch.float64)
    z.requires_grad_(True)
    carry = torch.stack([one_hot_inputs(*x)[20:] for x in inputs])
    return z, torch.cat([torch.softmax(z, -1).reshape(len(inputs), 20), carry], dim=-1)


def test_straight_through_forward_is_the_exact_execution(column: Column) -> None:
    inputs = [(3, 7, 1), (9, 9, 1), (0, 0, 0), (5, 4, 0)]
    assert column.exact(inputs)
    _, soft = soft_inputs(inputs)
    logits = live_result_logits(column, inputs, soft)
    rows = column.hard_rows(inputs)
    with torch.no_grad():
        hard = D.forward(column.model, rows, prefix=column.prefix)
    assert torch.equal(logits.detach(), hard[:, column.stream(*inputs[0]).result_at])
    assert logits.argmax(-1).tolist() == [a + b + c for a, b, c in inputs]


def test_gradient_crosses_the_trace_to_the_digit_tokens(column: Column) -> None:
    """The printed result reads the trace (the add's token), not the arguments: one pass
    gives the digits no gradient, three passes (add, add, return) do."""
    inputs = [(3, 7, 1), (8, 2, 0)]
    grads = []
    for passes in (1, 3):
        z, soft = soft_inputs(inputs)
        logits = live_result_logits(column, inputs, soft, passes=passes)
        target = torch.tensor([2, 1])  # wrong digits: 1 and 0 are written
        loss = -digit_event_log_prob(torch.log_softmax(logits, -1), target).sum()
        (grad,) = torch.autograd.grad(loss, z)
        grads.append(grad)
    assert grads[0].abs().max() == 0
    assert grads[1][:, 0].abs().min(-1).values.gt(0).all()  # a and b of both columns
    assert grads[1][:, 1].abs().min(-1).values.gt(0).all()


@pytest.mark.slow  # 9 forward-mode passes through 3 passes of the model: ~20-50 s here
def test_memo_equals_the_live_transformer(column: Column) -> None:
    inputs = [(3, 7, 1)]
    memo = Memo(column, inputs=inputs)
    assert memo.exact
    a, b, c = (torch.tensor(v) for v in zip(*inputs, strict=True))
    z1, soft1 = soft_inputs(inputs, seed=3)
    z2, soft2 = soft_inputs(inputs, seed=3)
    live = live_result_logits(column, inputs, soft1)
    stored = memo.result_logits(a, b, c, soft2)
    assert torch.equal(live.detach(), stored.detach())
    weights = torch.randn(live.shape, generator=torch.Generator().manual_seed(1),
                          dtype=torch.float64)
    (g_live,) = torch.autograd.grad((live * weights).sum(), z1)
    (g_memo,) = torch.autograd.grad((stored * weights).sum(), z2)
    assert torch.allclose(g_live, g_memo, rtol=1e-8, atol=1e-8 * g_live.abs().max())
    with pytest.raises(KeyError):
        memo.index(torch.tensor([1]), torch.tensor([1]), torch.tensor([0]))


def test_transformer_columns_print_multi_digit_sums(column: Column) -> None:
    a = torch.tensor([[9, 9], [5, 0], [3, 1]])  # 99, 5, 13 (least significant first)
    b = torch.tensor([[1, 9], [5, 9], [0, 0]])  # 91, 95, 0

    def live(da, db, carry, soft):
        return live_result_logits(column, list(zip(da.tolist(), db.tolist(),
                                                   carry.tolist(), strict=True)), soft)

    one_hot = torch.nn.functional.one_hot(torch.stack([a, b], 1), 10).double()
    target = sum_digits(a, b)
    loss, printed = run_columns(live, one_hot[:, 0], one_hot[:, 1], a, b, target)
    assert printed.tolist() == target.tolist() == [[0, 9, 1], [0, 0, 1], [3, 1, 0]]
    assert bool((loss < 3 * 1.0).all())  # each column writes its digit with p > 1/e


def test_exact_likelihood_matches_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    for n, totals in ((1, range(19)), (2, (0, 9, 10, 99, 100, 137, 198))):
        pa = torch.softmax(torch.randn(1, n, 10, generator=gen, dtype=torch.float64), -1)
        pb = torch.softmax(torch.randn(1, n, 10, generator=gen, dtype=torch.float64), -1)
        mass = 0.0
        for total in totals:
            target = torch.tensor([[(total // 10**i) % 10 for i in range(n + 1)]])
            got = float(exact_log_likelihood(pa, pb, target).exp())
            assert got == pytest.approx(brute_force_probability(pa[0], pb[0], total),
                                        rel=1e-12, abs=1e-300)
            mass += got
        if n == 1:
            assert mass == pytest.approx(1.0, rel=1e-12)
