"""Shared by the differentiable examples: a program's token stream (prompt, invocation
header, trace) from the reference token machine, and the universal model for it.

Run from the repository root with ``PYTHONPATH=src``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from wasmformer.compiler import compile_graph
from wasmformer.machine import Instance, TokenMachine, prompt_tokens
from wasmformer.machine.vocab import from_le, tok
from wasmformer.model import Transformer, build_model
from wasmformer.model import differentiable as D
from wasmformer.toolchain import program_bytes
from wasmformer.universal import ALU_OPS, Limits, build_universal_graph, supported
from wasmformer.wasm import load_module

# A loop that calls a function with a branch in it: 66 fused steps (116 WebAssembly
# instructions) for run(5, 6), reading locals, stack slots, a callee's parameters and a
# returned result. (No memory: LOOP_MEMORY_BRANCH has the loads.)
LOOP_CALL_BRANCH = """(module
  (func $step (param $acc i32) (param $x i32) (result i32)
    (if (result i32) (i32.and (local.get $x) (i32.const 1))
      (then (i32.add (local.get $acc) (local.get $x)))
      (else (i32.xor (local.get $acc) (local.get $x)))))
  (func (export "run") (param $a i32) (param $n i32) (result i32) (local $acc i32)
    (loop $next
      (local.set $acc (call $step (local.get $acc) (i32.add (local.get $a) (local.get $n))))
      (local.tee $n (i32.sub (local.get $n) (i32.const 1)))
      br_if $next)
    local.get $acc))"""

# A loop over a table in linear memory (the module's data segment, so the prompt's DATA
# bytes): each iteration loads table[n], branches on its low bit (add it and a, or xor
# it), and stores the running value; the result is a load of a stored value. run(5, 5):
# 65 fused steps (126 WebAssembly instructions), 6 memory reads, 5 branches, 1,008
# positions. Teacher-forced, the table's bytes reach the loss only through the loads.
LOOP_MEMORY_BRANCH = r"""(module
  (memory 1)
  (data (i32.const 0) "\03\01\04\01\05\09\02\06")
  (func (export "run") (param $a i32) (param $n i32) (result i32) (local $v i32) (local $acc i32)
    (loop $next
      (local.set $v (i32.load8_u (local.get $n)))
      (if (i32.and (local.get $v) (i32.const 1))
        (then (local.set $acc (i32.add (local.get $acc) (i32.add (local.get $v) (local.get $a)))))
        (else (local.set $acc (i32.xor (local.get $acc) (local.get $v)))))
      (i32.store16 (i32.add (local.get $n) (i32.add (i32.const 16) (local.get $n)))
                   (local.get $acc))
      (local.tee $n (i32.sub (local.get $n) (i32.const 1)))
      br_if $next)
    (i32.load16_u (i32.const 18))))"""

# The gradient checks (gradcheck.py --program): program, arguments, the addresses of the
# data bytes given as soft tokens, and the finite difference's step. With a soft byte in
# memory the loss is only resolved to ~2^-22 (measured on DATA_LOAD), so a smaller step
# drowns in rounding: 1e-3 balances it against truncation (docs/DIFFERENTIABLE.md).
TRACES = {"loop": (LOOP_CALL_BRANCH, [5, 6], [], 1e-5),
          "memory": (LOOP_MEMORY_BRANCH, [5, 5], [1, 2, 3, 4, 5], 1e-3)}

# One load from the data segment: the first addend reaches the sum only through memory.
DATA_LOAD = r"""(module
  (memory 1)
  (data (i32.const 8) "\2c\01")
  (func (export "add") (param $b i32) (result i32)
    (i32.add (i32.load (i32.const 8)) (local.get $b))))"""

# The smallest useful program: one add of the two arguments (for fast tests and demos).
ADD = """(module
  (func (export "add") (param $a i32) (param $b i32) (result i32)
    (i32.add (local.get $a) (local.get $b))))"""


@dataclass(frozen=True)
class Run:
    """One invocation's stream: ``tokens`` = prompt + header + trace (up to HALT)."""

    prompt: list[int]
    header: list[int]  # CALL entry depth, then the argument bytes (little-endian)
    tokens: list[int]
    steps: int  # fused instructions executed
    instructions: int  # WebAssembly instructions executed (fuel)
    result: list[int]
    spans: tuple[tuple[str, int, int], ...] = ()  # per step: (fused op, start, end) in tokens

    def data_position(self, address: int) -> int:
        """The prompt position of the initial memory's byte at ``address`` (its DATA line:
        MEM address(4) n(2) then 16 bytes; docs/PROTOCOL.md)."""
        at = self.prompt.index(tok("DATA")) + 4  # the marker and the record count (3)
        while self.prompt[at] == tok("MEM"):
            line = from_le(self.prompt[at + 1:at + 5])
            if line <= address < line + 16:
                return at + 7 + address - line
            at += 7 + 16
        raise ValueError(f"address {address} is in no DATA line of the prompt")

    @property
    def predicted(self) -> torch.Tensor:
        """(T,) bool: position i predicts trace token i + 1 (the header is given)."""
        flags = torch.zeros(len(self.tokens), dtype=torch.bool)
        flags[len(self.prompt) + len(self.header) - 1:len(self.tokens) - 1] = True
        return flags

    def arg_position(self, arg: int, byte: int = 0, width: int = 4) -> int:
        """The position of byte ``byte`` of argument ``arg`` (all of width ``width``)."""
        return len(self.prompt) + 6 + arg * width + byte  # after CALL entry(3) depth(2)


