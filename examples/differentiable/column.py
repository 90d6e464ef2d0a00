"""The computer in the digit demo: column addition run by the frozen universal transformer,
and the straight-through estimator that carries gradients back through its trace.

``COLUMN`` is a WebAssembly program, ``column(a, b, carry) = a + b + carry``: one column of
pencil-and-paper addition. Its result s (0..19) *is* the column's two decimal digits: the
written digit s mod 10 and the carry s div 10 into the next column. Adding two N-digit
numbers runs N + 1 columns, one stream each (the last with a = b = 0 writes the final
carry); column i's carry argument is column i-1's result >= 10.

Straight-through (``live_result_logits``): the forward pass runs the transformer on *hard*
tokens (a sampled digit per image), so every logit is the built model's and the trace is
the program's real execution (checked: every argmax is the reference machine's next
token). The backward pass treats each input as a soft token: a digit token's row is
one_hot(sample) + (y - y.detach()) with y the network's distribution, and each trace token
the transformer reads is one_hot(token) + (q - q.detach()) with q the transformer's own
softmax at the position that predicted it. Running the stream ``passes`` times (the values
are the same every time) lets the gradient cross one more executed step per pass: from the
printed result, back through the step that added the carry, through the step that added
a and b, to the digit tokens. The carry argument is fed the same way from the previous
column's result distribution (P(s >= 10)).

``Memo`` computes, once, the transformer's output logits at the printed result and their
Jacobian with respect to those soft inputs for all 200 hard inputs (a, b, carry); the
straight-through estimator only ever evaluates the transformer at hard inputs, so a batch
then needs a table lookup and a (V x 22) product per column instead of a transformer pass.
``tests/test_differentiable_digits.py`` checks the memo against the live transformer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from common import model_for, run_of

from wasmformer.model import differentiable as D

COLUMN = """(module
  (func (export "column") (param $a i32) (param $b i32) (param $carry i32) (result i32)
    (i32.add (i32.add (local.get $a) (local.get $b)) (local.get $carry))))"""

MAX_LEN = 512  # the column stream is ~360 positions
WIDTH = 4  # bytes of an i32 argument
TANGENTS = 22  # soft inputs: a over digits 0..9, b over 0..9, the carry over 0..1


@dataclass(frozen=True)
class Stream:
    """One column's stream after the fixed prefix (prompt, CALL, entry, depth)."""

    tokens: list[int]  # the 12 argument bytes, then the trace up to HALT
    result_at: int  # the position (in tokens) whose logits predict the result's byte 0


class Column:
    """The frozen transformer running ``COLUMN``: the prefix encoded once, a column stream
    per (a, b, carry) from the reference token machine."""

    def __init__(self):
        self.model = model_for(COLUMN, MAX_LEN)
        self.vocab = self.model.config.vocab_size
        run = run_of(COLUMN, "column", [0, 0, 0])
        self.first_arg = run.arg_position(0)
        self.prefix = D.encode_prefix(self.model, run.tokens[:self.first_arg])

    def stream(self, a: int, b: int, carry: int) -> Stream:
        return column_stream(a, b, carry, self.first_arg)

    def hard_rows(self, inputs: list[tuple[int, int, int]]) -> torch.Tensor:
        ids = torch.tensor([self.stream(*x).tokens for x in inputs])
        return F.one_hot(ids, self.vocab).to(torch.float64)

    def logits(self, rows: torch.Tensor, passes: int) -> torch.Tensor:
        """Logits (B, R, V) of the streams ``rows`` (B, R, V), straight-through: the trace
        tokens (after the 12 argument bytes) carry the gradient of the transformer's own
        distribution at the position before, through ``passes`` passes."""
        logits = D.forward(self.model, rows, prefix=self.prefix)
        trace = slice(3 * WIDTH, rows.shape[1])
        for _ in range(passes - 1):
            q = torch.softmax(logits[:, trace.start - 1:-1], dim=-1)
            fed = rows.clone()
            fed[:, trace] = fed[:, trace] + (q - q.detach())
            logits = D.forward(self.model, fed, prefix=self.prefix)
        return logits

    def exact(self, inputs: list[tuple[int, int, int]]) -> bool:
        """Whether the transformer's argmax is the reference trace's next token at every
        trace position of every stream (greedy decoding would print exactly these)."""
        rows = self.hard_rows(inputs)
        with torch.no_grad():
            logits = D.forward(self.model, rows, prefix=self.prefix)
        ids = rows.argmax(-1)
        start = 3 * WIDTH - 1
        return bool((logits[:, start:-1].argmax(-1) == ids[:, start + 1:]).all())


@functools.cache
def column_stream(a: int, b: int, carry: int, first_arg: int) -> Stream:
    """The reference token machine's stream for column(a, b, carry) from ``first_arg``."""
    tokens = run_of(COLUMN, "column", [a, b, carry]).tokens[first_arg:]
    # The printed result: the RET record's payload, the last WIDTH bytes before HALT.
    return Stream(tokens, len(tokens) - WIDTH - 2)


def soft_rows(column: Column, inputs: list[tuple[int, int, int]], soft: torch.Tensor
              ) -> torch.Tensor:
    """Hard rows with the straight-through part of ``soft`` (B, 22) (distributions over a's
    digits, b's digits, the carry) added at the three arguments' low bytes."""
    rows = column.hard_rows(inputs)
    delta = soft - soft.detach()
    for k, (lo, hi) in enumerate(((0, 10), (10, 20), (20, 22))):
        rows[:, k * WIDTH, :hi - lo] = rows[:, k * WIDTH, :hi - lo] + delta[:, lo:hi]
    return rows


PASSES = 3  # the printed result is 3 executed steps from a and b (add, add, return)


