"""wasmformer: a transformer that executes WebAssembly programs in its own weights.

The public API: ``run`` a WASI program, ``load`` a module and ``invoke`` its exports,
``trace`` a program's run as the token protocol's prompt and trace.
"""

from .api import Instance, RunResult, TraceResult, load, run, run_many, trace
from .errors import (
    BudgetExceeded,
    CompileError,
    EngineRefusal,
    InputError,
    InvalidModule,
    LinkError,
    MalformedModule,
    ModelNotProven,
    Trap,
    WasmformerError,
)

__all__ = [
    "BudgetExceeded",
    "CompileError",
    "EngineRefusal",
    "InputError",
    "Instance",
    "InvalidModule",
    "LinkError",
    "MalformedModule",
    "ModelNotProven",
    "RunResult",
    "TraceResult",
    "Trap",
    "WasmformerError",
    "load",
    "run",
    "run_many",
    "trace",
]