def run_of(wat: str, export: str, args: list[int]) -> Run:
    """The token machine's stream for ``export(*args)`` on a fresh instance of ``wat``."""
    inst = Instance(load_module(program_bytes(wat).wasm))
    tm = TokenMachine(inst)
    prompt = prompt_tokens(inst, tm.fused, tm.func_index)
    trace = tm.invoke(export, args)
    if trace.outcome != "halt" or supported(tm.fused):
        raise ValueError(f"{export}{tuple(args)}: {trace.outcome}, {supported(tm.fused)}")
    header = trace.step_tokens(0)
    spans, at = [], len(prompt)
    for i, pc in enumerate(trace.pcs):  # step 0 is the invocation header (pc -1)
        n = len(trace.step_tokens(i))
        spans.append((tm.fused.code[pc].op if pc >= 0 else "header", at, at + n))
        at += n
    assert at == len(prompt) + len(trace.tokens)
    return Run(prompt, header, prompt + trace.tokens, len(trace.pcs), sum(trace.fuels),
               list(trace.results), tuple(spans))


@functools.cache
def model_for(wat: str, max_len: int) -> Transformer:
    """The universal model with the ALU ops ``wat`` uses, proven exact up to max_len."""
    inst = Instance(load_module(program_bytes(wat).wasm))
    fused = TokenMachine(inst).fused
    ops = tuple(sorted({fi.op for fi in fused.code if fi.op in ALU_OPS}))
    graph, _ = build_universal_graph(Limits(max_len=max_len, ops=ops))
    return build_model(compile_graph(graph), torch.float64)


def soft_args(run: Run, vocab_size: int, z: torch.Tensor, positions: list[int]) -> torch.Tensor:
    """The stream as soft tokens (1, T, vocab), the bytes at ``positions`` given by logits
    ``z`` (len(positions), 256) over the 256 byte tokens."""
    dists = torch.zeros(len(positions), vocab_size, dtype=torch.float64)
    dists[:, :256] = torch.softmax(z, dim=-1)
    return D.soft_tokens(run.tokens, vocab_size, {p: d for p, d in zip(positions, dists,
                                                                        strict=True)})


def gradient_check(model: Transformer, run: Run, positions: list[int], *, sharpness: float,
                   relu_width: float = 0.0, directions: int = 3, eps: float = 1e-5,
                   confidence: float = 8.0, seed: int = 0,
                   predicted: torch.Tensor | None = None) -> list[tuple[float, float]]:
    """Autograd against central finite differences (float64) of the teacher-forced trace
    loss (at ``predicted``, default the whole trace), with respect to the logits z of soft
    byte tokens at ``positions`` (each mostly on its true byte: z = confidence * one-hot +
    noise). For the gradient's own direction and ``directions`` random unit directions:
    (autograd, finite difference) pairs."""
    gen = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    tokens = torch.tensor([run.tokens])
    predicted = run.predicted if predicted is None else predicted
    z = torch.randn(len(positions), 256, generator=gen, dtype=torch.float64)
    for i, p in enumerate(positions):
        z[i, run.tokens[p]] += confidence

    def loss(z: torch.Tensor) -> torch.Tensor:
        probs = soft_args(run, vocab, z, positions)
        logits = D.forward(model, probs, sharpness=sharpness, relu_width=relu_width)
        return D.trace_loss(logits, tokens, predicted)

    z0 = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(z0), z0)
    dirs = [grad / grad.norm()]
    dirs += [d / d.norm() for d in torch.randn(directions, *z.shape, generator=gen,
                                               dtype=torch.float64)]
    pairs = []
    with torch.no_grad():
        for d in dirs:
            fd = (loss(z + eps * d) - loss(z - eps * d)) / (2 * eps)
            pairs.append((float((grad * d).sum()), float(fd)))
    return pairs


def relative_error(pairs: list[tuple[float, float]]) -> float:
    """max |autograd - fd| over the directions, relative to the gradient's norm (the first
    direction's derivative)."""
    scale = abs(pairs[0][0])
    return max(abs(a - f) for a, f in pairs) / scale
