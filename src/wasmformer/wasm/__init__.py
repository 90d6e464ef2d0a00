"""WebAssembly front end: decode and validate a binary module (everything but SIMD)."""

from __future__ import annotations

from .decode import decode
from .module import Module
from .validate import validate


def load_module(data: bytes) -> Module:
    """Decode and validate ``data``; raises MalformedModule or InvalidModule."""
    module = decode(data)
    validate(module)
    return module


__all__ = ["Module", "decode", "load_module", "validate"]
