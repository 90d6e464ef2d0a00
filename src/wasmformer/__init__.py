"""wasmformer: a transformer that executes WebAssembly programs in its own weights.

The public API: ``run`` a WASI program, ``load`` a module and ``invoke`` its exports.
"""

from .api import Instance, RunResult, load, run
from .errors import (
    BudgetExceeded,
    CompileError,
    InputError,
    InvalidModule,
    LinkError,
    MalformedModule,
    Trap,
    WasmformerError,
)

__all__ = [
    "BudgetExceeded",
    "CompileError",
    "InputError",
    "Instance",
    "InvalidModule",
    "LinkError",
    "MalformedModule",
    "RunResult",
    "Trap",
    "WasmformerError",
    "load",
    "run",
]
