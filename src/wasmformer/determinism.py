"""``wasmformer bench --determinism``: the fast engine against the reference token machine
over many tokens, token for token.

A run is a sequence of *streams*. A stream is one persistent instance of a program: its
prompt, then invocation after invocation (exported functions with varied arguments, traps
included), each continuing the same token stream until it would pass ``stream_positions``
positions; an example C program is one ``_start`` invocation. Every invocation runs first
on the reference token machine (its own instance of the module, in the same state), then
on the fast engine, whose tokens (header and trace) must be the same, token for token; the
first difference stops the run and is reported with its place and both tokens.

Stream ``k`` is fixed by (seed, k): its program and its invocations' arguments come from a
generator seeded with both, so the run is resumable: the results of finished streams are
kept in a JSON file beside BENCHMARKS.md, and a later run with the same seed and stream
length goes on from the next stream. The "Determinism" section of BENCHMARKS.md is
rewritten after every stream, marked partial until the token target is reached.

Each stream's decoder is made for the bucket that holds the whole stream (as the engine
does for a run with a token budget), so no stream moves between buckets on the way.
"""

from __future__ import annotations

import gc
import json
import random
import resource
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import InputError, WasmformerError

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ROOT / "benchmarks" / "determinism"
EXAMPLES = ROOT / "examples"
STATE_FILE = "bench-determinism.json"
SECTION = "## Determinism"
DEFAULT_TOKENS = 10**7
# ~4 KB of decoder state per position (docs/FAST.md): 2**18 positions is ~1 GB plus the model
DEFAULT_STREAM_POSITIONS = 2**18
SLACK = 64  # generated tokens allowed past the reference trace's length (a longer trace is a
#             divergence to report, not a budget stop)
REFERENCE_STEPS = 10**7  # an invocation of these programs executes far fewer instructions


# ---- the invocations ------------------------------------------------------------------

EDGE32 = (0, 1, -1, 2, 7, -7, 255, 65535, 2**31 - 1, -2**31)
EDGE64 = EDGE32 + (2**32, -2**32, 2**63 - 1, -2**63, 0x0123456789ABCDEF)


def i32(r: random.Random) -> int:
    return r.choice(EDGE32) if r.random() < 0.3 else r.randrange(-2**31, 2**31)


def i64(r: random.Random) -> int:
    return r.choice(EDGE64) if r.random() < 0.3 else r.randrange(-2**63, 2**63)


Call = tuple[str, Callable[[random.Random], list[int]]]

# Per program: (export, its arguments) with weights. Sizes: a few dozen to ~50K trace tokens
# per invocation (~5K on average), so a stream holds dozens of them.
CALLS: dict[str, list[tuple[int, Call]]] = {
    "kernels.c": [
        (1, ("reseed", lambda r: [i64(r)])),
        (3, ("mix_memory", lambda r: [r.randrange(1, 80), i32(r)])),
        (2, ("divide32", lambda r: [i32(r), i32(r)])),
        (2, ("divide64", lambda r: [i64(r), i64(r)])),
        (2, ("divsum", lambda r: [r.randrange(1, 40), i32(r)])),
        (2, ("sort", lambda r: [r.randrange(0, 60), r.choice([1, 2, 10, 1000, 2**31 - 1])])),
        (2, ("fib", lambda r: [r.randrange(0, 14)])),
        (2, ("ackermann", lambda r: [r.randrange(0, 3), r.randrange(0, 6)])),
        (2, ("depth", lambda r: [r.randrange(0, 160), i32(r)])),  # past ~127 frames: a trap
        (3, ("interpret", lambda r: [r.randrange(1, 150), i32(r)])),
        (2, ("bits", lambda r: [r.randrange(1, 40), i64(r)])),
        (1, ("peek", lambda r: [r.choice([r.randrange(0, 2**17), r.randrange(0, 2**20), i32(r)])])),
        (1, ("crash", lambda r: [i32(r)])),
        (1, ("grow", lambda r: [r.randrange(2, 20)])),
    ],
    "machine.wat": [
        (4, ("dispatch", lambda r: [r.randrange(1, 40), i64(r)])),
        (2, ("indirect", lambda r: [r.randrange(0, 10), i64(r), i64(r)])),
        (1, ("triple", lambda r: [i32(r), i32(r)])),
        (1, ("grow", lambda r: [r.randrange(0, 3)])),
        (2, ("poke", lambda r: [r.choice([r.randrange(0, 2**16), r.randrange(0, 2**18), i32(r)]),
                                i64(r)])),
    ],
}
# The order streams take their programs in; every 4th stream is the next example C program
# whose stream fits (once each), then kernels.c again.
CYCLE = ("kernels.c", "machine.wat", "kernels.c", "example")


