"""The command line as a user meets it: outputs, exit codes, and bad input.

Every bad input must give exactly one line on stderr, the documented exit
code, and never a Python traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"

LOOP_FOREVER = '(module (func (export "_start") (loop (br 0))))'
DIVIDE_BY_ZERO = """(module (func (export "_start")
  i32.const 1 i32.const 0 i32.div_u drop))"""
WRITE_AND_EXIT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "hi\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 3))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $exit (i32.const 7))))"""


def wasmformer(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wasmformer", *args], capture_output=True, cwd=cwd, timeout=300
    )


def assert_one_clean_line(proc: subprocess.CompletedProcess, code: int, contains: str) -> None:
    err = proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, err)
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert contains in lines[0], err


def test_run_prints_stdout_and_returns_exit_code(tmp_path: Path) -> None:
    prog = tmp_path / "w.wat"
    prog.write_text(WRITE_AND_EXIT)
    proc = wasmformer("run", "--engine", "reference", str(prog))
    assert proc.stdout == b"hi\n"
    assert proc.returncode == 7
    assert proc.stderr == b""


def test_run_stats_go_to_stderr(tmp_path: Path) -> None:
    prog = tmp_path / "w.wat"
    prog.write_text(WRITE_AND_EXIT)
    proc = wasmformer("run", "--engine", "reference", str(prog), "--stats")
    assert proc.stdout == b"hi\n"
    assert b"instructions=" in proc.stderr and b"instr/s" in proc.stderr


def test_missing_file() -> None:
    assert_one_clean_line(wasmformer("run", "no/such/prog.c"), 2, "no such file")


def test_not_a_wasm_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"this is not wasm at all")
    assert_one_clean_line(wasmformer("run", str(junk)), 2, "not a WebAssembly binary")


