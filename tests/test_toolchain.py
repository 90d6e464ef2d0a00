"""C to WebAssembly through zig cc: output that runs, a cache, clear errors."""

from __future__ import annotations

import subprocess

import pytest

from wasmformer import toolchain
from wasmformer.errors import CompileError, InputError
from wasmformer.judge import run_wasmtime
from wasmformer.toolchain import compile_c, program_bytes
from wasmformer.wasm import load_module

PRINTF_PROGRAM = r"""
#include <stdio.h>
#include <stdint.h>
int main(void) {
    uint64_t big = 1ull << 40;
    printf("%d %u %x %08x %s %c %lld %llu %llx\n", -5, 5u, 255u, 255u, "str", 'c',
           -(long long)big, (unsigned long long)big, (unsigned long long)big);
    return 2;
}
"""
PRINTF_OUTPUT = b"-5 5 ff 000000ff str c -1099511627776 1099511627776 10000000000\n"


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """An empty compile cache, so each test sees a real compile first."""
    monkeypatch.setenv("WASMFORMER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_compiled_c_runs_under_wasmtime(fresh_cache):
    wasm = compile_c(PRINTF_PROGRAM, name="printf.c")
    assert wasm.startswith(b"\0asm")
    result = run_wasmtime(wasm)
    assert (result.stdout, result.exit_code, result.trap) == (PRINTF_OUTPUT, 2, None)


def test_compiled_c_is_a_valid_wasi_command(fresh_cache):
    module = load_module(compile_c(PRINTF_PROGRAM, name="printf.c"))
    assert {imp.module for imp in module.imports} == {"wasi_snapshot_preview1"}
    assert {e.name for e in module.exports if e.kind == "func"} >= {"_start"}


def test_second_compile_is_a_cache_hit(fresh_cache, monkeypatch):
    first = compile_c(PRINTF_PROGRAM, name="printf.c")
    assert list(fresh_cache.rglob("*.wasm")), "the compile left nothing in the cache"

    def no_compiler(*args, **kwargs):
        raise AssertionError(f"the compiler ran again: {args}")

    monkeypatch.setattr(subprocess, "run", no_compiler)
    assert compile_c(PRINTF_PROGRAM, name="printf.c") == first


def test_different_source_is_not_a_cache_hit(fresh_cache):
    one = compile_c("int main(void) { return 1; }\n", name="one.c")
    two = compile_c("int main(void) { return 2; }\n", name="two.c")
    assert one != two
    assert run_wasmtime(two).exit_code == 2


def test_compile_error_shows_the_compilers_message(fresh_cache):
    with pytest.raises(CompileError) as caught:
        compile_c("int main(void) { return undefined_name; }\n", name="bad.c")
    message = str(caught.value)
    assert "use of undeclared identifier 'undefined_name'" in message
    assert "bad.c:1:" in message  # the user's file name, not a temporary path
    assert "\n" not in message
    assert caught.value.exit_code != 0


def test_program_bytes_accepts_a_c_file_and_wasm_bytes(fresh_cache, tmp_path):
    path = tmp_path / "prog.c"
    path.write_text(PRINTF_PROGRAM)
    from_file = program_bytes(path)
    assert run_wasmtime(from_file.wasm).stdout == PRINTF_OUTPUT
    assert program_bytes(from_file.wasm).wasm == from_file.wasm


def test_program_bytes_refuses_missing_and_non_wasm_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        program_bytes(tmp_path / "missing.c")
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"not wasm at all")
    with pytest.raises(InputError, match="not a WebAssembly binary"):
        program_bytes(junk)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("WASMFORMER_CACHE", str(tmp_path / "elsewhere"))
    assert toolchain.cache_dir() == tmp_path / "elsewhere"
