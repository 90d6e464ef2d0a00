"""The Python API: ``load`` a program into an instance, ``run`` a WASI program.

Both take a path (.c/.wat/.wasm), C or .wat source text, or wasm bytes. The
``engine`` argument picks the executor; every engine must give the same
results. ``reference`` (the default): the reference machine. ``torch``: the universal
transformer (``wasmformer.engine``) generates the trace greedily with its KV cache;
``fast``: the same weights decoded by the fast decoder (hull-cached lookup heads, compiled
loop). The transformer engines refuse (``EngineRefusal``), before generating anything, a
program their graph does not cover yet.

Resource limits: ``max_steps`` (executed instructions, reference engine), ``max_tokens``
(generated trace tokens, transformer engines) and ``timeout`` (wall-clock seconds, counted from
instantiation) stop a run with ``BudgetExceeded``; ``limits`` (``machine.HostLimits``)
bounds memory pages, table elements and call depth.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from . import machine
from .engine import Invocation, Session
from .errors import InputError, Trap
from .machine import Deadline, HostLimits
from .machine.prompt import MAX_PROMPT_TOKENS, prompt_tokens
from .machine.tokens import TokenMachine, Trace
from .toolchain import program_bytes
from .wasm import load_module

ENGINES = ("reference", "torch", "fast")
TRANSFORMER_ENGINES = ("torch", "fast")  # the engines that decode the universal model
PLANNED_ENGINES: tuple[str, ...] = ()

Program = str | bytes | os.PathLike


def _check_engine(engine: str) -> None:
    if engine in ENGINES:
        return
    if engine in PLANNED_ENGINES:
        raise InputError(f"engine '{engine}' is not available yet (available: {', '.join(ENGINES)})")
    raise InputError(f"unknown engine '{engine}' (available: {', '.join(ENGINES)})")


def _deadline(timeout: float | None) -> Deadline | None:
    if timeout is None:
        return None
    if not timeout > 0:
        raise InputError(f"timeout must be a positive number of seconds, not {timeout}")
    return Deadline.after(timeout)


class Instance:
    """An instantiated module whose state (memory, globals, tables) persists across calls.

    ``max_steps`` bounds the start function (if the module has one); ``timeout`` is a
    wall-clock budget, from now, for everything the instance runs (its start function,
    then every ``invoke`` that gives no timeout of its own).
    """

    def __init__(self, program: Program, *, host: machine.WasiHost | None = None,
                 limits: HostLimits | None = None, max_steps: int | None = None,
                 timeout: float | None = None):
        resolved = program_bytes(program)
        self.name = resolved.name
        self.module = load_module(resolved.wasm)
        self._machine = machine.Instance(self.module, host=host, limits=limits or HostLimits(),
                                         max_steps=max_steps, deadline=_deadline(timeout))
        self._session: Session | None = None  # the token stream, once a transformer ran

    def invoke(
        self,
        export_name: str,
        args: Sequence[int] = (),
        *,
        engine: str = "reference",
        max_steps: int | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
    ) -> list:
        """Call an exported function; returns its results (i32/i64 as signed ints).

        ``engine="torch"`` or ``"fast"`` continues this instance's token stream (the
        model's cache holds the state), so every later invocation must use that engine too."""
        _check_engine(engine)
        if engine in TRANSFORMER_ENGINES:
            if max_steps is not None:
                raise InputError(f"max_steps bounds the reference engine; the {engine} "
                                 "engine's budget is max_tokens")
            ended = self.invoke_tokens(export_name, args, engine=engine, max_tokens=max_tokens,
                                       timeout=timeout)
            if ended.outcome.trap is not None:
                raise Trap(ended.outcome.trap)
            if ended.ending == "exit":
                raise machine.ProcExit(ended.outcome.exit_code or 0)
            return ended.outcome.results
        if self._session is not None:
            raise self._mixed()
        if max_tokens is not None:
            raise InputError("max_tokens bounds the torch and fast engines; the reference "
                             "engine's budget is max_steps")
        return self._machine.invoke(export_name, list(args), max_steps=max_steps,
                                    deadline=_deadline(timeout))

    def invoke_tokens(self, export_name: str, args: Sequence[int] = (), *,
                      engine: str = "torch", max_tokens: int | None = None,
                      timeout: float | None = None,
                      on_output: Callable[[int, bytes], None] | None = None) -> Invocation:
        """An invocation on a transformer engine (``torch`` or ``fast``), with its tokens:
        the header and the generated trace. ``on_output(fd, data)`` receives output bytes
        as they are generated."""
        if engine not in TRANSFORMER_ENGINES:
            raise InputError(f"engine '{engine}' generates no tokens (the transformer engines: "
                             f"{', '.join(TRANSFORMER_ENGINES)})")
        if self._session is None:  # the prompt holds the state the instance has now
            self._session = Session(self._machine, engine=engine)
        elif self._session.engine != engine:
            raise self._mixed()
        deadline = _deadline(timeout) or self._machine.deadline
        return self._session.invoke(export_name, list(args), max_tokens=max_tokens,
                                    deadline=deadline, on_output=on_output)

    def invoke_torch(self, export_name: str, args: Sequence[int] = (), **options) -> Invocation:
        """``invoke_tokens`` on the torch engine."""
        return self.invoke_tokens(export_name, args, engine="torch", **options)

    @property
    def session(self) -> Session | None:
        """The token stream, once a transformer engine has run (its statistics)."""
        return self._session

    def _mixed(self) -> InputError:
        engine = self._session.engine if self._session is not None else "?"
        return InputError(f"this instance ran on the {engine} engine, whose token stream holds "
                          f"its state: invoke it with engine='{engine}', or load it again")

    @property
    def instructions(self) -> int:
        """WebAssembly instructions executed so far, counted as wasmtime's fuel counts them."""
        return self._machine.instructions


