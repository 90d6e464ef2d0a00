"""The torch engine: an instance's execution as greedy decoding of the universal model.

A ``TorchSession`` holds one instance's token stream (docs/PROTOCOL.md): the prompt (the
fused program and the instance's state when the session began), then per invocation the
header the engine writes (``CALL entry 00 00`` + the arguments, from the token machine's
``invocation``) and the trace the model generates, one token at a time with the model's
KV cache, up to ``HALT``, ``EXIT code`` or ``TRAP reason payload``. The KV cache *is* the
machine state, so later invocations continue the same stream (a persistent instance).

Refusals come before any token is generated (``EngineRefusal``): an invocation that may
reach an instruction the universal graph does not cover (``universal.supported``, through
``coverage``: the first such instruction is named; host calls are among them), a program
over the graph's limits, or a stream that leaves no room in the largest proven bucket. The stream moves to a larger bucket (a model proven for
more positions) when it outgrows its model, by feeding the stream so far into the larger
model's cache: the same tokens, so the same state. Budgets (``max_tokens`` generated tokens,
a wall-clock deadline, the largest proven bucket) stop a run with ``BudgetExceeded``; the
stream is then cut mid-instruction and the session refuses further invocations.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import BudgetExceeded, EngineRefusal, InputError
from ..graph import GraphError
from ..machine import vocab
from ..machine.detokenize import Outcome, detokenize, trap_message
from ..machine.instance import Instance
from ..machine.prompt import prompt_tokens
from ..machine.reference import Deadline
from ..machine.tokens import TokenMachine
from ..model import Transformer
from ..universal import Limits, supported
from .coverage import Coverage
from .models import BUCKETS, bucket_for, fast_model, universal_model

HALT, EXIT, TRAP = vocab.tok("HALT"), vocab.tok("EXIT"), vocab.tok("TRAP")
PREFILL_CHUNK = 1024  # positions fed per forward pass when filling the cache


@dataclass
class Invocation:
    """One invocation's tokens and what they mean."""

    tokens: list[int]  # the header, then the generated trace
    generated: int  # tokens the model generated
    outcome: Outcome  # detokenized: output, exit code, trap, results
    prefill_seconds: float
    decode_seconds: float

    @property
    def ending(self) -> str:
        """'halt', 'exit' or 'trap'."""
        if self.outcome.trap is not None:
            return "trap"
        return "halt" if self.tokens[-1] == HALT else "exit"