def test_truncated_wasm(tmp_path: Path) -> None:
    good = tmp_path / "w.wat"
    good.write_text(WRITE_AND_EXIT)
    out = tmp_path / "w.wasm"
    assert wasmformer("compile", str(good), "-o", str(out)).returncode == 0
    data = out.read_bytes()
    out.write_bytes(data[: len(data) * 2 // 3])
    assert_one_clean_line(wasmformer("run", str(out)), 2, "malformed module")


def test_invalid_module(tmp_path: Path) -> None:
    # i32.add on an empty stack: decodes fine, fails validation.
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(
        bytes.fromhex("0061736d01000000")  # magic, version
        + bytes.fromhex("010401600000")  # type section: () -> ()
        + bytes.fromhex("03020100")  # function section: one function of type 0
        + bytes.fromhex("070a01065f73746172740000")  # export "_start" = function 0
        + bytes.fromhex("0a05010300" + "6a0b")  # code: no locals, i32.add, end
    )
    assert_one_clean_line(wasmformer("run", "--engine", "reference", str(bad)), 2, "invalid module")


def test_c_that_does_not_compile(tmp_path: Path) -> None:
    bad = tmp_path / "bad.c"
    bad.write_text("int main(void) { return undefined_name; }\n")
    proc = wasmformer("run", "--engine", "reference", str(bad))
    assert_one_clean_line(proc, 2, "compile error")
    assert b"undefined_name" in proc.stderr


def test_program_that_never_stops(tmp_path: Path) -> None:
    prog = tmp_path / "loop.wat"
    prog.write_text(LOOP_FOREVER)
    assert_one_clean_line(wasmformer("run", "--engine", "reference", str(prog), "--max-steps", "10000"), 124, "budget")


def test_trap(tmp_path: Path) -> None:
    prog = tmp_path / "trap.wat"
    prog.write_text(DIVIDE_BY_ZERO)
    assert_one_clean_line(wasmformer("run", "--engine", "reference", str(prog)), 134, "trap: integer divide by zero")


def test_unknown_engine(tmp_path: Path) -> None:
    prog = tmp_path / "w.wat"
    prog.write_text(WRITE_AND_EXIT)
    assert_one_clean_line(wasmformer("run", str(prog), "--engine", "warp"), 2, "unknown engine")


def test_compile_writes_wasm_and_no_partial_file_on_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.c"
    bad.write_text("int main(void) { return }\n")
    out = tmp_path / "bad.wasm"
    assert_one_clean_line(wasmformer("compile", str(bad), "-o", str(out)), 2, "compile error")
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


@pytest.mark.parametrize("args", [["check"], ["run", "--max-steps", "x", "a.c"]])
def test_usage_errors_are_not_tracebacks(args: list[str]) -> None:
    proc = wasmformer(*args)
    assert proc.returncode == 2
    assert b"Traceback" not in proc.stderr


# --- every row of docs/ERRORS.md not covered above ---

TRAPS = {
    "out of bounds memory access": "(memory 1) (func (export \"_start\") i32.const 70000 i32.load drop)",
    "unreachable": "(func (export \"_start\") unreachable)",
    "integer overflow": "(func (export \"_start\") i32.const 0x80000000 i32.const -1 i32.div_s drop)",
    "call stack exhausted": "(func $f (export \"_start\") call $f)",
    "indirect call type mismatch": (
        "(type $t (func (result i32))) (table 1 funcref) (elem (i32.const 0) $g) (func $g)"
        " (func (export \"_start\") i32.const 0 call_indirect (type $t) drop)"
    ),
    "uninitialized element": (
        "(type $t (func)) (table 1 funcref) (func (export \"_start\") i32.const 0 call_indirect (type $t))"
    ),
    "undefined element": (
        "(type $t (func)) (table 1 funcref) (func (export \"_start\") i32.const 5 call_indirect (type $t))"
    ),
    "unsupported: f64.const": "(func (export \"_start\") f64.const 1 f64.const 2 f64.add drop)",
}


@pytest.mark.parametrize("reason", sorted(TRAPS))
def test_every_trap_kind(tmp_path: Path, reason: str) -> None:
    prog = tmp_path / "trap.wat"
    prog.write_text(f"(module {TRAPS[reason]})")
    assert_one_clean_line(wasmformer("run", "--engine", "reference", str(prog)), 134, f"trap: {reason}")


@pytest.mark.parametrize(
    ("wat", "code", "message"),
    [
        ('(module (import "env" "f" (func)) (func (export "_start") call 0))', 2, "unknown import: env.f"),
        ('(module (func (export "main")))', 2, "no exported _start"),
        ('(module (func (export "_start") (local v128)))', 2, "SIMD is not supported"),
        ("(module (func (export \"_start\") i32.bogus))", 2, "wat error"),
    ],
)
def test_module_level_errors(tmp_path: Path, wat: str, code: int, message: str) -> None:
    prog = tmp_path / "m.wat"
    prog.write_text(wat)
    assert_one_clean_line(wasmformer("run", "--engine", "reference", str(prog)), code, message)


def test_directory_instead_of_program(tmp_path: Path) -> None:
    assert_one_clean_line(wasmformer("run", "--engine", "reference", str(tmp_path)), 2, "is a directory")


def test_negative_step_budget(tmp_path: Path) -> None:
    prog = tmp_path / "w.wat"
    prog.write_text(WRITE_AND_EXIT)
    assert_one_clean_line(wasmformer("run", "--engine", "reference", str(prog), "--max-steps", "-1"), 2, "--max-steps")


# --- resource limits (docs/ERRORS.md): wall clock, memory, call depth, prompt size ---


@pytest.mark.parametrize("command", ["run", "trace"])
def test_wall_clock_budget(tmp_path: Path, command: str) -> None:
    prog = tmp_path / "loop.wat"
    prog.write_text(LOOP_FOREVER)
    proc = wasmformer(command, str(prog), "--timeout", "0.3", "--max-steps", "0")
    assert_one_clean_line(proc, 124, "wall-clock budget of 0.3 s exhausted after")


def test_memory_over_the_host_limit(tmp_path: Path) -> None:
    prog = tmp_path / "big.wat"
    prog.write_text('(module (memory 5) (func (export "_start")))')
    assert_one_clean_line(wasmformer("run", "--engine", "reference", str(prog), "--max-memory-pages", "4"), 2,
                          "memory of 5 pages exceeds the host limit of 4 pages")


def test_call_depth_limit(tmp_path: Path) -> None:
    prog = tmp_path / "deep.wat"
    prog.write_text('(module (func $f (export "_start") call $f))')
    assert_one_clean_line(wasmformer("run", "--engine", "reference", str(prog), "--max-call-depth", "100"), 134,
                          "trap: call stack exhausted")


@pytest.mark.parametrize("option", [["--timeout", "-1"], ["--max-memory-pages", "65537"],
                                    ["--max-call-depth", "0"]])
def test_bad_limit_values(tmp_path: Path, option: list[str]) -> None:
    prog = tmp_path / "w.wat"
    prog.write_text(WRITE_AND_EXIT)
    proc = wasmformer("run", "--engine", "reference", str(prog), *option)
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr
    assert option[0].encode() in proc.stderr


def test_prompt_too_large(tmp_path: Path) -> None:
    prog = tmp_path / "data.wat"  # 64 MiB of non-zero memory: 84M prompt tokens
    prog.write_text('(module (memory 1024) (func $s (memory.fill (i32.const 0) (i32.const 7)'
                    ' (i32.const 0x4000000))) (start $s) (func (export "_start")))')
    assert_one_clean_line(wasmformer("trace", str(prog)), 2, "prompt too large: more than")


# --- the torch engine and the build command ---

LOOP_FIVE = """(module (func (export "_start") (local $i i32)
  (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if $l (i32.lt_u (local.get $i) (i32.const 5))))))"""
EXIT_THREE = """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (func (export "_start") (call $exit (i32.const 3))))"""
FILL_AND_EXIT = """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory 1)
  (func (export "_start")
    (memory.fill (i32.const 0) (i32.const 7) (i32.const 3)) (call $exit (i32.const 3))))"""


def test_run_engine_torch(tmp_path: Path) -> None:
    prog = tmp_path / "loop.wat"
    prog.write_text(LOOP_FIVE)
    proc = wasmformer("run", str(prog), "--engine", "torch", "--stats")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == wasmformer("run", "--engine", "reference", str(prog)).stdout == b""
    assert b"engine=torch prompt=" in proc.stderr and b"tokens/s" in proc.stderr


@pytest.mark.parametrize("engine", ["torch", "fast"])
def test_transformer_engine_refuses_what_it_does_not_cover(tmp_path: Path, engine: str) -> None:
    prog = tmp_path / "fill.wat"
    prog.write_text(FILL_AND_EXIT)
    refused = wasmformer("run", str(prog), "--engine", engine)
    assert_one_clean_line(refused, 2, f"the {engine} engine cannot execute this program yet: pc ")
    assert b"memory.fill" in refused.stderr
    assert wasmformer("run", "--engine", "reference", str(prog)).returncode == 3  # the reference engine runs it


def test_transformer_engine_runs_host_calls(tmp_path: Path) -> None:
    prog = tmp_path / "write.wat"
    prog.write_text(WRITE_AND_EXIT)
    proc = wasmformer("run", str(prog), "--engine", "fast")
    assert (proc.returncode, proc.stdout) == (7, b"hi\n"), proc.stderr


@pytest.mark.parametrize("engine", ["torch", "fast"])
def test_transformer_engine_refuses_a_long_stream(tmp_path: Path, engine: str) -> None:
    # the prompt lists every table slot: 110,000 slots are 1.1M tokens; with the budget
    # the stream could pass the largest bucket (2**23 positions)
    prog = tmp_path / "long.wat"
    prog.write_text('(module (table 110000 funcref) (func (export "_start")))')
    budget = str(8 * 2**20 - 10**6)
    assert_one_clean_line(wasmformer("run", str(prog), "--engine", engine, "--max-tokens", budget), 2,
                          "the universal model is proven exact for at most")


@pytest.mark.parametrize("engine", ["torch", "fast"])
def test_transformer_engine_token_budget(tmp_path: Path, engine: str) -> None:
    prog = tmp_path / "loop.wat"
    prog.write_text(LOOP_FOREVER)
    assert_one_clean_line(wasmformer("run", str(prog), "--engine", engine, "--max-tokens", "30"),
                          124, "token budget of 30 exhausted (trace tokens generated)")


def test_torch_wall_clock_budget(tmp_path: Path) -> None:
    prog = tmp_path / "loop.wat"
    prog.write_text(LOOP_FOREVER)
    assert_one_clean_line(wasmformer("run", str(prog), "--engine", "torch", "--timeout", "0.5"),
                          124, "wall-clock budget of 0.5 s exhausted after")


def test_run_engine_fast(tmp_path: Path) -> None:
    prog = tmp_path / "loop.wat"
    prog.write_text(LOOP_FIVE)
    proc = wasmformer("run", str(prog), "--engine", "fast", "--stats")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b""
    assert b"engine=fast prompt=" in proc.stderr and b"tokens/s scans=0 min_margin=" in proc.stderr


def test_max_tokens_needs_torch(tmp_path: Path) -> None:
    prog = tmp_path / "loop.wat"
    prog.write_text(LOOP_FIVE)
    assert_one_clean_line(wasmformer("run", "--engine", "reference", str(prog), "--max-tokens", "9"), 2,
                          "max_tokens bounds the torch and fast engines")


def test_build_float32_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "m32.safetensors"
    assert_one_clean_line(wasmformer("build", "--dtype", "float32", "--max-len", "2048", "-o",
                                     str(out)), 2, "float32 at max_len 2048 is not proven exact")
    assert list(tmp_path.iterdir()) == []


def test_build_writes_a_model_that_loads_bit_identical(tmp_path: Path) -> None:
    import torch

    from wasmformer.engine import universal_model
    from wasmformer.model import load_model

    out = tmp_path / "m.safetensors"
    proc = wasmformer("build", "--max-len", "2048", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert b"universal model: float64, max_len 2048" in proc.stderr
    loaded, built = load_model(out), universal_model(2048)
    tokens = torch.arange(0, 900).remainder(931).view(1, -1)  # any tokens: the same numbers
    with torch.inference_mode():
        assert torch.equal(loaded(tokens), built(tokens))


def test_batch_runs_programs_in_a_pool(tmp_path: Path) -> None:
    """Three programs over two worker processes: each one's output in order, one line each
    on stderr, the first non-zero exit code; the same outputs as one run at a time."""
    names = []
    for name, wat in (("write", WRITE_AND_EXIT), ("loop", LOOP_FIVE), ("exit", EXIT_THREE)):
        (tmp_path / f"{name}.wat").write_text(wat)
        names.append(str(tmp_path / f"{name}.wat"))
    forever = tmp_path / "forever.wat"
    forever.write_text(LOOP_FOREVER)
    proc = wasmformer("batch", "--engine", "reference", *names, str(forever), "--jobs", "2",
                      "--max-steps", "1000")
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == b"hi\n" == wasmformer("run", "--engine", "reference", names[0]).stdout
    lines = proc.stderr.decode().splitlines()
    assert [line.split(":")[0] for line in lines[:4]] == names + [str(forever)]
    assert "exit=7" in lines[0] and "exit=0" in lines[1] and "exit=3" in lines[2]
    assert "BudgetExceeded" in lines[3] and lines[4].startswith("batch: 4 programs in")
