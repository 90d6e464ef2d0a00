"""The exceptions every layer raises, each with the CLI exit code it maps to.

A user-facing failure is one of these; the CLI prints ``str(error)`` on one
line and exits with ``error.exit_code``. Anything else escaping is a bug.
"""

from __future__ import annotations


class WasmformerError(Exception):
    """Base class: a failure with a clear one-line message and an exit code."""

    exit_code = 1


class InputError(WasmformerError):
    """The program could not be read: missing file, unknown kind of file."""

    exit_code = 2


class ModelFileError(InputError):
    """A saved model file is not one this version can load: not a wasmformer model, a
    different format or token-protocol version, or weights that fail their checksum."""


class CompileError(WasmformerError):
    """The C compiler (or the .wat assembler) rejected the source."""

    exit_code = 2


class ModuleError(WasmformerError):
    """A WebAssembly module is malformed or invalid.

    ``where`` names the place: section, function index, byte offset.
    """

    exit_code = 2
    kind = "invalid module"

    def __init__(self, message: str, where: str = ""):
        self.message = message
        self.where = where
        super().__init__(f"{self.kind}: {message}" + (f" ({where})" if where else ""))


class MalformedModule(ModuleError):
    """The bytes do not decode as the WebAssembly binary format."""

    kind = "malformed module"


class InvalidModule(ModuleError):
    """The module decodes but does not validate (types, indices, limits)."""

    kind = "invalid module"


class LinkError(WasmformerError):
    """The module imports something the host does not provide, or fails to instantiate."""

    exit_code = 2


class ModelNotProven(WasmformerError):
    """The numerics guard refuses to build a model in this dtype and length: it cannot prove
    that the model emits the exact tokens (``model.numerics``)."""

    exit_code = 2


class EngineRefusal(WasmformerError):
    """A transformer engine refuses, before it generates a token, a program or a stream it is
    not proven to execute exactly: an instruction its graph does not cover (division, a call of
    another instance's function, ...), or more positions than its model is proven for."""

    exit_code = 2


class Trap(WasmformerError):
    """The program trapped. ``reason`` is the spec's wording, e.g. 'integer divide by zero'."""

    exit_code = 134

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"trap: {reason}")


class BudgetExceeded(WasmformerError):
    """The step/token budget ran out before the program finished."""

    exit_code = 124
