"""The examples in examples/, judged by wasmtime and run through our engines.

For every example: (a) wasmtime prints exactly the checked-in expected
output, so the expected files are vouched for by an engine that shares no
code with ours; (b) the reference machine gives the same stdout, stderr,
exit code and executed-instruction count as wasmtime's fuel.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import wasmtime

import wasmformer
from wasmformer.judge import JudgeResult, run_wasmtime
from wasmformer.toolchain import compile_c

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
# Examples longer than this are left to `pytest -m slow`. The reference machine
# runs a few million instructions a second, so today every example runs by default.
SLOW_INSTRUCTIONS = 20_000_000
# The manifest's instruction counts are a documented size, not a contract:
# a new compiler may shift them a little.
COUNT_DRIFT = 0.25


@dataclass(frozen=True)
class Example:
    name: str
    description: str
    exit_code: int
    stderr: bytes
    instructions: int

    @property
    def source(self) -> Path:
        return EXAMPLES_DIR / f"{self.name}.c"

    @property
    def expected_stdout(self) -> bytes:
        return (EXAMPLES_DIR / f"{self.name}.expected").read_bytes()


def load_manifest() -> list[Example]:
    table = tomllib.loads((EXAMPLES_DIR / "MANIFEST.toml").read_text())
    return [
        Example(
            name=name,
            description=entry["description"],
            exit_code=entry.get("exit_code", 0),
            stderr=entry.get("stderr", "").encode(),
            instructions=entry["instructions"],
        )
        for name, entry in table.items()
    ]


EXAMPLES = load_manifest()


def params(*, mark_slow: bool) -> list:
    """One pytest param per example; long ones marked slow if asked."""
    result = []
    for example in EXAMPLES:
        slow = mark_slow and example.instructions > SLOW_INSTRUCTIONS
        marks = [pytest.mark.slow] if slow else []
        result.append(pytest.param(example, id=example.name, marks=marks))
    return result


@functools.cache
def compiled(name: str) -> bytes:
    source = (EXAMPLES_DIR / f"{name}.c").read_text()
    return compile_c(source, name=f"{name}.c")


@functools.cache
def judged(name: str) -> JudgeResult:
    return run_wasmtime(compiled(name))


def test_manifest_lists_every_example():
    sources = {path.stem for path in EXAMPLES_DIR.glob("*.c")}
    expected = {path.stem for path in EXAMPLES_DIR.glob("*.expected")}
    listed = {example.name for example in EXAMPLES}
    assert sources == listed, "every examples/*.c needs a MANIFEST.toml entry, and vice versa"
    assert expected == listed, "every example needs its .expected file"


@pytest.mark.parametrize("example", params(mark_slow=False))
def test_wasmtime_prints_expected_output(example: Example):
    result = judged(example.name)
    assert result.stdout == example.expected_stdout
    assert result.stderr == example.stderr
    assert result.exit_code == example.exit_code
    assert (result.trap is not None) == (example.exit_code == 134), result.trap
    low, high = example.instructions * (1 - COUNT_DRIFT), example.instructions * (1 + COUNT_DRIFT)
    assert low <= result.fuel <= high, (
        f"{example.name} now runs {result.fuel} instructions; update MANIFEST.toml"
    )


@pytest.mark.parametrize("example", params(mark_slow=True))
def test_reference_matches_wasmtime(example: Example):
    judge = judged(example.name)
    result = wasmformer.run(compiled(example.name), engine="reference")
    assert result.stdout == judge.stdout
    assert result.stderr == judge.stderr
    assert result.exit_code == judge.exit_code
    assert (result.trap is None) == (judge.trap is None), (result.trap, judge.trap)
    assert result.instructions == judge.fuel


# The judge itself, on hand-written programs whose fuel is counted by hand
# with the rules in judge.py's docstring.

WASI_PRELUDE = """
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hi\\n")
"""


def judge_wat(body: str, *, fuel: int = 10**12) -> JudgeResult:
    module = f'(module {WASI_PRELUDE} (func (export "_start") {body}))'
    return run_wasmtime(wasmtime.wat2wasm(module), fuel=fuel)


def test_judge_normal_return_is_exit_code_zero():
    # entry 1 + i32.const 1 + nop 0 + drop 0 + end 0
    assert judge_wat("i32.const 1 nop drop") == JudgeResult(b"", b"", 0, 2, None)


def test_judge_captures_stdout_and_proc_exit_code():
    # An iovec {buf=16, len=3} at address 0, then fd_write(1, 0, 1, 8), then exit 7.
    body = """
      i32.const 0 i32.const 16 i32.store
      i32.const 4 i32.const 3 i32.store
      i32.const 1 i32.const 0 i32.const 1 i32.const 8 call $fd_write drop
      i32.const 7 call $proc_exit
    """
    # entry 1 + 6 (stores) + 5 (fd_write and its args) + 2 (proc_exit and its arg)
    assert judge_wat(body) == JudgeResult(b"hi\n", b"", 7, 14, None)


def test_judge_counts_loops_branches_and_calls():
    module = f"""(module {WASI_PRELUDE}
      (func $twice (param i32) (result i32) local.get 0 local.get 0 i32.add)
      (func (export "_start") (local i32)
        block
          loop
            local.get 0 call $twice drop
            local.get 0 i32.const 1 i32.add local.tee 0
            i32.const 3 i32.ne br_if 0
          end
        end))"""
    # _start entry 1; each of 3 iterations: local.get + call (2) + $twice
    # (entry 1 + 3 ops) + 7 ops up to and including br_if = 13;
    # block, loop, end and drop are free.
    result = run_wasmtime(wasmtime.wat2wasm(module))
    assert (result.exit_code, result.fuel) == (0, 1 + 3 * 13)


def test_judge_reports_traps_with_exit_code_134():
    result = judge_wat("i32.const 1 i32.const 0 i32.div_u drop")
    assert (result.exit_code, result.trap) == (134, "integer divide by zero")
    # `unreachable` costs nothing but saves the fuel count, so it is exact.
    result = judge_wat("i32.const 1 drop unreachable")
    assert (result.exit_code, result.fuel) == (134, 2)
    assert "unreachable" in result.trap


def test_judge_stops_when_fuel_runs_out():
    result = judge_wat("loop br 0 end", fuel=1000)
    assert (result.exit_code, result.fuel) == (134, 1000)
    assert "fuel" in result.trap
