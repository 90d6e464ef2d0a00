"""The differentiable mode (model.differentiable): the same numbers as the hard model at
sharpness 1, prefix caching, autograd against finite differences, and the docs' example.

The fast tests use the one-add program (a 220-position stream, a model with only i32.add)
and a load of a soft DATA byte; the gradient checks through the 66-step trace and through
the 65-step trace with memory reads are slow (examples/differentiable/gradcheck.py).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "examples" / "differentiable"))

from common import (  # noqa: E402
    ADD,
    DATA_LOAD,
    LOOP_CALL_BRANCH,
    TRACES,
    gradient_check,
    model_for,
    relative_error,
    run_of,
)

from wasmformer.model import differentiable as D  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def add_model():
    return model_for(ADD, 256)


def test_sharpness_one_is_the_hard_model_bit_for_bit() -> None:
    model, run = add_model(), run_of(ADD, "add", [300, -5])
    tokens = torch.tensor([run.tokens])
    with torch.no_grad():
        hard = model(tokens)
    assert torch.equal(D.forward(model, tokens), hard)
    probs = D.soft_tokens(run.tokens, model.config.vocab_size)  # one-hot rows
    assert torch.equal(D.forward(model, probs), hard)
    assert bool(D.argmax_exact(hard, tokens, run.predicted))


def test_soft_settings_change_the_numbers() -> None:
    model, run = add_model(), run_of(ADD, "add", [3, 4])
    tokens = torch.tensor([run.tokens])
    hard = D.forward(model, tokens)
    soft = D.forward(model, tokens, sharpness=2**-6, relu_width=0.1)
    assert not torch.equal(hard, soft)


def test_prefix_gives_the_same_logits() -> None:
    model, run = add_model(), run_of(ADD, "add", [7, 250])
    tokens = torch.tensor([run.tokens])
    n = len(run.prompt)
    for sharpness, width in ((1.0, 0.0), (2**-5, 0.05)):
        whole = D.forward(model, tokens, sharpness=sharpness, relu_width=width)
        prefix = D.encode_prefix(model, run.prompt, sharpness=sharpness, relu_width=width)
        rest = D.forward(model, tokens[:, n:], sharpness=sharpness, relu_width=width,
                         prefix=prefix)
        if width == 0.0:  # hard: the same numbers exactly
            assert torch.equal(rest, whole[:, n:])
        else:  # soft: the softmax of large scores amplifies the summation order's rounding
            assert torch.allclose(rest, whole[:, n:], rtol=1e-8, atol=1e-9)
    with pytest.raises(ValueError, match="relu_width"):
        D.forward(model, tokens[:, n:], prefix=prefix)


def test_gradient_matches_finite_differences() -> None:
    model, run = add_model(), run_of(ADD, "add", [5, 9])
    positions = [run.arg_position(0), run.arg_position(1)]
    pairs = gradient_check(model, run, positions, sharpness=2**-5, directions=2)
    assert abs(pairs[0][0]) > 1e-3  # a real gradient reaches the soft arguments
    assert relative_error(pairs) < 1e-6, pairs


@pytest.mark.slow
def test_gradient_check_through_66_steps() -> None:
    run = run_of(LOOP_CALL_BRANCH, "run", [5, 6])
    assert run.steps >= 50
    model = model_for(LOOP_CALL_BRANCH, 2048)
    positions = [run.arg_position(0), run.arg_position(1)]
    pairs = gradient_check(model, run, positions, sharpness=2**-5, directions=2)
    assert relative_error(pairs) < 1e-5, pairs


def test_gradient_through_a_memory_read_matches_finite_differences() -> None:
    """The addend at address 8 is a DATA byte of the prompt as a soft token: teacher-forced,
    it reaches the trace's loss only through the load's memory heads."""
    run = run_of(DATA_LOAD, "add", [9])
    assert run.result == [309]
    model = model_for(DATA_LOAD, 512)
    tokens = torch.tensor([run.tokens])
    with torch.no_grad():
        logits = D.forward(model, tokens, sharpness=2**-5)
    assert bool(D.argmax_exact(logits, tokens, run.predicted))
    positions = [run.data_position(8)]
    assert run.tokens[positions[0]] == 0x2C
    eps = TRACES["memory"][3]  # the loss is resolved to 2^-22 here (common.TRACES)
    pairs = gradient_check(model, run, positions, sharpness=2**-5, directions=2, eps=eps)
    assert abs(pairs[0][0]) > 1e-3  # a real gradient reaches the data byte via the load
    assert relative_error(pairs) < 1e-5, pairs


@pytest.mark.slow
def test_gradient_check_through_memory_reads_and_branches() -> None:
    wat, args, data, eps = TRACES["memory"]
    run = run_of(wat, "run", args)
    assert run.steps >= 50 and run.result == [32]
    assert sum(".load" in op for op, _, _ in run.spans) == 6
    model = model_for(wat, 2048)
    tokens = torch.tensor([run.tokens])
    with torch.no_grad():
        logits = D.forward(model, tokens, sharpness=2**-5)
    assert bool(D.argmax_exact(logits, tokens, run.predicted))
    positions = [run.arg_position(0), run.arg_position(1), *map(run.data_position, data)]
    pairs = gradient_check(model, run, positions, sharpness=2**-5, directions=2, eps=eps)
    assert relative_error(pairs) < 1e-5, pairs


def test_docs_example_runs() -> None:
    """The example in docs/DIFFERENTIABLE.md, run as written."""
    text = (ROOT / "docs" / "DIFFERENTIABLE.md").read_text()
    code = re.search(r"<!-- tested example -->\n```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "DIFFERENTIABLE.md", "exec"), scope)
    assert scope["exact"] and scope["grad"].abs().sum() > 0


def test_digit_demo_pieces() -> None:
    """digits_meanfield.py: a number's byte marginals, the frozen computer's hard sums, and a loss
    whose gradient reaches the digit distributions."""
    from digits_meanfield import Computer, number_bytes, numbers

    digits = torch.tensor([[7, 3, 9, 1], [0, 0, 5, 2]])  # 1937 and 2500, low digit first
    one_hot = torch.nn.functional.one_hot(digits, 10).double()
    marginals = number_bytes(one_hot)
    for row, value in zip(marginals, numbers(digits).tolist(), strict=True):
        assert row.argmax(-1).tolist() == [(value >> (8 * k)) & 255 for k in range(4)]
        assert torch.allclose(row.sum(-1), torch.ones(4, dtype=torch.float64))
    computer = Computer(sharpness=1.0, relu_width=0.0)
    a, b = torch.tensor([1937, 99, 0]), torch.tensor([2500, 99, 65535])
    assert computer.run_hard(a, b).tolist() == (a + b).tolist()
    soft = torch.softmax(torch.randn(2, 2, 1, 10, dtype=torch.float64), -1).requires_grad_(True)
    loss = computer.loss(number_bytes(soft[:, 0]), number_bytes(soft[:, 1]),
                         torch.tensor([9, 4]))
    loss.backward()
    assert soft.grad.abs().sum() > 0
