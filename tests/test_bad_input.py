"""Every command against every kind of bad input: one line on stderr, the documented exit
code (docs/ERRORS.md), never a Python traceback. Runs ``cli.main`` in-process (the same
entry point as the console script) so the whole grid stays fast.

Also the resource limits as a C programmer meets them: a C function that recurses
forever traps "call stack exhausted" (as in wasmtime), and a C program growing memory
past ``--max-memory-pages`` sees the grow fail and goes on.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from wasmformer import cli
from wasmformer.judge import run_wasmtime
from wasmformer.toolchain import compile_c
from wasmformer.wasm import load_module

VALID_WAT = '(module (func (export "_start")))'
# i32.add on an empty stack: decodes fine, fails validation.
INVALID_WASM = bytes.fromhex(
    "0061736d01000000" "010401600000" "03020100" "070a01065f73746172740000" "0a05010300" "6a0b"
)


def _bad_inputs(tmp: Path) -> dict[str, tuple[Path, str]]:
    """Each bad input as (path, words its one line must contain)."""
    junk = tmp / "junk.wasm"
    junk.write_bytes(b"this is not wasm at all")
    truncated = tmp / "truncated.wasm"
    truncated.write_bytes(INVALID_WASM[:-3])
    invalid = tmp / "invalid.wasm"
    invalid.write_bytes(INVALID_WASM)
    binary_c = tmp / "binary.c"
    binary_c.write_bytes(b"\xff\xfe\x00int main")
    bad_wat = tmp / "bad.wat"
    bad_wat.write_text('(module (func (export "_start") i32.bogus))')
    simd = tmp / "simd.wat"
    simd.write_text('(module (func (export "_start") (local v128)))')
    return {
        "missing": (tmp / "no" / "such.c", "no such file"),
        "directory": (tmp, "is a directory"),
        "junk": (junk, "not a WebAssembly binary"),
        "truncated": (truncated, "malformed module"),
        "invalid": (invalid, "invalid module"),
        "binary .c": (binary_c, "not a text file"),
        "bad wat": (bad_wat, "wat error"),
        "simd": (simd, "SIMD is not supported"),
    }


COMMANDS = {
    "run": lambda prog, tmp: ["run", prog],
    "trace": lambda prog, tmp: ["trace", prog],
    "check": lambda prog, tmp: ["check", prog],
    "dataset": lambda prog, tmp: ["dataset", prog, "-o", str(tmp / "out.jsonl")],
}


def main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    """``wasmformer ARGS`` in-process: (exit code, stderr); stdout goes to ``capsys.stdout``."""
    monkeypatch.setattr(sys, "argv", ["wasmformer", *args])
    with pytest.raises(SystemExit) as done:
        cli.main()
    captured = capsys.readouterr()
    capsys.stdout = captured.out
    return done.value.code, captured.err


def assert_one_clean_line(code: int, err: str, want_code: int, contains: str) -> None:
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert (code, len(lines)) == (want_code, 1), err
    assert contains in lines[0], err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_every_bad_input_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, command: str
) -> None:
    for name, (path, contains) in _bad_inputs(tmp_path).items():
        code, err = main(monkeypatch, capsys, *COMMANDS[command](str(path), tmp_path))
        assert_one_clean_line(code, err, 2, contains)
        assert not (tmp_path / "out.jsonl").exists(), name  # nothing half-written


def test_compile_refuses_bad_input_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    inputs = _bad_inputs(tmp_path)
    for name in ("missing", "binary .c", "bad wat", "simd"):
        path, contains = inputs[name]
        code, err = main(monkeypatch, capsys, "compile", str(path), "-o", str(tmp_path / "o.wasm"))
        assert_one_clean_line(code, err, 2, contains)
    code, err = main(monkeypatch, capsys, "compile", str(inputs["invalid"][0]))
    assert_one_clean_line(code, err, 2, "already a .wasm file")
    assert not (tmp_path / "o.wasm").exists()


def test_a_valid_program_passes_the_same_grid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """The grid's commands do accept good input (so the refusals above mean something)."""
    prog = tmp_path / "ok.wat"
    prog.write_text(VALID_WAT)
    for command in sorted(COMMANDS):
        code, err = main(monkeypatch, capsys, *COMMANDS[command](str(prog), tmp_path))
        assert code == 0 and "Traceback" not in err, (command, err)
    assert (tmp_path / "out.jsonl").stat().st_size > 0


def test_an_internal_error_is_one_line_with_exit_70(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(cli, "load_module", broken)
    prog = tmp_path / "ok.wat"
    prog.write_text(VALID_WAT)
    code, err = main(monkeypatch, capsys, "check", str(prog))
    assert code == cli.EXIT_INTERNAL and "Traceback" not in err
    assert err.strip().splitlines() == ["internal error: KeyError: 'a bug' (set WASMFORMER_DEBUG=1 for details)"]


# --- resource limits met from C ---

RECURSE_FOREVER = r"""
volatile int sink;
int down(int n) { sink = n; return down(n + 1) + sink; }  /* no base case: never returns */
int main(void) { return down(0); }
"""

GROW_PAST_THE_LIMIT = r"""
#include <stdio.h>
#include <stdlib.h>
int main(void) {
    int grown = 0;
    while (__builtin_wasm_memory_grow(0, 1) != (__SIZE_TYPE__)-1) grown++;
    void *volatile big = malloc(32 << 20);  /* more than the limit: NULL, not a trap (volatile:
                                               clang may not assume the malloc succeeds) */
    printf("grew %d pages to %d; malloc %s\n", grown, (int)__builtin_wasm_memory_size(0),
           big ? "succeeded" : "returned NULL");
    return 0;
}
"""


def test_c_recursing_forever_traps_call_stack_exhausted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    prog = tmp_path / "recurse.c"
    prog.write_text(RECURSE_FOREVER)
    code, err = main(monkeypatch, capsys, "run", str(prog), "--engine", "reference",
                     "--max-call-depth", "1000")
    assert_one_clean_line(code, err, 134, "trap: call stack exhausted")
    assert run_wasmtime(compile_c(RECURSE_FOREVER)).trap == "call stack exhausted"


def test_c_growing_memory_past_the_host_limit_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    prog = tmp_path / "grow.c"
    prog.write_text(GROW_PAST_THE_LIMIT)
    code, err = main(monkeypatch, capsys, "run", str(prog), "--engine", "reference",
                     "--max-memory-pages", "300")
    assert code == 0 and err == "", err
    initial = load_module(compile_c(GROW_PAST_THE_LIMIT)).mem_types[0].limits.min
    assert 0 < initial < 300
    assert capsys.stdout == f"grew {300 - initial} pages to 300; malloc returned NULL\n"