def live_result_logits(column: Column, inputs: list[tuple[int, int, int]], soft: torch.Tensor,
                       passes: int = PASSES) -> torch.Tensor:
    """The printed result's logits (B, V) through the live transformer, straight-through."""
    at = column.stream(*inputs[0]).result_at
    return column.logits(soft_rows(column, inputs, soft), passes)[:, at]


class Memo:
    """For every hard input (a, b, carry): the result's logits (V,) and their Jacobian
    (V, 22) with respect to the soft inputs, both computed by the live transformer
    (forward-mode autograd along the 9 directions of ``tangent_basis``). ``path``: a cache file (the tables are
    a deterministic function of the built model; ~30 MB, minutes to compute)."""

    INPUTS = [(a, b, c) for a in range(10) for b in range(10) for c in range(2)]

    def __init__(self, column: Column, path=None, chunk: int = 25, log=None,
                 inputs: list[tuple[int, int, int]] | None = None):
        self.inputs = inputs or self.INPUTS  # a subset only for tests
        self.lookup = torch.full((len(self.INPUTS),), -1, dtype=torch.long)
        for k, (a, b, c) in enumerate(self.inputs):
            self.lookup[(a * 10 + b) * 2 + c] = k
        if path is not None and Path(path).exists():
            saved = torch.load(path)
            self.logits, self.jacobian, self.exact = saved["logits"], saved["jacobian"], \
                saved["exact"]
            return
        basis, coefficients = tangent_basis(column)
        logits, jacobians = [], []
        for i in range(0, len(self.inputs), chunk):
            part = self.inputs[i:i + chunk]
            base = torch.stack([one_hot_inputs(*x) for x in part])
            cols = []
            for direction in basis:
                value, tangent = torch.func.jvp(
                    lambda soft, part=part: live_result_logits(column, part, soft),
                    (base,), (direction.expand_as(base),))
                cols.append(tangent)
            logits.append(value)
            jacobians.append(torch.stack(cols, dim=-1) @ coefficients)  # (chunk, V, 22)
            if log is not None:
                log(f"memo: {i + len(part)} / {len(self.inputs)} columns")
        self.logits = torch.cat(logits)  # (200, V)
        self.jacobian = torch.cat(jacobians)  # (200, V, 22)
        self.exact = column.exact(self.inputs)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            torch.save({"logits": self.logits, "jacobian": self.jacobian,
                        "exact": self.exact}, path)

    def index(self, a: torch.Tensor, b: torch.Tensor, carry: torch.Tensor) -> torch.Tensor:
        u = self.lookup[(a * 10 + b) * 2 + carry]
        if bool((u < 0).any()):
            raise KeyError("a column input outside this memo")
        return u

    def result_logits(self, a: torch.Tensor, b: torch.Tensor, carry: torch.Tensor,
                      soft: torch.Tensor) -> torch.Tensor:
        """Straight-through logits (B, V): the transformer's value at the hard inputs, the
        gradient its Jacobian there times the soft inputs' straight-through part."""
        u = self.index(a, b, carry)
        if not (torch.is_grad_enabled() and soft.requires_grad):  # no gradient to carry
            return self.logits[u]
        return self.logits[u] + (self.jacobian[u] @ (soft - soft.detach())[..., None])[..., 0]


def tangent_basis(column: Column) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Directions in the 22 soft inputs whose Jacobian columns determine all the others.

    A straight-through perturbation of a soft token sums to zero, so it moves the token's
    embedding by sum_v dy_v (wte[v] - wte[0]), and the digit tokens' rows differ only in
    their value and 4 low bits (rank 4): the directions 1, 2, 4, 8 minus 0 span them (the
    carry's: 1 minus 0). Returns the 9 directions (22,) and the coefficients (9, 22) that
    give every direction v - (the argument's first token) from them (column 0 and 10 and
    20 zero: the Jacobian is stored relative to those tokens)."""
    wte = column.model.wte.weight.detach()
    basis, coefficients = [], []
    for start, width, picks in ((0, 10, (1, 2, 4, 8)), (10, 10, (1, 2, 4, 8)), (20, 2, (1,))):
        moves = wte[:width] - wte[0]  # argument tokens are the bytes 0..width-1
        spanned = moves[list(picks)]  # (r, d)
        coef = torch.linalg.lstsq(spanned.T, moves.T).solution  # (r, width)
        if not torch.allclose(spanned.T @ coef, moves.T, atol=1e-9):
            raise ValueError("the byte embeddings are not spanned by the chosen directions")
        for k, v in enumerate(picks):
            direction = torch.zeros(TANGENTS, dtype=torch.float64)
            direction[start + v], direction[start] = 1.0, -1.0
            basis.append(direction)
            row = torch.zeros(TANGENTS, dtype=torch.float64)
            row[start:start + width] = coef[k]
            coefficients.append(row)
    return basis, torch.stack(coefficients)


def one_hot_inputs(a: int, b: int, carry: int) -> torch.Tensor:
    """The soft-input vector (22,) of hard inputs: one-hot a, one-hot b, one-hot carry."""
    x = torch.zeros(TANGENTS, dtype=torch.float64)
    x[a], x[10 + b], x[20 + carry] = 1.0, 1.0, 1.0
    return x


class Live:
    """``Memo``'s interface on the live transformer (a pass per batch; slow, for checks)."""

    def __init__(self, column: Column):
        self.column, self.exact = column, True

    def result_logits(self, a: torch.Tensor, b: torch.Tensor, carry: torch.Tensor,
                      soft: torch.Tensor) -> torch.Tensor:
        inputs = list(zip(a.tolist(), b.tolist(), carry.tolist(), strict=True))
        if not self.column.exact(inputs):
            raise RuntimeError("the transformer's column trace is not exact")
        return live_result_logits(self.column, inputs, soft)
