"""The machine: WebAssembly lowered into a flat program, and its reference executor.

- ``semantics``: what every integer instruction computes (``NUMERIC``, ``LOADS``, ``STORES``);
- ``program``/``lower``: the machine program a module is lowered into;
- ``reference``: the plain interpreter of that program;
- ``instance``: instantiation, state, ``invoke``;
- ``wasi``/``hosts``: the imports a program can have (WASI, spectest, other instances).
"""

from .hosts import Linker, SpectestHost
from .instance import Host, HostLimits, Instance
from .lower import lower
from .program import MFunc, MInstr, Program
from .runtime import ExternRef, Global, HostFunction, Memory, Table, WasmFunction
from .semantics import LOADS, NUMERIC, STORES
from .wasi import ProcExit, WasiHost

__all__ = [
    "LOADS", "NUMERIC", "STORES", "ExternRef", "Global", "Host", "HostFunction", "HostLimits",
    "Instance", "Linker", "MFunc", "MInstr", "Memory", "ProcExit", "Program", "SpectestHost",
    "Table", "WasiHost", "WasmFunction", "lower",
]