def examples() -> list[str]:
    """examples/*.c, shortest first (the manifest's instruction counts)."""
    manifest = tomllib.loads((EXAMPLES / "MANIFEST.toml").read_text())
    return sorted(manifest, key=lambda n: manifest[n].get("instructions", 0))


def source_of(k: int, sources: tuple[str, ...]) -> str:
    """Stream ``k``'s program: a file under benchmarks/determinism/, or ``examples/NAME.c``."""
    kind = sources[k % len(sources)]
    if kind != "example":
        return kind
    listed = examples()
    n = k // len(sources)
    return f"examples/{listed[n]}.c" if n < len(listed) else sources[0]


def _path(source: str) -> Path:
    return ROOT / source if source.startswith("examples/") else PROGRAMS / source


# ---- results ---------------------------------------------------------------------------


@dataclass
class StreamResult:
    index: int
    program: str
    invocations: int = 0
    traps: int = 0
    exits: int = 0
    prompt: int = 0  # prompt tokens
    positions: int = 0  # the stream's length at its end (prompt + every invocation)
    compared: int = 0  # trace tokens compared (the headers, written by the engine, excluded)
    generated: int = 0  # of them, tokens the model generated (the rest: host calls spliced)
    margin: float | None = None  # FastDecoder.margin: the smallest certified score gap
    scans: int = 0  # FastDecoder.scans: lookups the hulls could not certify
    wall: float = 0.0  # the stream's wall seconds (reference machine and setup included)
    cpu: float = 0.0  # the process's CPU seconds over the stream
    engine: float = 0.0  # seconds inside the fast engine's invocations
    note: str = ""  # why the stream was not run (it cannot fit the stream length)
    buckets: list[int] = field(default_factory=list)  # max_len of each decoder it used


@dataclass
class Divergence:
    stream: int
    program: str
    invocation: int  # its number in the stream
    call: str  # export(args)
    position: int  # the stream position of the first differing token
    offset: int  # its offset in the invocation's tokens (0: the header's first)
    fast: str  # the fast engine's token there ("(end)": its trace ended before)
    reference: str  # the token machine's
    error: str = ""  # the engine's own message, when it stopped with one

    def line(self) -> str:
        return (f"divergence in stream {self.stream} ({self.program}), invocation "
                f"{self.invocation} {self.call}: position {self.position:,} (token "
                f"{self.offset} of the invocation): fast {self.fast}, token machine "
                f"{self.reference}" + (f" ({self.error})" if self.error else ""))


@dataclass
class State:
    seed: int
    stream_positions: int
    streams: list[StreamResult] = field(default_factory=list)
    divergence: Divergence | None = None
    remarks: list[str] = field(default_factory=list)  # said in the section as they are

    @classmethod
    def load(cls, path: Path) -> State:
        data = json.loads(path.read_text())
        div = data.get("divergence")
        return cls(data["seed"], data["stream_positions"],
                   [StreamResult(**s) for s in data["streams"]],
                   Divergence(**div) if div else None, data.get("remarks", []))

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1) + "\n")
        tmp.replace(path)

    def total(self, key: str) -> float:
        return sum(getattr(s, key) for s in self.streams)

    @property
    def margin(self) -> float | None:
        margins = [s.margin for s in self.streams if s.margin is not None]
        return min(margins) if margins else None