def load(program: Program, *, limits: HostLimits | None = None) -> Instance:
    """Load a module (no WASI world attached beyond what it imports): see ``Instance``."""
    return Instance(program, host=machine.WasiHost(), limits=limits)


@dataclass(frozen=True)
class RunResult:
    stdout: bytes
    stderr: bytes
    exit_code: int
    instructions: int | None  # None for the transformer engines (they count tokens)
    seconds: float
    tokens: int | None = None  # trace tokens (header and generated): transformer engines
    trap: str | None = None  # the trap reason, when the program trapped (exit code 134)
    prompt_tokens: int | None = None  # transformer engines: the prompt's length
    decode_seconds: float | None = None  # transformer engines: feeding and generating
    generated: int | None = None  # transformer engines: tokens the model generated
    scans: int | None = None  # fast engine: lookups the hulls could not certify
    margin: float | None = None  # fast engine: the smallest certified winning-score gap
    notes: tuple[str, ...] = ()  # transformer engines: where they may differ (memory cap)


def run(
    program: Program,
    *,
    engine: str = "fast",
    max_steps: int | None = None,
    max_tokens: int | None = None,
    timeout: float | None = None,
    limits: HostLimits | None = None,
    on_stdout: Callable[[bytes], None] | None = None,
    on_stderr: Callable[[bytes], None] | None = None,
) -> RunResult:
    """Run a WASI program's ``_start`` to completion.

    ``on_stdout``/``on_stderr`` receive output bytes as they are written
    (for streaming; a transformer engine: as it generates them); the result also holds
    all of it. A trap returns ``exit_code=134`` with ``trap`` set; a budget overrun
    (``max_steps`` instructions, ``max_tokens`` generated tokens, ``timeout`` seconds)
    raises BudgetExceeded.
    """
    _check_engine(engine)
    out, err = bytearray(), bytearray()

    def write_out(data: bytes) -> None:
        out.extend(data)
        if on_stdout:
            on_stdout(data)

    def write_err(data: bytes) -> None:
        err.extend(data)
        if on_stderr:
            on_stderr(data)

    host = machine.WasiHost(stdout=write_out, stderr=write_err)
    start = time.perf_counter()
    instance = None
    trap = None
    if engine in TRANSFORMER_ENGINES:
        return _run_tokens(program, engine, max_steps, max_tokens, timeout, limits, host,
                           start)
    if max_tokens is not None:
        raise InputError("max_tokens bounds the torch and fast engines; the reference "
                         "engine's budget is max_steps")
    try:
        instance = Instance(program, host=host, limits=limits, max_steps=max_steps,
                            timeout=timeout)
        _check_start(instance)
        instance.invoke("_start", max_steps=max_steps)  # under the instance's timeout
        exit_code = 0
    except machine.ProcExit as exc:
        exit_code = exc.code
    except Trap as exc:
        exit_code, trap = Trap.exit_code, exc.reason
    return RunResult(
        stdout=bytes(out),
        stderr=bytes(err),
        exit_code=exit_code,
        instructions=instance.instructions if instance is not None else 0,
        seconds=time.perf_counter() - start,
        trap=trap,
    )


def _check_start(instance: Instance) -> None:
    if "_start" not in {e.name for e in instance.module.exports if e.kind == "func"}:
        raise InputError(f"{instance.name}: no exported _start function to run")


