"""The ``wasmformer`` command line: run, trace, compile and check programs.

Every failure a user can cause ends in one line on stderr and a documented
exit code (see errors.py); a Python traceback means a bug in wasmformer.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console

from . import api
from . import dataset as datasets
from .engine import BUCKETS, universal_model
from .errors import BudgetExceeded, EngineRefusal, InputError, WasmformerError
from .machine import HostLimits
from .machine.runtime import MAX_PAGES
from .machine.tokens import trace_lines
from .model import save_model
from .toolchain import program_bytes
from .wasm import load_module

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="A transformer that executes WebAssembly programs in its own weights.",
)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

EXIT_INTERNAL = 70
# A runaway program stops here unless the user asks for more (minutes of reference execution).
DEFAULT_MAX_STEPS = 1_000_000_000


MAX_STEPS_OPTION = typer.Option(
    DEFAULT_MAX_STEPS,
    "--max-steps",
    help="Stop (exit 124) after this many executed instructions; 0 means no limit.",
)
MAX_TOKENS_OPTION = typer.Option(
    0, "--max-tokens", min=0,
    help="--engine torch/fast: stop (exit 124) after generating this many trace tokens; 0: "
         "up to the model's proven positions.",
)


def _check_max_steps(max_steps: int) -> None:
    if max_steps < 0:
        raise InputError(f"--max-steps must be 0 (no limit) or positive, not {max_steps}")


TIMEOUT_OPTION = typer.Option(
    0.0, "--timeout", min=0.0, metavar="SECONDS",
    help="Stop (exit 124) after this many seconds of execution; 0 means no limit.",
)
MEMORY_PAGES_OPTION = typer.Option(
    HostLimits.max_memory_pages, "--max-memory-pages", min=0, max=MAX_PAGES,
    help="Most 64 KiB memory pages a program may have; memory.grow beyond returns -1.",
)
CALL_DEPTH_OPTION = typer.Option(
    HostLimits.max_call_depth, "--max-call-depth", min=1,
    help="Deepest call nesting; deeper traps 'call stack exhausted'.",
)


def _fail(message: str, code: int) -> typer.Exit:
    err_console.print(message, markup=False)
    return typer.Exit(code)


def _write_stream(stream) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        stream.write(data)
        stream.flush()

    return write


def _write_atomically(target: Path, data: bytes | Callable[[Path], None]) -> None:
    """Write ``data`` (bytes, or a function writing a file) via a temporary file and a
    rename, so a failure never leaves a partial file."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            data(tmp)
        tmp.replace(target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {target}: {exc.strerror}") from None


@app.command()
def run(
    program: str = typer.Argument(..., help="PROG.c, PROG.wat or PROG.wasm (a WASI program)."),
    engine: str = typer.Option(
        "fast",
        help="Executor: fast (the default: the universal transformer's weights decoded with "
             "hull-cached attention), torch (the same model as a torch module, KV cache) or "
             "reference (the reference machine, no transformer). fast and torch refuse, "
             "before any token, what their model cannot hold (floats, more than 16 memory "
             "pages, streams over 2**23 tokens): run those with --engine reference."),
    max_steps: int = MAX_STEPS_OPTION,
    max_tokens: int = MAX_TOKENS_OPTION,
    timeout: float = TIMEOUT_OPTION,
    max_memory_pages: int = MEMORY_PAGES_OPTION,
    max_call_depth: int = CALL_DEPTH_OPTION,
    stats: bool = typer.Option(False, "--stats",
                               help="Print instructions or tokens, time and speed to stderr."),
) -> None:
    """Run a program; its stdout is printed byte for byte and its exit code returned."""
    _check_max_steps(max_steps)
    stdout = sys.stdout.buffer
    stderr = sys.stderr.buffer
    start = time.perf_counter()
    try:
        result = api.run(
            program,
            engine=engine,
            max_steps=max_steps or None,
            max_tokens=max_tokens or None,
            timeout=timeout or None,
            limits=HostLimits(max_call_depth=max_call_depth, max_memory_pages=max_memory_pages),
            on_stdout=_write_stream(stdout),
            on_stderr=_write_stream(stderr),
        )
    except BudgetExceeded as exc:
        raise _fail(str(exc), exc.exit_code) from None
    except EngineRefusal as exc:  # say what still runs it
        raise _fail(f"{exc} (--engine reference runs it on the reference machine)",
                    exc.exit_code) from None
    if result.trap is not None:
        err_console.print(f"trap: {result.trap}", markup=False)
    for note in result.notes:
        err_console.print(f"note: {note}", markup=False)
    if stats:
        _print_stats(engine, result, time.perf_counter() - start)
    raise typer.Exit(result.exit_code)


def _print_stats(engine: str, result: api.RunResult, seconds: float) -> None:
    if result.tokens is not None:  # a transformer engine: tokens, not instructions
        decode = result.decode_seconds or 0.0
        positions = (result.prompt_tokens or 0) + result.tokens
        rate = positions / decode if decode > 0 else 0.0
        line = (f"engine={engine} prompt={result.prompt_tokens} tokens={result.tokens} "
                f"generated={result.generated} wall={seconds:.3f}s decode={decode:.3f}s "
                f"speed={rate:,.1f} tokens/s")
        if result.scans is not None:
            margin = "none" if result.margin is None else f"{result.margin:g}"
            line += f" scans={result.scans} min_margin={margin}"
    else:
        rate = (result.instructions or 0) / result.seconds if result.seconds > 0 else 0.0
        line = (f"engine={engine} instructions={result.instructions} wall={seconds:.3f}s "
                f"run={result.seconds:.3f}s speed={rate:,.0f} instr/s")
    err_console.print(f"{line} exit={result.exit_code}", markup=False)


@app.command()
def batch(
    programs: list[str] = typer.Argument(..., help="WASI programs (.c, .wat, .wasm)."),
    engine: str = typer.Option("fast", help="Executor: fast, torch or reference."),
    jobs: int = typer.Option(0, "--jobs", "-j", min=0,
                             help="Worker processes; 0: one per CPU."),
    max_steps: int = MAX_STEPS_OPTION,
    max_tokens: int = MAX_TOKENS_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    """Run several programs at once over the CPUs (a process pool).

    Per program, in order: its stdout, then one line on stderr (name, exit code, time,
    tokens or instructions, or why it did not run). Exit code: 0 when every program ran and
    exited 0, else the first non-zero one (a refusal or budget stop counts as its code).
    """
    _check_max_steps(max_steps)
    if engine not in api.ENGINES:
        raise InputError(f"unknown engine '{engine}' (available: {', '.join(api.ENGINES)})")
    start = time.perf_counter()
    results = api.run_many(programs, jobs=jobs or None, engine=engine,
                           max_steps=max_steps or None, max_tokens=max_tokens or None,
                           timeout=timeout or None)
    code = 0
    for name, result in zip(programs, results, strict=True):
        if isinstance(result, str):
            err_console.print(f"{name}: {result}", markup=False)
            code = code or (124 if result.startswith("BudgetExceeded") else 2)
            continue
        sys.stdout.buffer.write(result.stdout)
        sys.stdout.flush()
        work = (f"tokens={result.tokens}" if result.tokens is not None
                else f"instructions={result.instructions}")
        err_console.print(f"{name}: exit={result.exit_code} {work} run={result.seconds:.3f}s"
                          + (f" trap: {result.trap}" if result.trap else ""), markup=False)
        code = code or result.exit_code
    err_console.print(f"batch: {len(programs)} programs in {time.perf_counter() - start:.2f} s "
                      f"({engine}, {jobs or os.cpu_count()} jobs)", markup=False)
    raise typer.Exit(code)


@app.command()
def trace(
    program: str = typer.Argument(..., help="PROG.c, PROG.wat or PROG.wasm (a WASI program)."),
    max_steps: int = MAX_STEPS_OPTION,
    timeout: float = TIMEOUT_OPTION,
    max_memory_pages: int = MEMORY_PAGES_OPTION,
    max_call_depth: int = CALL_DEPTH_OPTION,
    output: Path = typer.Option(None, "-o", "--output", help="Write the trace here (default: stdout)."),
) -> None:
    """Print a program's token trace: one executed fused instruction per line (docs/PROTOCOL.md).

    Each line: step, fused pc, the WebAssembly instructions it came from, and its
    trace tokens by name. The program's output is in the trace (out:/err: tokens);
    the exit code is the program's, as with `run`.
    """
    _check_max_steps(max_steps)
    result = api.trace(program, max_steps=max_steps or None, timeout=timeout or None,
                       limits=HostLimits(max_call_depth=max_call_depth,
                                         max_memory_pages=max_memory_pages))
    lines = trace_lines(result.trace) if result.trace is not None else []
    if output is None:
        for line in lines:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
    elif result.budget is None:  # a budget stop leaves no partial trace file behind
        _write_atomically(output, "".join(line + "\n" for line in lines).encode())
    if result.budget is not None:
        raise _fail(result.budget, BudgetExceeded.exit_code)
    if result.trap is not None:
        err_console.print(f"trap: {result.trap}", markup=False)
    per = result.tokens / result.instructions if result.instructions else 0.0
    err_console.print(
        f"steps={len(result.trace.pcs) if result.trace else 0} tokens={result.tokens} "
        f"prompt={len(result.prompt)} instructions={result.instructions} "
        f"tokens/instruction={per:.2f} exit={result.exit_code}",
        markup=False,
    )
    raise typer.Exit(result.exit_code)


@app.command()
def build(
    output: Path = typer.Option(None, "-o", "--output",
                                help="Write the model here (safetensors); default: only the cache."),
    dtype: str = typer.Option("float64", "--dtype", help="float64 or float32."),
    max_len: int = typer.Option(BUCKETS[-1], "--max-len", min=1,
                                help="Positions (prompt + trace) the model is built and proven for."),
) -> None:
    """Build the universal model (every instruction its graph executes), cached on disk.

    The numerics guard must prove the model exact in DTYPE for MAX_LEN positions, or
    nothing is written (exit 2).
    """
    start = time.perf_counter()
    model = universal_model(max_len, dtype)
    seconds = time.perf_counter() - start
    if output is not None:
        _write_atomically(output, lambda tmp: save_model(model, tmp))
    card, cfg = model.info.get("card", {}), model.config
    built = model.info.get("build_seconds")
    err_console.print(
        f"universal model: {dtype}, max_len {cfg.max_len}, {cfg.n_layer} layers, d_model "
        f"{cfg.d_model}, {card.get('params', '?'):,} parameters; built in {built} s, "
        f"ready in {seconds:.2f} s" + (f"; wrote {output}" if output is not None else ""),
        markup=False)


@app.command()
def compile(
    program: str = typer.Argument(..., help="PROG.c or PROG.wat to compile."),
    output: Path = typer.Option(None, "-o", "--output", help="Output .wasm (default: PROG.wasm)."),
) -> None:
    """Compile C (zig cc, wasm32-wasi, wasi-libc) or .wat text to a validated .wasm file."""
    source = Path(program)
    if source.suffix.lower() == ".wasm":
        raise InputError(f"{program} is already a .wasm file")
    resolved = program_bytes(source)
    load_module(resolved.wasm)  # refuse to write a module we could not run
    target = output or source.with_suffix(".wasm")
    _write_atomically(target, resolved.wasm)
    err_console.print(f"wrote {target} ({len(resolved.wasm):,} bytes)", markup=False)


@app.command()
def check(program: str = typer.Argument(..., help="PROG.c, PROG.wat or PROG.wasm.")) -> None:
    """Decode and validate a module and summarise it."""
    resolved = program_bytes(program)
    module = load_module(resolved.wasm)
    n_instr = sum(len(f.body) for f in module.funcs)
    imports = ", ".join(f"{i.module}.{i.name}" for i in module.imports) or "none"
    exports = ", ".join(e.name for e in module.exports) or "none"
    print(f"{resolved.name}: valid, {len(resolved.wasm):,} bytes, {len(module.funcs)} functions, "
          f"{n_instr:,} instructions")
    print(f"imports: {imports}")
    print(f"exports: {exports}")


@app.command()
def dataset(
    programs: list[str] = typer.Argument(..., help="PROG.c, PROG.wat or PROG.wasm files (WASI programs)."),
    output: Path = typer.Option(..., "-o", "--output", help="out.jsonl or out.parquet."),
    fmt: str = typer.Option(None, "--format", help="jsonl or parquet (default: from the -o suffix)."),
    max_steps: int = MAX_STEPS_OPTION,
    no_steps: bool = typer.Option(False, "--no-steps", help="Omit the per-step states (big traces)."),
) -> None:
    """Write exact execution traces for training other models: one record per program (docs/DATASET.md).

    Each record: prompt and trace tokens, every step's decoded state, stdout, exit code.
    """
    _check_max_steps(max_steps)
    kind = datasets.output_format(output, fmt)  # an unusable format fails before any run
    records = [datasets.build_record(p, max_steps=max_steps or None, steps=not no_steps)
               for p in programs]
    data = datasets.encode(records, kind)
    _write_atomically(output, data)
    tokens = sum(r["n_prompt_tokens"] + r["n_trace_tokens"] for r in records)
    err_console.print(f"wrote {output} ({len(records)} records, {tokens:,} tokens, "
                      f"{len(data):,} bytes)", markup=False)


@app.command()
def bench(
    out_dir: Path = typer.Option(Path("."), "--out-dir", "-o", help="Where BENCHMARKS.md goes."),
    quick: bool = typer.Option(False, "--quick", help="Only the short examples (CI)."),
    engine: list[str] = typer.Option(None, "--engine", help="Engines to measure (default: all)."),
    per_run_timeout: float = typer.Option(3600.0, "--per-run-timeout", min=1.0,
                                          help="Seconds before one measurement is abandoned "
                                          "(sudoku's fast run takes ~20 minutes here)."),
    program: list[str] = typer.Option(None, "--program", help="Only these examples (names "
                                      "from examples/MANIFEST.toml), without the scaling "
                                      "sweep."),
    determinism: bool = typer.Option(
        False, "--determinism", help="Only the determinism check: the fast engine against the "
        "token machine, token for token; rewrites BENCHMARKS.md's Determinism section."),
    tokens: int = typer.Option(10**7, "--tokens", help="--determinism: generated tokens to "
                               "compare (a run resumes from its bench-determinism.json)."),
    stream_positions: int = typer.Option(2**18, "--stream-positions",
                                         help="--determinism: the longest stream (memory: "
                                         "~4 KB per position)."),
    seed: int = typer.Option(0, "--seed", help="--determinism: the invocations' seed."),
    fresh: bool = typer.Option(False, "--fresh", help="--determinism: start over instead of "
                               "resuming."),
) -> None:
    """Run the examples through every engine and wasmtime; write BENCHMARKS.md and plots."""
    from .bench import run_bench

    if determinism:
        from .determinism import run_determinism

        state = run_determinism(out_dir, tokens=tokens, stream_positions=stream_positions,
                                seed=seed, fresh=fresh)
        if state.divergence is not None:
            err_console.print(state.divergence.line(), markup=False)
            raise typer.Exit(1)
        err_console.print(f"wrote {out_dir / 'BENCHMARKS.md'}", markup=False)
        return

    unknown = [name for name in engine or () if name not in api.ENGINES]
    if unknown:
        raise InputError(f"unknown or unavailable engine '{unknown[0]}' "
                         f"(available: {', '.join(api.ENGINES)})")
    from .bench import suite

    known = suite(False)
    missing = [name for name in program or () if name not in known]
    if missing:
        raise InputError(f"unknown example '{missing[0]}' (examples: {', '.join(known)})")
    target = run_bench(out_dir, quick=quick, engines=tuple(engine) if engine else None,
                       per_run_timeout=per_run_timeout, names=list(program or ()) or None,
                       with_scaling=not program)
    err_console.print(f"wrote {target}", markup=False)


def main() -> None:
    """Console-script entry point: turn every known failure into one line and an exit code."""
    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except WasmformerError as exc:
        err_console.print(str(exc), markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted", markup=False)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: typer's own message, exit 2
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        else:
            err_console.print(str(exc), markup=False)
        sys.exit(getattr(exc, "exit_code", 2))
    except Exception as exc:  # noqa: BLE001 - the last line of defence: never a traceback
        if os.environ.get("WASMFORMER_DEBUG"):
            raise
        err_console.print(
            f"internal error: {type(exc).__name__}: {exc} (set WASMFORMER_DEBUG=1 for details)",
            markup=False,
        )
        sys.exit(EXIT_INTERNAL)