# ---- one stream ------------------------------------------------------------------------


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _differs(got: list[int], want: list[int]) -> int | None:
    """The first offset where the two token lists differ (a length difference included)."""
    for i, (a, b) in enumerate(zip(got, want, strict=False)):
        if a != b:
            return i
    return None if len(got) == len(want) else min(len(got), len(want))


def run_stream(k: int, seed: int, stream_positions: int, sources: tuple[str, ...],
               room: int, on_tokens: Callable[[int], None]) -> tuple[StreamResult,
                                                                       Divergence | None]:
    """Stream ``k``: invocations until the next would pass ``stream_positions`` positions or
    ``room`` more generated tokens have been compared."""
    from .engine.session import Session, reference_limits
    from .machine import Instance, TokenMachine, vocab
    from .machine.wasi import WasiHost
    from .toolchain import program_bytes
    from .wasm import load_module

    program = source_of(k, sources)
    result = StreamResult(k, program)
    wall, cpu = time.perf_counter(), _cpu()
    module = load_module(program_bytes(str(_path(program))).wasm)
    host = WasiHost()
    reference = TokenMachine(Instance(module, host=host, limits=reference_limits()), host)
    session = Session(Instance(module, host=WasiHost(), limits=reference_limits()), engine="fast")
    result.prompt = session.prompt_length
    # a decoder replaced by a larger bucket's takes its counts with it: keep them
    retired: list[tuple[int, float | None]] = []
    fit = session.fit

    def tracked_fit(positions: int):
        old = session.decoder
        new = fit(positions)
        if new is not old:
            result.buckets.append(new.max_len)
            if old is not None:
                retired.append((old.scans, old.margin))
        return new

    session.fit = tracked_fit
    r = random.Random(f"{seed}:{k}")
    weighted = CALLS.get(program)
    divergence = None
    while result.generated < room:
        if weighted is None:  # an example: _start, once
            if result.invocations:
                break
            name, args = "_start", []
        else:
            name, make = r.choices([c for _, c in weighted], [w for w, _ in weighted])[0]
            args = make(r)
        want = reference.invoke(name, args, max_steps=REFERENCE_STEPS)
        if want.outcome == "budget":
            raise WasmformerError(f"stream {k} ({program}): {name}{tuple(args)} ran past "
                                  f"{REFERENCE_STEPS:,} steps on the reference machine")
        # the engine fits its bucket to the stream plus the token budget (trace + SLACK)
        if len(session.stream) + len(want.tokens) + SLACK > stream_positions:
            if not result.invocations:
                result.note = (f"not run: {session.prompt_length:,} prompt + "
                               f"{len(want.tokens):,} trace tokens, over the stream length")
            break
        if session.decoder is None:  # the bucket for the whole stream: no move on the way
            session.fit(stream_positions)
        start = len(session.stream)
        header = want.ends[0]
        error, generated = "", 0
        begun = time.perf_counter()
        try:
            got = session.invoke(name, args, max_tokens=len(want.tokens) - header + SLACK)
            tokens, generated = got.tokens, got.generated
        except WasmformerError as exc:  # a budget stop or a refusal: compare what came
            tokens, error = session.stream[start:], str(exc).splitlines()[0]
        result.engine += time.perf_counter() - begun
        at = _differs(tokens, want.tokens)
        if at is None and error:
            at = len(tokens)
        if at is not None:
            divergence = Divergence(
                k, program, result.invocations, f"{name}{tuple(args)}", start + at, at,
                vocab.describe(tokens[at]) if at < len(tokens) else "(end)",
                vocab.describe(want.tokens[at]) if at < len(want.tokens) else "(end)", error)
            break
        result.invocations += 1
        result.traps += want.outcome == "trap"
        result.exits += want.outcome == "exit"
        result.compared += len(want.tokens) - header
        result.generated += generated
        on_tokens(generated)
    result.positions = len(session.stream)
    margins = [m for _, m in retired] + [session.margin]
    result.scans = sum(n for n, _ in retired) + (session.scans or 0)
    result.margin = min((m for m in margins if m is not None), default=None)
    result.wall, result.cpu = time.perf_counter() - wall, _cpu() - cpu
    return result, divergence


