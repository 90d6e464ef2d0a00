"""The run-time objects an instance owns or imports: memories, tables, globals, functions.

They are plain mutable objects so that two instances can share one (an
exported memory imported elsewhere is the very same ``Memory``). A function
reference (a ``funcref`` value, a table element) is a ``WasmFunction`` or a
``HostFunction`` object, ``None`` for null; an ``externref`` value is any
host object (``ExternRef`` for the spec tests), ``None`` for null.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..wasm.module import FuncType, GlobalType, ValType

if TYPE_CHECKING:
    from .instance import Instance

PAGE_SIZE = 65536
MAX_PAGES = 65536  # 4 GiB: the most a 32-bit memory can address
MAX_TABLE_SIZE = 2**32 - 1


@dataclass(eq=False)
class Memory:
    """A linear memory. ``data`` is grown in place, so references to it stay valid."""

    data: bytearray
    max_pages: int | None  # the declared maximum
    host_limit_pages: int = MAX_PAGES  # what this host is willing to allocate

    @classmethod
    def new(cls, min_pages: int, max_pages: int | None, host_limit_pages: int) -> Memory:
        return cls(bytearray(min_pages * PAGE_SIZE), max_pages, host_limit_pages)

    @property
    def pages(self) -> int:
        return len(self.data) // PAGE_SIZE

    def grow(self, delta: int) -> int:
        """Add ``delta`` zeroed pages; the old size in pages, or -1 (as unsigned) on failure."""
        old = self.pages
        limit = min(MAX_PAGES, self.host_limit_pages)
        if self.max_pages is not None:
            limit = min(limit, self.max_pages)
        if old + delta > limit:
            return 0xFFFF_FFFF
        self.data.extend(bytes(delta * PAGE_SIZE))
        return old


@dataclass(eq=False)
class Table:
    """A table of references (function objects, host values or None)."""

    elem_type: ValType
    elems: list
    max_size: int | None  # the declared maximum
    host_limit: int = MAX_TABLE_SIZE  # what this host is willing to allocate

    def grow(self, delta: int, init: Any) -> int:
        """Add ``delta`` copies of ``init``; the old size, or -1 (as unsigned) on failure."""
        old = len(self.elems)
        limit = min(MAX_TABLE_SIZE, self.host_limit)
        if self.max_size is not None:
            limit = min(limit, self.max_size)
        if old + delta > limit:
            return 0xFFFF_FFFF
        self.elems.extend([init] * delta)
        return old


@dataclass(eq=False)
class Global:
    type: GlobalType
    value: Any


@dataclass(eq=False)
class WasmFunction:
    """Function ``index`` of ``instance``'s function index space, defined by its module."""

    type: FuncType
    instance: Instance
    index: int


@dataclass(eq=False)
class HostFunction:
    """A function the host provides. ``call(caller, args)`` returns the results as a list.

    ``caller`` is the instance whose code made the call (WASI reads its memory).
    Values are unsigned ints for i32/i64 (results are masked by the caller).
    """

    type: FuncType
    call: Callable[[Instance, list], list]
    name: str = "host function"


@dataclass(frozen=True)
class ExternRef:
    """An opaque host reference carrying a value (what the spec tests pass as `ref.extern N`)."""

    value: Any = field(default=None)


Function = WasmFunction | HostFunction
Extern = Function | Memory | Table | Global
