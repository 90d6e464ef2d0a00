"""The independent judge: run a WASI program under wasmtime, count its fuel, time it.

Used by the tests (outputs and fuel must match) and by ``wasmformer bench`` (the native
baseline); it needs the ``wasmtime`` package (the ``test`` extra).

wasmtime shares no code with wasmformer, so agreement with it is evidence,
not a tautology. Fuel is wasmtime's count of executed WebAssembly operators;
with fuel on, it charges (observed on wasmtime 50):

- 1 per operator, except 0 for ``nop``, ``drop``, ``block``, ``loop``,
  ``else``, ``end``, ``return`` and ``unreachable``;
- 1 on entry to every WebAssembly function (so a call costs 1 at the call
  site plus 1 in the callee; a call to a host import costs just the 1);
- bulk operations also charge their length: ``memory.fill/copy/init`` 1 per
  byte, ``table.fill/copy/init/grow`` 1 per element, ``memory.grow`` 1 per
  page (a failing ``memory.grow`` only when its delta is at most 128 pages).

Fuel is exact for programs that return or call ``proc_exit``; on a trap
other than ``unreachable`` wasmtime has not yet saved the fuel of the
current function, so the count reported then is only a lower bound.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import wasmtime

TRAP_EXIT_CODE = 134


@dataclass(frozen=True)
class JudgeResult:
    stdout: bytes
    stderr: bytes
    exit_code: int
    fuel: int  # operators executed by _start, as wasmtime counts them
    trap: str | None  # wasmtime's trap reason, e.g. "integer divide by zero"


def trap_reason(error: wasmtime.Trap) -> str:
    """The one-line reason from wasmtime's multi-line trap message."""
    text = str(error)
    marker = "wasm trap: "
    if marker in text:
        return text.split(marker, 1)[1].strip().splitlines()[0]
    return text.strip().splitlines()[-1]


def run_wasmtime(wasm: bytes, *, fuel: int = 10**12) -> JudgeResult:
    """Run a WASI command module's ``_start`` with empty args and environ."""
    config = wasmtime.Config()
    config.consume_fuel = True
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    with tempfile.TemporaryDirectory(prefix="wasmformer-judge-") as tmp:
        out_path, err_path = Path(tmp, "stdout"), Path(tmp, "stderr")
        wasi = wasmtime.WasiConfig()
        wasi.stdout_file = str(out_path)
        wasi.stderr_file = str(err_path)
        store.set_wasi(wasi)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        # Fuel must be set before instantiation (segment initialisers may use
        # some), but only what _start burns is counted.
        store.set_fuel(fuel)
        instance = linker.instantiate(store, wasmtime.Module(engine, wasm))
        start = instance.exports(store)["_start"]
        before = store.get_fuel()
        exit_code, trap = 0, None
        try:
            start(store)
        except wasmtime.ExitTrap as error:
            exit_code = error.code
        except wasmtime.Trap as error:
            exit_code, trap = TRAP_EXIT_CODE, trap_reason(error)
        used = before - store.get_fuel()
        return JudgeResult(out_path.read_bytes(), err_path.read_bytes(), exit_code, used, trap)


def time_wasmtime(wasm: bytes, *, repeats: int = 3) -> float:
    """Best wall time of ``_start`` (instantiation included, compilation and fuel not), in s.

    Output goes to a temporary file; a trap or ``proc_exit`` ends a run as it would natively.
    """
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, wasm)  # compiled once, outside the timing
    best = float("inf")
    with tempfile.TemporaryDirectory(prefix="wasmformer-judge-") as tmp:
        for _ in range(repeats):
            store = wasmtime.Store(engine)
            wasi = wasmtime.WasiConfig()
            wasi.stdout_file = wasi.stderr_file = str(Path(tmp, "out"))
            store.set_wasi(wasi)
            linker = wasmtime.Linker(engine)
            linker.define_wasi()
            start = time.perf_counter()
            instance = linker.instantiate(store, module)
            try:
                instance.exports(store)["_start"](store)
            except (wasmtime.ExitTrap, wasmtime.Trap):
                pass
            best = min(best, time.perf_counter() - start)
    return best