def _run_tokens(program: Program, engine: str, max_steps: int | None, max_tokens: int | None,
                timeout: float | None, limits: HostLimits | None, host: machine.WasiHost,
                start: float) -> RunResult:
    """``run`` on a transformer engine: ``_start`` as generated tokens (the start function,
    if the module has one, runs on the reference machine at instantiation: its effects are
    in the prompt)."""
    try:
        instance = Instance(program, host=host, limits=limits, max_steps=max_steps,
                            timeout=timeout)
    except Trap as exc:
        return RunResult(b"", b"", Trap.exit_code, None, time.perf_counter() - start,
                         trap=exc.reason)
    _check_start(instance)
    write = {1: host.write_stdout, 2: host.write_stderr}
    ended = instance.invoke_tokens("_start", engine=engine, max_tokens=max_tokens,
                                   on_output=lambda fd, data: write[fd](data))
    outcome, session = ended.outcome, instance.session
    assert session is not None
    return RunResult(outcome.stdout, outcome.stderr, outcome.exit_code or 0, None,
                     time.perf_counter() - start, tokens=len(ended.tokens), trap=outcome.trap,
                     prompt_tokens=session.prompt_length, decode_seconds=ended.seconds,
                     generated=ended.generated, scans=session.scans, margin=session.margin,
                     notes=tuple(session.notes))


@dataclass(frozen=True)
class TraceResult:
    """A WASI program's run as the token protocol writes it (docs/PROTOCOL.md)."""

    prompt: list[int]  # the prompt's tokens: the fused program and the initial state
    trace: Trace | None  # the trace (tokens, steps); None when instantiation trapped
    stdout: bytes
    stderr: bytes
    exit_code: int
    instructions: int
    seconds: float
    trap: str | None = None
    budget: str | None = None  # the message when the step budget ran out (the trace is cut)

    @property
    def tokens(self) -> int:
        """Trace tokens (the prompt excluded)."""
        return len(self.trace.tokens) if self.trace is not None else 0


def trace(program: Program, *, max_steps: int | None = None, timeout: float | None = None,
          limits: HostLimits | None = None,
          max_prompt_tokens: int = MAX_PROMPT_TOKENS) -> TraceResult:
    """Run a WASI program's ``_start`` on the reference token machine: its prompt and trace.

    Unlike ``run``, an exhausted budget (steps or ``timeout`` seconds) does not raise:
    the result holds the trace so far and ``budget`` says why it stopped. A module
    whose prompt exceeds ``max_prompt_tokens`` is refused (LinkError).
    """
    out, err = bytearray(), bytearray()
    host = machine.WasiHost(stdout=out.extend, stderr=err.extend)
    start = time.perf_counter()
    try:
        instance = Instance(program, host=host, limits=limits, max_steps=max_steps,
                            timeout=timeout)
    except Trap as exc:
        return TraceResult([], None, b"", b"", Trap.exit_code, 0, time.perf_counter() - start,
                           trap=exc.reason)
    _check_start(instance)
    tm = TokenMachine(instance._machine, host)
    prompt = prompt_tokens(instance._machine, tm.fused, tm.func_index, max_prompt_tokens)
    t = tm.invoke("_start", max_steps=max_steps)
    exit_code = {"halt": 0, "exit": t.exit_code, "trap": Trap.exit_code}.get(t.outcome, 0)
    return TraceResult(prompt, t, bytes(out), bytes(err), exit_code or 0,
                       instance._machine.last_instructions, time.perf_counter() - start,
                       trap=t.trap, budget=t.budget_message or None)


def _run_one(program: Program, options: dict) -> RunResult | str:
    """``run`` in a worker process: its result, or the error's one line."""
    from .errors import WasmformerError

    try:
        return run(program, **options)
    except WasmformerError as exc:
        return f"{type(exc).__name__}: {exc}"


def run_many(programs: Sequence[Program], *, jobs: int | None = None,
             **options) -> list[RunResult | str]:
    """``run`` every program (with the same ``options``: engine, budgets, limits) in a pool
    of ``jobs`` processes (default: one per CPU); the results in the programs' order, an
    error as its one-line message (``"BudgetExceeded: ..."``) in its program's place."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if jobs is not None and jobs < 1:
        raise InputError(f"jobs must be positive, not {jobs}")
    programs = list(programs)
    if not programs:
        return []
    workers = min(jobs or os.cpu_count() or 1, len(programs))
    context = multiprocessing.get_context("spawn")  # torch and numba do not survive fork
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        return list(pool.map(_run_one, programs, [options] * len(programs)))
