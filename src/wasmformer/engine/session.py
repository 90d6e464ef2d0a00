"""The transformer engines: an instance's execution as greedy decoding of the universal model.

A ``Session`` holds one instance's token stream (docs/PROTOCOL.md): the prompt (the
fused program and the instance's state when the session began), then per invocation the
header the engine writes (``CALL entry 00 00`` + the arguments, from the token machine's
``invocation``) and the trace the model generates, one token at a time, up to ``HALT``,
``EXIT code`` or ``TRAP reason payload``. The model's cache *is* the machine state, so later
invocations continue the same stream (a persistent instance).

Two engines share everything here and differ only in their ``decoders.Decoder``: ``torch``
(the torch module's KV cache) and ``fast`` (the fast decoder: hull-cached lookup heads, the
loop compiled with numba). Both read the same weights and give the same tokens.

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

from ..errors import BudgetExceeded, EngineRefusal, InputError
from ..graph import GraphError
from ..machine import vocab
from ..machine.detokenize import Outcome, detokenize, trap_message
from ..machine.fuse import FusedProgram
from ..machine.instance import HostLimits, Instance
from ..machine.prompt import prompt_tokens
from ..machine.reference import Deadline
from ..machine.runtime import MAX_PAGES, PAGE_SIZE, HostFunction
from ..machine.tokens import TokenMachine
from ..universal import Limits, supported
from . import models
from .coverage import Coverage
from .decoders import Decoder, FastDecoding, TorchDecoding
from .host import HostCalls, Splice
from .models import BUCKETS, bucket_for, engine_limits, fast_model, universal_model

HALT, EXIT, TRAP, CALL = (vocab.tok(n) for n in ("HALT", "EXIT", "TRAP", "CALL"))
ENDINGS = frozenset((HALT, EXIT, TRAP))
OUTPUT = frozenset(range(vocab.STDOUT, vocab.NAMED))  # out:XX and err:XX
# A decode call returns at each of these: output is streamed, and a CALL may be a host call
# (the engine splices it before the CALL enters the cache: host.py).
STOPS = ENDINGS | OUTPUT | {CALL}
ENGINES = ("torch", "fast")
MEMORY_RESERVE = 256 * 2**20  # bytes a stream leaves the machine (``Session.check_memory``)


def memory_available() -> int | None:
    """The machine's available memory in bytes (Linux: MemAvailable), None elsewhere."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class Invocation:
    """One invocation's tokens and what they mean."""

    tokens: list[int]  # the header, then the generated trace
    generated: int  # tokens the model generated
    outcome: Outcome  # detokenized: output, exit code, trap, results
    prefill_seconds: float  # up to the first decode call's return (the stream fed; the
    #                         fast engine generates up to 512 tokens in that call too)
    decode_seconds: float  # the rest of the invocation

    @property
    def seconds(self) -> float:
        return self.prefill_seconds + self.decode_seconds

    @property
    def ending(self) -> str:
        """'halt', 'exit' or 'trap'."""
        if self.outcome.trap is not None:
            return "trap"
        return "halt" if self.tokens[-1] == HALT else "exit"