# ---- the run and its report ------------------------------------------------------------


def run_determinism(out_dir: Path, *, tokens: int = DEFAULT_TOKENS,
                    stream_positions: int = DEFAULT_STREAM_POSITIONS, seed: int = 0,
                    fresh: bool = False, sources: tuple[str, ...] = CYCLE,
                    progress: bool = True) -> State:
    """Streams until ``tokens`` generated tokens have been compared (or a divergence);
    BENCHMARKS.md's Determinism section and the state file are rewritten after each."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .engine.models import BUCKETS

    if tokens < 1:
        raise InputError(f"--tokens must be positive, not {tokens}")
    if not 4096 <= stream_positions <= BUCKETS[-1]:
        raise InputError(f"--stream-positions must be 4,096 to {BUCKETS[-1]:,} (the largest "
                         f"proven bucket), not {stream_positions:,}")
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path, target = out_dir / STATE_FILE, out_dir / "BENCHMARKS.md"
    state = State(seed, stream_positions)
    if state_path.exists() and not fresh:
        state = State.load(state_path)
        if (state.seed, state.stream_positions) != (seed, stream_positions):
            raise InputError(f"{state_path} is a run with seed {state.seed} and stream length "
                             f"{state.stream_positions:,}: give those, or --fresh to start over")
    if state.divergence is not None:
        raise InputError(f"{state_path} ended in a divergence ({state.divergence.line()}); "
                         "--fresh to start over")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TaskProgressColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("determinism", total=tokens, completed=state.total("generated"))
        while state.total("generated") < tokens:
            k = len(state.streams)
            bar.update(task, description=f"stream {k} ({source_of(k, sources)})")
            result, divergence = run_stream(
                k, seed, stream_positions, sources, tokens - int(state.total("generated")),
                lambda n: bar.advance(task, n))
            state.streams.append(result)
            state.divergence = divergence
            state.save(state_path)
            write_section(target, render_section(state, tokens))
            bar.console.print(_stream_line(result), markup=False, highlight=False)
            gc.collect()  # the stream's decoder (gigabytes) before the next one's
            if divergence is not None:
                break
    write_section(target, render_section(state, tokens))  # also when nothing was left to run
    return state


def _stream_line(s: StreamResult) -> str:
    if s.note:
        return f"stream {s.index} {s.program}: {s.note}"
    return (f"stream {s.index} {s.program}: {s.invocations} invocations ({s.traps} traps), "
            f"{s.generated:,} generated tokens compared, {s.positions:,} positions, "
            f"min margin {_num(s.margin)}, scans {s.scans}, {s.wall:,.0f} s")


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def render_section(state: State, tokens: int) -> str:
    streams = [s for s in state.streams if not s.note]
    done = int(state.total("generated"))
    if state.divergence is not None:
        status = f"**Diverged**: {state.divergence.line()}."
    elif done >= tokens:
        status = (f"**No divergence**: {done:,} generated tokens compared, the target of "
                  f"{tokens:,} reached.")
    else:
        status = (f"**Partial**: {done:,} of the target {tokens:,} generated tokens compared "
                  "so far, no divergence in them (the run stopped or is still going; the same "
                  "command resumes it).")
    engine = state.total("engine")
    lines = [
        SECTION, "",
        f"`wasmformer bench --determinism --tokens {tokens}` (`wasmformer.determinism`): the "
        "fast engine against the reference token machine, token for token, on streams of at "
        f"most {state.stream_positions:,} positions (seed {state.seed}). A stream is one "
        "persistent instance: its prompt, then invocations with varied arguments (traps "
        "included) continuing the same token stream; the programs are "
        "benchmarks/determinism/kernels.c (loads and stores of every width, i64, "
        "mul/div/rem, recursion, switch, function pointers, memory.grow, traps), "
        "benchmarks/determinism/machine.wat (multi-value, globals, br_table, call_indirect "
        "and its traps, sign extension) and, once each, the examples/*.c whose stream fits. "
        "Each invocation runs on the token machine first, then on the fast engine, whose "
        "header and trace must equal it. Margin: `FastDecoder.margin`, the smallest "
        "certified gap between a lookup's winning score and any other key's (attention "
        "logits), over every hull-answered query of the stream, the prompt's included; "
        "scans: lookups the hulls could not certify (answered by the model's own attention "
        "over every key). Wall and CPU seconds are the whole check's (the reference machine "
        "included; a shared 2-core machine, the check niced); engine tokens/s: generated "
        "tokens over the wall seconds spent inside the fast engine's invocations (feeding "
        "the prompts included).", "",
        status, "",
        *[line for moved in [[s for s in streams if len(s.buckets) > 1]] if moved for line in (
            "Streams that moved to a larger bucket on the way (its decoder fed the whole "
            "stream again): " + ", ".join(f"{s.index} ({' -> '.join(f'{b:,}' for b in s.buckets)})"
                                          for s in moved) + ".", "")],
        *[line for remark in state.remarks for line in (remark, "")],
        "| streams | invocations (traps) | tokens compared (generated by the model) "
        "| positions (prompts) | longest stream | min margin | scans | wall s | CPU s "
        "| engine tokens/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {len(streams)} | {int(state.total('invocations')):,} "
        f"({int(state.total('traps')):,}) | {int(state.total('compared')):,} ({done:,}) "
        f"| {int(state.total('positions')):,} ({int(state.total('prompt')):,}) "
        f"| {max((s.positions for s in streams), default=0):,} | {_num(state.margin)} "
        f"| {int(state.total('scans')):,} | {state.total('wall'):,.0f} "
        f"| {state.total('cpu'):,.0f} | {_num(done / engine if engine else None)} |",
        "", "| program | streams | invocations (traps) | tokens compared | min margin | scans |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for program in dict.fromkeys(s.program for s in state.streams):
        mine = [s for s in state.streams if s.program == program]
        ran = [s for s in mine if not s.note]
        if not ran:
            lines.append(f"| {program} | 0 | {mine[0].note} | – | – | – |")
            continue
        margins = [s.margin for s in ran if s.margin is not None]
        lines.append(
            f"| {program} | {len(ran)} | {sum(s.invocations for s in ran):,} "
            f"({sum(s.traps for s in ran):,}) | {sum(s.compared for s in ran):,} "
            f"| {_num(min(margins) if margins else None)} | {sum(s.scans for s in ran):,} |")
    return "\n".join(lines) + "\n"


def split_section(text: str) -> tuple[str, str, str]:
    """(before, the Determinism section, after): the section runs from its heading to the
    next level-2 heading or the end."""
    at = text.find(f"\n{SECTION}\n")
    if at < 0:
        return text, "", ""
    at += 1
    end = text.find("\n## ", at + len(SECTION))
    end = len(text) if end < 0 else end + 1
    return text[:at], text[at:end], text[end:]


def write_section(target: Path, section: str) -> None:
    """Put ``section`` in place of BENCHMARKS.md's Determinism section (appended when it has
    none); the rest of the file stays as it is."""
    text = target.read_text() if target.exists() else "# Benchmarks\n"
    before, _, after = split_section(text)
    if not after:
        before = before.rstrip("\n") + "\n\n"
    else:
        section += "\n"
    tmp = target.with_name(f".{target.name}.det.tmp")
    tmp.write_text(before + section + after)
    tmp.replace(target)
