"""The compiler's exception (``compiler`` imports nothing from wasmformer but ``graph``)."""

from __future__ import annotations


class CompilerError(ValueError):
    """A graph cannot be compiled: no output, or a schedule/allocation invariant broken."""