class TorchSession:
    """One instance's token stream on the universal model."""

    def __init__(self, instance: Instance, *, dtype: str = "float64", device: str | None = None,
                 sparse: bool | None = None):
        self.machine = TokenMachine(instance)  # the fused program and the invocation tokens
        self.fused = self.machine.fused
        # The device: WASMFORMER_DEVICE (default cpu). Sparse weights pay on a CPU only.
        self.device = device or os.environ.get("WASMFORMER_DEVICE", "cpu")
        self.dtype = dtype
        self.sparse = self.device == "cpu" if sparse is None else sparse
        self.coverage = Coverage(self.fused, supported(self.fused))
        try:
            Limits(max_len=BUCKETS[-1]).check(self.fused, 0)
        except GraphError as exc:
            raise EngineRefusal(f"the torch engine cannot execute this program: {exc}") from None
        self.stream = prompt_tokens(instance, self.fused, self.machine.func_index)
        self.prompt_length = len(self.stream)
        self.model: Transformer | None = None
        self.cache = None
        self.fed = 0  # tokens of the stream in the cache
        self.cut = ""  # why the stream can no longer continue (a budget stop)

    def rewind(self) -> None:
        """Drop every invocation: the stream is the prompt again, whose cache is kept (the
        same tokens give the same keys and values). The result is a fresh session on the
        state the prompt describes, exact only while the instance's state (memory, globals,
        tables) is still that state: the caller vouches for it."""
        del self.stream[self.prompt_length:]
        self.fed = min(self.fed, self.prompt_length)
        self.cut = ""

    # --- one invocation ---

    def invoke(self, name: str, args: Sequence[Any] = (), *, max_tokens: int | None = None,
               deadline: Deadline | None = None,
               on_output: Callable[[int, bytes], None] | None = None) -> Invocation:
        """Write the invocation's header, generate its trace, decode it. ``on_output(fd, data)``
        receives output bytes as they are generated."""
        if self.cut:
            raise EngineRefusal(f"this instance's token stream was cut ({self.cut}); load the "
                                "program again")
        if max_tokens is not None and max_tokens < 1:
            raise InputError(f"max_tokens must be positive, not {max_tokens}")
        callee, header = self.machine.invocation(name, args)
        if len(args) != len(callee.params):
            raise InputError(f"{name} takes {len(callee.params)} argument(s), got {len(args)}")
        problems = self.coverage.uncovered(callee.index)
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise EngineRefusal(f"the torch engine cannot execute this program yet: "
                                f"{problems[0]}{more}")
        self._check_room(len(header), max_tokens)
        self.stream.extend(header)
        start = time.perf_counter()
        logits = self._feed_pending()
        prefilled = time.perf_counter()
        generated = self._decode(logits, max_tokens, deadline, on_output)
        tokens = header + generated
        outcome = detokenize(tokens, callee.results)
        if outcome.trap is not None:
            outcome.trap = trap_message(outcome.trap, self.fused.code)
        return Invocation(tokens, len(generated), outcome, prefilled - start,
                          time.perf_counter() - prefilled)

    def _check_room(self, header: int, max_tokens: int | None) -> None:
        """Refuse a stream that cannot fit the largest proven bucket."""
        need = len(self.stream) + header + (max_tokens or 1)
        if bucket_for(need) is None:
            what = (f"prompt {self.prompt_length:,} tokens"
                    + (f", earlier invocations {len(self.stream) - self.prompt_length:,}"
                       if len(self.stream) > self.prompt_length else "")
                    + f", this invocation's header {header}"
                    + (f", token budget {max_tokens:,}" if max_tokens else ""))
            raise EngineRefusal(f"the stream needs {need:,} positions ({what}); the universal "
                                f"model is proven exact for at most {BUCKETS[-1]:,}")

    def _decode(self, logits: torch.Tensor, max_tokens: int | None, deadline: Deadline | None,
                on_output: Callable[[int, bytes], None] | None) -> list[int]:
        """Greedy decoding up to the end of the invocation (its last token is not fed yet)."""
        generated: list[int] = []
        left = -1  # payload tokens still to come after an ending marker (-1: not ended)
        while left != 0:
            if max_tokens is not None and len(generated) >= max_tokens:
                self._stop(f"token budget of {max_tokens:,} exhausted (trace tokens generated)")
            if deadline is not None and time.monotonic() > deadline.at:
                self._stop(f"wall-clock budget of {deadline.seconds:g} s exhausted after "
                           f"{len(generated):,} tokens")
            token = int(logits.argmax())
            generated.append(token)
            self.stream.append(token)
            if left > 0:  # a payload token; a trap reason announces a payload of its own
                after_trap = len(generated) >= 2 and generated[-2] == TRAP
                left = vocab.trap_payload(token) if after_trap else left - 1
            else:
                left = _payload(token)
            if on_output is not None and vocab.STDOUT <= token < vocab.NAMED:
                fd = 1 if token < vocab.STDERR else 2
                on_output(fd, bytes([token - (vocab.STDOUT if fd == 1 else vocab.STDERR)]))
            if left != 0:
                logits = self._feed_pending()
        return generated

    def _stop(self, message: str) -> None:
        self.cut = message
        raise BudgetExceeded(message)

    # --- the model and its cache ---

    def _feed_pending(self) -> torch.Tensor:
        """Feed the stream's tokens not yet in the cache; the logits after the last one."""
        self._fit(len(self.stream))
        assert self.model is not None
        device = self.model.lm_head.weight.device
        logits = None
        with torch.inference_mode():
            while self.fed < len(self.stream):
                chunk = self.stream[self.fed:self.fed + PREFILL_CHUNK]
                out = self.model.run(torch.tensor([chunk], device=device), self.fed, self.cache)
                logits = out[0, -1]
                self.fed += len(chunk)
        assert logits is not None
        return logits

    def _fit(self, positions: int) -> None:
        """Make sure the model is proven for ``positions``: move to a larger bucket if needed."""
        if self.model is not None and positions <= self.model.config.max_len:
            return
        bucket = bucket_for(positions)
        if bucket is None:
            self._stop(f"the stream reached {positions:,} tokens, more than the "
                       f"{BUCKETS[-1]:,} positions the universal model is proven exact for")
        choose = fast_model if self.sparse else universal_model
        self.model = choose(bucket, self.dtype, self.device)
        self.cache = self.model.new_cache()
        self.fed = 0  # the larger model reads the whole stream again


def _payload(token: int) -> int:
    """Tokens after ``token`` that still belong to the end of an invocation (-1: not an end)."""
    if token == HALT:
        return 0
    if token == EXIT:
        return 4
    if token == TRAP:
        return 1  # the reason (its own payload follows)
    return -1
