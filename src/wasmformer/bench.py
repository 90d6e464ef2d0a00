"""``wasmformer bench``: run the example suite through every engine and write BENCHMARKS.md.

Per program it measures, in one run so that ratios are comparable on a shared machine:
wasmtime natively (wall time, and fuel = executed WebAssembly instructions), the reference
machine, the reference token machine (trace and prompt tokens), and every transformer engine
that ``api.ENGINES`` offers (tokens/s). Each measurement runs in a fresh process so its peak
RSS is its own and a crash or a hang stays contained (``per_run_timeout``).

An engine that cannot execute a program gets its one-line reason in the table instead of a
number: nothing is estimated. The transformer engines run with the reference trace's token
count as their token budget (``max_tokens``), so a stream that cannot fit the largest proven
bucket (sudoku's ~6M tokens) is refused by the engine itself before any token is decoded.
The torch engine is run on a program only when its stream (prompt + trace) fits
``TORCH_MAX_POSITIONS``: its KV cache costs O(n) per token on CPU, and a C program's prompt
alone is ~26K tokens; the scaling section measures it instead.

The scaling section (``scaling``): tokens/s against the position for the transformer
engines (torch's KV cache: O(n) attention per token; fast's hull caches: O(log n)) on one
looping wat program run as far as the proven numerics allow, each engine in its own process.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import platform
import resource
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# --quick: programs the manifest says run under this many instructions (hello, exitcode:
# ~26K-token prompts, ~25 s and ~3 GB each on the fast engine; abort's 178K-token prompt
# already costs minutes and ~8 GB)
QUICK_MAX_INSTRUCTIONS = 5_000
SCALING_TIMEOUT = 1800.0  # seconds for one engine's scaling sweep
# The torch engine's CPU budget on an example: at ~3K positions it decodes ~50 tokens/s
# (O(n) attention per token), so 8,192 positions cost a few minutes; every C example's
# stream (its ~26K-token prompt first) is longer and would take an hour or more.
TORCH_MAX_POSITIONS = 8192
NOTE_CHARS = 220  # a note's cell: the first line of the engine's message, cut here


@dataclass
class Measurement:
    seconds: float | None = None
    peak_rss_mb: float | None = None
    cpu_seconds: float | None = None  # the child's own user + system time
    tokens: int | None = None
    instructions: int | None = None
    note: str = ""  # why there is no number (unsupported, timeout, error)
    output: str | None = None  # a digest of stdout, stderr and the exit code (``_outcome``)


@dataclass
class ProgramRow:
    name: str
    fuel: int = 0
    trace_tokens: int = 0
    prompt_tokens: int = 0
    native: Measurement = field(default_factory=Measurement)
    engines: dict[str, Measurement] = field(default_factory=dict)


def suite(quick: bool) -> list[str]:
    """Example names, shortest first (by the manifest's instruction counts)."""
    manifest = tomllib.loads((EXAMPLES / "MANIFEST.toml").read_text())
    names = sorted(manifest, key=lambda n: manifest[n].get("instructions", 0))
    if quick:
        names = [n for n in names if manifest[n].get("instructions", 0) < QUICK_MAX_INSTRUCTIONS]
    return names


# ---- measurements, each in a child process -------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _measure_native(path: str) -> dict:
    from .judge import run_wasmtime, time_wasmtime
    from .toolchain import program_bytes

    wasm = program_bytes(path).wasm
    judged = run_wasmtime(wasm)
    return {"seconds": time_wasmtime(wasm), "instructions": judged.fuel,
            "peak_rss_mb": _peak_rss_mb(),
            "output": _outcome(judged.stdout, judged.stderr, judged.exit_code)}


def _outcome(stdout: bytes, stderr: bytes, exit_code: int) -> str:
    """What a run must agree on with wasmtime's, as one comparable digest."""
    return hashlib.sha256(b"%d\n%d\n" % (exit_code, len(stdout)) + stdout + stderr).hexdigest()


def _measure_trace(path: str) -> dict:
    from . import api

    result = api.trace(path)
    return {"tokens": result.tokens, "prompt": len(result.prompt),
            "instructions": result.instructions, "peak_rss_mb": _peak_rss_mb()}


def _measure_engine(path: str, engine: str, max_tokens: int | None) -> dict:
    from . import api
    from .errors import WasmformerError

    try:
        start, cpu = time.perf_counter(), _cpu_seconds()
        result = api.run(path, engine=engine, max_tokens=max_tokens)
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
    except WasmformerError as exc:
        return {"note": str(exc).splitlines()[0][:NOTE_CHARS]}
    return {"seconds": seconds, "cpu_seconds": cpu, "tokens": result.tokens,
            "instructions": result.instructions, "peak_rss_mb": _peak_rss_mb(),
            "output": _outcome(result.stdout, result.stderr, result.exit_code)}


def _child(conn, fn, args) -> None:
    try:  # if memory runs out, the kernel kills this measurement, not the machine's other work
        Path("/proc/self/oom_score_adj").write_text("1000")
    except OSError:
        pass
    try:
        result = fn(*args)
    except Exception as exc:  # reported in the table, never hidden
        result = {"note": f"error: {type(exc).__name__}: {exc}"[:90]}
    try:
        conn.send(result)
    except OSError:  # the bench itself was stopped (Ctrl-C, kill): nobody to tell
        pass
    finally:
        conn.close()


def _isolated(fn, *args, timeout: float) -> dict:
    """``fn(*args)`` in a fresh process; a dict with a ``note`` on timeout or crash."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args), daemon=True)
    proc.start()
    child.close()
    try:
        result = parent.recv() if parent.poll(timeout) else {"note": f"timeout after {timeout:.0f} s"}
    except EOFError:  # it died without a word: killed (out of memory) or crashed
        proc.join()
        code = proc.exitcode
        return {"note": f"the process died ({f'signal {-code}' if code and code < 0 else f'exit {code}'}"
                        f"{': out of memory?' if code == -9 else ''})"}
    proc.kill()
    proc.join()
    return result


def _as_measurement(d: dict) -> Measurement:
    return Measurement(d.get("seconds"), d.get("peak_rss_mb"), d.get("cpu_seconds"),
                       d.get("tokens"), d.get("instructions"), d.get("note", ""),
                       d.get("output"))


def torch_skip_note(row: ProgramRow) -> str:
    """Why the torch engine is not run on this program ("" when it is): the stream the
    reference token machine wrote, against ``TORCH_MAX_POSITIONS``."""
    stream = row.prompt_tokens + row.trace_tokens
    if stream <= TORCH_MAX_POSITIONS:
        return ""
    return (f"not run: a stream of {stream:,} positions, over the torch CPU budget of "
            f"{TORCH_MAX_POSITIONS:,} (see Scaling)")


def measure_program(name: str, engines: tuple[str, ...], per_run_timeout: float,
                    progress=None) -> ProgramRow:
    """One example through wasmtime, the token machine and every engine (``progress``:
    called with what is being measured)."""
    path = str(EXAMPLES / f"{name}.c")
    row = ProgramRow(name)
    say = progress or (lambda _: None)
    say(f"{name}: wasmtime")
    row.native = _as_measurement(_isolated(_measure_native, path, timeout=per_run_timeout))
    row.fuel = row.native.instructions or 0
    say(f"{name}: token machine")
    traced = _isolated(_measure_trace, path, timeout=per_run_timeout)
    row.trace_tokens, row.prompt_tokens = traced.get("tokens", 0), traced.get("prompt", 0)
    for engine in engines:
        skip = torch_skip_note(row) if engine == "torch" else ""
        if skip:
            row.engines[engine] = Measurement(note=skip)
            continue
        # the token budget is the reference trace's length: an engine whose largest proven
        # bucket cannot hold the stream refuses up front instead of decoding up to its limit
        budget = row.trace_tokens if engine != "reference" and row.trace_tokens else None
        say(f"{name}: {engine} engine")
        m = _as_measurement(_isolated(_measure_engine, path, engine, budget,
                                      timeout=per_run_timeout))
        if m.tokens is None and m.seconds is not None:
            m.tokens = row.trace_tokens  # the reference machine does not trace: same count
        row.engines[engine] = m
    return row


# The sum_to sweep: the fast engine out to 2**20 positions (~1M trace tokens, ~3-4 minutes
# of CPU time at ~5K tokens/s, ~2.2 KB per position); the torch engine decodes the same
# stream's first TORCH_SCALING_TOKENS tokens (O(n) per token: ~2 minutes of CPU time), and
# the fast decoder without its hulls (every lookup a scan: O(n) per token) its first
# SCAN_SCALING_TOKENS (~5 minutes); all checked token by token against the token machine.
SCALING_POSITIONS = 2**20
TORCH_SCALING_TOKENS = 4096
SCAN_SCALING_TOKENS = 2**15
QUICK_SCALING_POSITIONS = 1024
SCALED = ("torch", "fast", "fast-scan")  # the scaling sweep's decoders (``scaling.decoder_for``)


def _measure_scaling(engine: str, positions: int, marks: list[int],
                     stop: int | None = None) -> dict:
    """One engine's windowed CPU times on the sum_to workload of ``positions`` positions,
    its first ``stop`` trace tokens (None: all of them)."""
    from .scaling import decode_windows, workload

    prompt, trace = workload(positions)
    trace = trace[:stop] if stop else trace
    marks = [m for m in marks if m < len(trace)] + [len(trace)]
    prefill, times = decode_windows(engine, prompt, trace, marks)
    return {"prompt": len(prompt), "marks": marks, "times": times, "prefill": prefill}


def measure_scaling(engines: tuple[str, ...], quick: bool, per_run_timeout: float,
                    progress=None, done=None) -> dict:
    """Per transformer engine: windowed CPU times of one long sum_to run (see ``scaling``).
    Both engines decode the same stream and share the window marks (powers of two, and
    where torch stops), so their rows compare like for like."""
    positions = QUICK_SCALING_POSITIONS if quick else SCALING_POSITIONS
    stops = {} if quick else {"torch": TORCH_SCALING_TOKENS, "fast-scan": SCAN_SCALING_TOKENS}
    marks = sorted({2**k for k in range(6, 21)} | set(stops.values()))
    timeout = max(per_run_timeout, SCALING_TIMEOUT)  # one run is a whole sweep
    out = {}
    for e in scaled(engines):
        if e in SCALED:
            if progress:
                progress(f"scaling: {e} engine")
            out[e] = _isolated(_measure_scaling, e, positions, marks, stops.get(e),
                               timeout=timeout)
            if done:
                done()
    return out


def scaled(engines: tuple[str, ...]) -> tuple[str, ...]:
    """The scaling sweep's decoders for ``engines``: fast brings its scan baseline."""
    return tuple(e for e in SCALED if e in engines or (e == "fast-scan" and "fast" in engines))


def _windows(d: dict) -> list[tuple[int, int, float]]:
    """(first position, last position, tokens/s) per window of a scaling run."""
    out, previous, t0 = [], 0, 0.0
    for mark, t in zip(d["marks"], d["times"], strict=True):
        if t > t0:
            out.append((d["prompt"] + previous, d["prompt"] + mark - 1, (mark - previous) / (t - t0)))
        previous, t0 = mark, t
    return out


def render_scaling(scaling: dict, plot: str | None) -> list[str]:
    ok = {e: d for e, d in scaling.items() if "times" in d}
    ratios = [e for e in ("torch", "fast-scan") if e in ok and "fast" in ok]
    lines = ["", "## Scaling: tokens/s against trace length", "",
             "`sum_to(n)` (a wat loop the universal graph covers; n the largest whose stream "
             "fits the positions) decoded greedily by each transformer engine's decoder on the "
             "smallest model proven for the positions it decodes, every token checked against "
             "the reference token machine; tokens/s per window of positions, on one thread, in "
             "the process's CPU time (the machine is shared). The torch engine decodes the "
             "same stream's first tokens only (its KV cache costs O(n) per token), and so does "
             "fast-scan: the fast engine's own compiled loop and model with its hulls and "
             "position formulas off, every lookup a scan over every cached key (the model's "
             "attention, O(n) per token): fast / fast-scan is what the hull cache buys, "
             "which O(n / log n) says grows with the trace."]
    for e, d in scaling.items():
        if "note" in d:
            lines += ["", f"{e}: {d['note']}"]
    if not ok:
        return lines
    first = next(iter(ok.values()))
    lines += ["", f"Prompt + header: {first['prompt']:,} tokens. " + "; ".join(
        f"{e}: {d['marks'][-1]:,} trace tokens in {d['times'][-1]:,.2f} s of CPU time "
        f"({d['marks'][-1] / d['times'][-1]:,.0f} tokens/s), prefill {d['prefill']:.2f} s"
        for e, d in ok.items()),
        "", "| positions | " + " | ".join(f"{e} tokens/s" for e in ok) + " | "
        + "".join(f"fast / {e} | " for e in ratios),
        "|---|" + "---:|" * (len(ok) + len(ratios))]
    # windows keyed by their first position: the engines share marks, so equal keys are
    # equal windows; the longest run gives the rows
    windows = {e: {lo: (hi, rate) for lo, hi, rate in _windows(d)} for e, d in ok.items()}
    longest = max(windows.values(), key=len)
    for lo, (hi, _) in sorted(longest.items()):
        rates = {e: w[lo][1] for e, w in windows.items() if lo in w and w[lo][0] == hi}
        cells = [f"{lo:,}..{hi:,}"] + [_fmt(rates.get(e)) for e in ok]
        cells += [f"{rates['fast'] / rates[e]:,.1f}x" if e in rates and "fast" in rates
                  else "–" for e in ratios]
        lines.append("| " + " | ".join(cells) + " |")
    if plot:
        lines += ["", f"![{plot}]({plot})"]
    return lines


_CACHES = {"fast": "hull cache", "fast-scan": "same loop, every lookup a scan",
           "torch": "KV cache"}


def plot_scaling(scaling: dict, target: Path) -> bool:
    """tokens/s per window against the position, log-log, one series per engine."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = {e: _windows(d) for e, d in scaling.items() if "times" in d}
    if not ok:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for e, w in ok.items():
        ax.plot([hi for _, hi, _ in w], [r for _, _, r in w], marker="o",
                label=f"{e} ({_CACHES[e]})")
    _save_loglog(fig, ax, target, "position (prompt + trace tokens)",
                 "tokens / s (CPU time, one thread)",
                 "Decoding speed against trace length (sum_to)")
    plt.close(fig)
    return True


def measure_batch(names: list[str], engine: str = "reference") -> list[tuple[int, float]]:
    """(jobs, wall seconds) for ``names`` run together by ``api.run_many`` with one worker,
    then one per CPU (the pool's start-up included: it is part of the price)."""
    from . import api

    paths = [str(EXAMPLES / f"{name}.c") for name in names]
    out = []
    for jobs in sorted({1, multiprocessing.cpu_count()}):
        start = time.perf_counter()
        results = api.run_many(paths, jobs=jobs, engine=engine)
        if any(isinstance(r, str) for r in results):
            raise RuntimeError(f"batch: {next(r for r in results if isinstance(r, str))}")
        out.append((jobs, time.perf_counter() - start))
    return out


def render_batch(names: list[str], timings: list[tuple[int, float]]) -> list[str]:
    lines = ["", "## Batch: several programs at once", "",
             f"`wasmformer batch` (`api.run_many`, a process pool) on the {len(names)} programs "
             f"above ({', '.join(names)}), reference engine, wall time including the pool's "
             "start-up (each worker imports wasmformer).", "",
             "| jobs | wall s | programs / s |", "|---:|---:|---:|"]
    lines += [f"| {jobs} | {seconds:.2f} | {len(names) / seconds:.2f} |"
              for jobs, seconds in timings]
    return lines


# ---- report ----------------------------------------------------------------------------


def _fmt(x: float | None, spec: str = ",.0f") -> str:
    return "–" if x is None else format(x, spec)


def _rate(m: Measurement) -> float | None:
    return m.tokens / m.seconds if m.tokens and m.seconds else None


def render(rows: list[ProgramRow], engines: tuple[str, ...], plots: list[str],
           seconds: float, scaling: list[str] = (), partial: str = "") -> str:
    lines = [
        "# Benchmarks",
        "",
        *([f"**Partial report: the run was still going ({partial}).**", ""] if partial else []),
        f"Written by `wasmformer bench` in {seconds:.0f} s on {platform.machine()}, "
        f"{multiprocessing.cpu_count()} CPUs, Python {platform.python_version()}. "
        "Every figure of a row comes from the same run; each engine ran in its own process "
        "(peak RSS is that process's).",
        "",
        "## Tokens",
        "",
        "| program | wasm instructions (wasmtime fuel) | trace tokens | tokens / instruction "
        "| prompt tokens |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        per = r.trace_tokens / r.fuel if r.fuel else None
        lines.append(f"| {r.name} | {r.fuel:,} | {r.trace_tokens:,} | {_fmt(per, '.2f')} "
                     f"| {r.prompt_tokens:,} |")
    lines += ["", "## Speed", "",
              "s: wall seconds of the whole run (a transformer engine's includes loading "
              "its model and feeding the prompt); CPU s: the process's own CPU seconds (the "
              "machine is shared); tok/s: trace tokens per wall second (for the reference "
              "machine, which does not generate tokens, the trace's token count over its run "
              "time); slowdown: the engine's wall time over native wasmtime's, same run; = "
              "wasmtime: the run's stdout, stderr and exit code equal wasmtime's (yes / NO). The "
              "transformer engines ran with the trace's token count as their token budget. "
              f"The torch engine runs a program only if its stream (prompt + trace) is at "
              f"most {TORCH_MAX_POSITIONS:,} positions: it attends densely over its whole "
              "KV cache for every token; the Scaling section measures it.", ""]
    head = "| program | wasmtime s |" + "".join(
        f" {e} s | {e} CPU s | {e} tok/s | {e} slowdown | {e} peak MB | {e} = wasmtime |"
        for e in engines)
    lines += [head, "|---|---:|" + "---:|---:|---:|---:|---:|:-:|" * len(engines)]
    for r in rows:
        cells = [r.name, _fmt(r.native.seconds, ".4f")]
        for e in engines:
            m = r.engines[e]
            if m.seconds is None:
                cells += [m.note or "–", "–", "–", "–", "–", "–"]
                continue
            slow = m.seconds / r.native.seconds if r.native.seconds else None
            agrees = "–" if m.output is None or r.native.output is None else (
                "yes" if m.output == r.native.output else "NO")
            cells += [_fmt(m.seconds, ".3f"), _fmt(m.cpu_seconds, ".3f"), _fmt(_rate(m)),
                      _fmt(slow), _fmt(m.peak_rss_mb), agrees]
        lines.append("| " + " | ".join(cells) + " |")
    for p in plots:
        lines += ["", f"![{p}]({p})"]
    lines += list(scaling)
    return "\n".join(lines) + "\n"


def _save_loglog(fig, ax, target: Path, xlabel: str, ylabel: str, title: str) -> None:
    """Both plots' common finish: log-log axes, grid, legend, written as PNG."""
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(target, dpi=110)


def plot_rates(rows: list[ProgramRow], engines: tuple[str, ...], target: Path) -> bool:
    """tokens/s against trace length, log-log, one series per engine; False without data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for e in engines:
        pts = sorted((r.trace_tokens, _rate(r.engines[e])) for r in rows
                     if _rate(r.engines[e]) and r.trace_tokens)
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=e)
            drawn = True
    if drawn:
        _save_loglog(fig, ax, target, "trace tokens", "tokens / s",
                     "Speed against trace length (examples/)")
    plt.close(fig)
    return drawn


def run_bench(out_dir: Path, *, quick: bool = False, engines: tuple[str, ...] | None = None,
              per_run_timeout: float = 3600.0, names: list[str] | None = None,
              with_scaling: bool = True) -> Path:
    """Measure the suite (or ``names``) and the scaling of the transformer engines; write
    ``out_dir/BENCHMARKS.md`` and its plots."""
    from rich.progress import Progress, TimeElapsedColumn

    from . import api
    from .determinism import split_section

    engines = engines or api.ENGINES
    names = names or suite(quick)
    started = time.perf_counter()
    rows = []
    steps = len(names) + (with_scaling and len(scaled(engines)))
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "BENCHMARKS.md"

    # the determinism check writes its own section (``bench --determinism``): kept as it is
    kept = split_section(target.read_text())[1] if target.exists() else ""

    def write(plots: list[str], scaling_lines: list[str], partial: str = "") -> None:
        tmp = target.with_name(f".{target.name}.tmp")
        text = render(rows, engines, plots, time.perf_counter() - started, scaling_lines,
                      partial)
        tmp.write_text(text + ("\n" + kept.rstrip("\n") + "\n" if kept else ""))
        tmp.replace(target)

    # the scaling sweep first, then the examples shortest first, the report rewritten after
    # each: a run stopped early (hours on a busy machine) leaves what it measured, marked
    scaling, scaling_lines, plots = {}, [], []
    with Progress(*Progress.get_default_columns(), TimeElapsedColumn(),
                  transient=True) as progress:
        task = progress.add_task("benchmarking", total=steps)

        def say(what: str) -> None:
            progress.update(task, description=what)

        if with_scaling:
            scaling = measure_scaling(engines, quick, per_run_timeout, say,
                                      lambda: progress.advance(task))
            scaling_plot = "bench-scaling.png" \
                if plot_scaling(scaling, out_dir / "bench-scaling.png") else None
            scaling_lines = render_scaling(scaling, scaling_plot) if scaling else []
        for name in names:
            rows.append(measure_program(name, engines, per_run_timeout, say))
            progress.advance(task)
            plots = ["bench-speed.png"] \
                if plot_rates(rows, engines, out_dir / "bench-speed.png") else []
            if len(rows) < len(names):
                write(plots, scaling_lines, f"measured {len(rows)} of {len(names)} programs")
    if with_scaling and not quick and len(names) > 1:  # --quick stays CI-sized
        scaling_lines += render_batch(names, measure_batch(names))
    write(plots, scaling_lines)
    return target