class Session:
    """One instance's token stream on the universal model, decoded by ``engine``."""

    def __init__(self, instance: Instance, *, engine: str = "torch", dtype: str = "float64",
                 device: str | None = None, sparse: bool | None = None):
        if engine not in ENGINES:
            raise InputError(f"unknown transformer engine {engine!r} ({', '.join(ENGINES)})")
        self.engine = engine
        self.machine = TokenMachine(instance)  # the fused program and the invocation tokens
        self.fused = self.machine.fused
        # The device: WASMFORMER_DEVICE (default cpu). Sparse weights pay on a CPU only.
        self.device = device or os.environ.get("WASMFORMER_DEVICE", "cpu")
        if engine == "fast" and (self.device != "cpu" or dtype != "float64"):
            raise InputError("the fast engine runs float64 on the CPU")
        self.dtype = dtype
        self.sparse = self.device == "cpu" if sparse is None else sparse
        self.coverage = Coverage(self.fused, supported(self.fused) + _host_problems(instance,
                                                                                  self.fused))
        # every bucket has the same limits but max_len (memory, call depth, pcs)
        self.limits = limits = engine_limits(BUCKETS[-1])
        try:
            limits.check(self.fused, 0)
        except GraphError as exc:
            raise EngineRefusal(f"the {engine} engine cannot execute this program: {exc}") from None
        self.notes = memory_notes(instance, self.fused, limits, engine)
        self.stream = prompt_tokens(instance, self.fused, self.machine.func_index)
        self.prompt_length = len(self.stream)
        self.instance = instance
        self.decoder: Decoder | None = None
        self.host: HostCalls | None = None  # made at the first host call (it reads the model)
        self.cut = ""  # why the stream can no longer continue (a budget stop)

    def rewind(self) -> None:
        """Drop every invocation: the stream is the prompt again, whose cache is kept where
        the decoder can (the same tokens give the same keys and values). The result is a
        fresh session on the state the prompt describes, exact only while the instance's
        state (memory, globals, tables) is still that state: the caller vouches for it."""
        del self.stream[self.prompt_length:]
        if self.decoder is not None:
            self.decoder.truncate(self.prompt_length)
        if self.host is not None:
            self.host.view.reset()
        self.cut = ""

    @property
    def scans(self) -> int | None:
        """The fast engine: lookups the hulls could not certify (answered by a scan)."""
        return getattr(self.decoder, "scans", None)

    @property
    def margin(self) -> float | None:
        """The fast engine: the smallest certified gap between a lookup's winning score and
        every other key's, over the stream so far."""
        return getattr(self.decoder, "margin", None)

    # --- one invocation ---

    def invoke(self, name: str, args: Sequence = (), *, max_tokens: int | None = None,
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
            raise EngineRefusal(f"the {self.engine} engine cannot execute this program yet: "
                                f"{problems[0]}{more}")
        self._check_room(len(header), max_tokens)
        self.stream.extend(header)
        # the model loaded (or built) before the clock starts; with a token budget, the
        # bucket that holds it (_check_room: one exists), so the stream is fed once
        self.fit(len(self.stream) + (max_tokens or 0))
        start = time.perf_counter()
        run = _Run(self, max_tokens, deadline, on_output)
        generated = run.until_the_end()
        tokens = header + generated
        outcome = detokenize(tokens, callee.results)
        if outcome.trap is not None:
            outcome.trap = trap_message(outcome.trap, self.fused.code)
            outcome.trap += self._depth_note(outcome.trap)
        end = time.perf_counter()
        first = run.first_at or end
        return Invocation(tokens, len(generated) - run.spliced, outcome, first - start,
                          end - first)

    def _depth_note(self, trap: str) -> str:
        """Why a call-depth trap came sooner than the host's limit: the model's frames."""
        frames = self.limits.call_depth_limit
        if trap != "call stack exhausted" or self.instance.limits.max_call_depth <= frames:
            return ""
        return (f" (the {self.engine} engine's model holds {frames} frames; the host allows "
                f"{self.instance.limits.max_call_depth:,})")

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

    def host_call(self) -> Splice | None:
        """The model just wrote a CALL (not yet in the cache): if it starts a host call, the
        tokens that replace it (host.py), else None."""
        decoder = self.decoder
        assert decoder is not None and decoder.length == len(self.stream) - 1
        if self.host is None:
            code_start = self.stream.index(vocab.tok("CODE")) + 4  # section token, count(3)
            self.host = HostCalls(self.instance, self.fused, self.machine, code_start)
        return self.host.splice(decoder)

    def check_memory(self, positions: int) -> None:
        """Stop (as a budget does) before the decoder's caches would take the machine's
        last ``MEMORY_RESERVE`` bytes: a runaway program on a long model ends with a message,
        not the kernel's OOM kill."""
        need = self.decoder.memory_needed(positions) if self.decoder is not None else 0
        available = memory_available() if need else None
        if available is not None and available - need < MEMORY_RESERVE:
            self.stop(f"memory: {len(self.stream):,} positions decoded; going on needs "
                      f"~{need / 2**20:,.0f} MiB more and {available / 2**20:,.0f} MiB are "
                      "available (the fast engine keeps ~2.2 KB per position)")

    def stop(self, message: str) -> None:
        self.cut = message
        raise BudgetExceeded(message)

    # --- the model and its cache ---

    def generate(self, limit: int, stops: frozenset[int]) -> list[int]:
        """Feed the stream's tokens not yet in the cache, then generate up to ``limit``
        tokens (a stop token ends them), never past the positions the model is proven for."""
        decoder = self.fit(len(self.stream))
        room = decoder.max_len - len(self.stream) + 1  # the last one is not fed
        new = decoder.decode(self.stream[decoder.length:], min(limit, room), stops)
        self.stream.extend(new)
        return new

    def fit(self, positions: int) -> Decoder:
        """A decoder proven for ``positions``: move to a larger bucket if needed."""
        if self.decoder is not None and positions <= self.decoder.max_len:
            return self.decoder
        buckets = models.engine_buckets(self.engine)
        bucket = bucket_for(positions, buckets)
        if bucket is None:
            self.stop(f"the stream reached {positions:,} tokens, more than the "
                      f"{buckets[-1]:,} positions the universal model is proven exact for")
        self.decoder = None  # the old bucket's caches go before the new model loads
        if self.engine == "fast":  # it reads the dense weights; it has its own sparsity
            self.decoder = FastDecoding(universal_model(bucket))
        else:
            choose = fast_model if self.sparse else universal_model
            self.decoder = TorchDecoding(choose(bucket, self.dtype, self.device))
        return self.decoder  # the larger model reads the whole stream again


def reference_limits() -> HostLimits:
    """The reference machine's limits that the engines' model agrees with (its call depth
    and memory cap): a token machine run with them is what an engine must reproduce."""
    limits = engine_limits(BUCKETS[-1])
    return HostLimits(max_call_depth=limits.call_depth_limit,
                      max_memory_pages=limits.memory_page_limit)


TorchSession = Session  # its first name: the torch engine's session


def _host_problems(instance: Instance, fused) -> list[str]:
    """Imports the engine cannot call (coverage's form: ``pc N: ...``): a function of
    another instance (its code is not in this prompt), and any function a ``call_indirect``
    could reach through a table (the engine splices direct calls of imports only)."""
    imported = fused.program.module.num_imported_funcs
    in_tables = any(isinstance(e, HostFunction) for t in instance.tables for e in t.elems)
    problems = []
    for pc, fi in enumerate(fused.code):
        if (fi.op == "call" and fi.args[0] < imported
                and not isinstance(instance.functions[fi.args[0]], HostFunction)):
            problems.append(f"pc {pc}: call of another instance's function")
        elif fi.op == "call_indirect" and in_tables:
            problems.append(f"pc {pc}: call_indirect with a host function in a table")
    return problems


def memory_notes(instance: Instance, fused: FusedProgram, limits: Limits,
                 engine: str) -> list[str]:
    """What the model's memory cap means for this program (a note for the user), or a
    refusal where the model cannot agree with the host.

    The model grows memory up to min(the module's maximum, ``Limits.memory_page_limit``)
    pages (universal/memsize.py). A host allowing fewer pages than that cannot be told to
    the model (it is not in the prompt): refused. A host allowing more (wasmtime and the
    reference engine: 16,384 pages by default) would let a grow succeed that the model
    refuses: noted, since the outputs may then differ."""
    memory = instance.memory
    if memory is None or not any(fi.op == "memory.grow" for fi in fused.code):
        return []
    cap = limits.memory_page_limit
    if memory.pages > cap:
        raise EngineRefusal(f"the {engine} engine cannot execute this program: memory of "
                            f"{memory.pages} pages, over the model's {cap} (Limits.mem_bits)")
    declared = MAX_PAGES if memory.max_pages is None else memory.max_pages
    model = min(declared, cap)
    if memory.host_limit_pages < model:
        raise EngineRefusal(f"the {engine} engine grows memory up to {model} pages and cannot "
                            f"be given a lower host limit ({memory.host_limit_pages} pages)")
    allowed = min(declared, memory.host_limit_pages)
    if allowed <= cap:
        return []
    return [f"the {engine} engine caps memory.grow at {cap} pages ({cap * PAGE_SIZE:,} bytes, "
            f"Limits.mem_bits {limits.mem_bits}: the model's memory keys); this program may "
            f"grow to {allowed:,} pages elsewhere (wasmtime, the reference engine): a grow "
            f"past {cap} returns -1 here"]


class _Run:
    """One invocation's generation: decode calls up to the ending and its payload, with the
    token budget and the deadline checked between calls and output streamed."""

    def __init__(self, session: Session, max_tokens: int | None, deadline: Deadline | None,
                 on_output: Callable[[int, bytes], None] | None):
        self.session = session
        self.max_tokens = max_tokens
        self.deadline = deadline
        self.on_output = on_output
        self.generated: list[int] = []
        self.spliced = 0  # tokens the engine wrote for host calls (the rest: the model's)
        self.first_at: float | None = None

    def until_the_end(self) -> list[int]:
        """Generate up to an ending marker, then its payload (EXIT: 4 bytes; TRAP: the
        reason, then the reason's own payload); host calls are spliced on the way."""
        while not self.generated or self.generated[-1] not in ENDINGS:
            self._more(1 << 30, STOPS)
            if self.generated[-1] == CALL and self._splice():
                return self.generated
        if self.generated[-1] == EXIT:
            self._exactly(4)
        elif self.generated[-1] == TRAP:
            self._exactly(1)
            self._exactly(vocab.trap_payload(self.generated[-1]))
        return self.generated

    def _splice(self) -> bool:
        """At a CALL: if it starts a host call, replace it by the host call's tokens
        (streaming their output). Returns True when they end the invocation."""
        splice = self.session.host_call()
        if splice is None:
            return False
        self.session.stream.pop()  # the model's CALL: never fed to the cache
        self.generated.pop()
        self.session.stream.extend(splice.tokens)
        self.generated.extend(splice.tokens)
        self.spliced += len(splice.tokens) - 1
        self._emit(splice.tokens)
        return splice.ends

    def _exactly(self, count: int) -> None:
        while count > 0:
            count -= len(self._more(count, frozenset()))

    def _more(self, limit: int, stops: frozenset[int]) -> list[int]:
        session, done = self.session, len(self.generated)
        if self.max_tokens is not None and done >= self.max_tokens:
            session.stop(f"token budget of {self.max_tokens:,} exhausted (trace tokens "
                         "generated)")
        if self.deadline is not None and time.monotonic() > self.deadline.at:
            session.stop(f"wall-clock budget of {self.deadline.seconds:g} s exhausted after "
                         f"{done:,} tokens")
        chunk = session.fit(len(session.stream)).chunk
        if self.max_tokens is not None:
            chunk = min(chunk, self.max_tokens - done)
        session.check_memory(len(session.stream) + chunk)
        new = session.generate(min(limit, chunk), stops)
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.generated.extend(new)
        self._emit(new)
        return new

    def _emit(self, tokens: list[int]) -> None:
        """Hand output tokens to the caller as they come."""
        if self.on_output is None:
            return
        for token in tokens:
            out = vocab.output_byte(token)
            if out is not None:
                self.on_output(out[0], bytes([out[1]]))
