"""The machine: WebAssembly lowered into a flat program, and its reference executor.

- ``semantics``: what every integer instruction computes (``NUMERIC``, ``LOADS``, ``STORES``);
- ``program``/``lower``: the machine program a module is lowered into;
- ``reference``: the plain interpreter of that program;
- ``instance``: instantiation, state, ``invoke``;
- ``wasi``/``hosts``: the imports a program can have (WASI, spectest, other instances);
- the token protocol (docs/PROTOCOL.md): ``fuse`` (three-address fused program), ``vocab``
  (the vocabulary), ``prompt`` (program + state as tokens), ``tokens`` (the reference token
  machine), ``detokenize`` (trace tokens -> output, exit code, trap, results).
"""

from .detokenize import Outcome, detokenize
from .fuse import FusedInstr, FusedProgram, fuse
from .hosts import Linker, SpectestHost
from .instance import Host, HostLimits, Instance
from .lower import lower
from .program import MFunc, MInstr, Program
from .prompt import prompt_tokens
from .reference import Deadline
from .runtime import ExternRef, Global, HostFunction, Memory, Table, WasmFunction
from .semantics import LOADS, NUMERIC, STORES
from .tokens import TokenMachine, Trace, trace_tokens
from .wasi import ProcExit, WasiHost

__all__ = [
    "LOADS", "NUMERIC", "STORES", "Deadline", "ExternRef", "FusedInstr", "FusedProgram", "Global", "Host",
    "HostFunction", "HostLimits", "Instance", "Linker", "MFunc", "MInstr", "Memory", "Outcome",
    "ProcExit", "Program", "SpectestHost", "Table", "TokenMachine", "Trace", "WasiHost",
    "WasmFunction", "detokenize", "fuse", "lower", "prompt_tokens", "trace_tokens",
]
