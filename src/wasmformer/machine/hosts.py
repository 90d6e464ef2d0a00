"""Import providers: a ``Linker`` that combines hosts and registered instances, and ``spectest``.

A host is anything with ``resolve(module, name, expected) -> Extern | None``
(``expected`` is the import's FuncType, TableType, MemType or GlobalType).
"""

from __future__ import annotations

import struct
from typing import Any

from ..wasm.module import FuncType, GlobalType
from .instance import Host, Instance
from .runtime import PAGE_SIZE, Extern, Global, HostFunction, Memory, Table


class Linker:
    """Resolves imports from registered instances (by module name), then from hosts in order."""

    def __init__(self, *hosts: Host):
        self.hosts = list(hosts)
        self.modules: dict[str, dict[str, Extern]] = {}

    def register(self, name: str, instance: Instance) -> None:
        """Make ``instance``'s exports importable as module ``name``."""
        self.modules[name] = dict(instance.exports)

    def resolve(self, module: str, name: str, expected: Any) -> Extern | None:
        if module in self.modules:
            return self.modules[module].get(name)
        for host in self.hosts:
            found = host.resolve(module, name, expected)
            if found is not None:
                return found
        return None


def _f32_bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def _f64_bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


class SpectestHost:
    """The ``spectest`` module the official test suite imports from (its print functions do nothing)."""

    def __init__(self) -> None:
        prints = {"print": (), "print_i32": ("i32",), "print_i64": ("i64",),
                  "print_f32": ("f32",), "print_f64": ("f64",),
                  "print_i32_f32": ("i32", "f32"), "print_f64_f64": ("f64", "f64")}
        self.exports: dict[str, Extern] = {
            name: HostFunction(FuncType(params, ()), lambda caller, args: [], f"spectest.{name}")
            for name, params in prints.items()
        }
        self.exports.update({
            "global_i32": Global(GlobalType("i32", False), 666),
            "global_i64": Global(GlobalType("i64", False), 666),
            "global_f32": Global(GlobalType("f32", False), _f32_bits(666.6)),
            "global_f64": Global(GlobalType("f64", False), _f64_bits(666.6)),
            "table": Table("funcref", [None] * 10, 20),
            "memory": Memory(bytearray(PAGE_SIZE), 2),
        })

    def resolve(self, module: str, name: str, expected: Any) -> Extern | None:
        return self.exports.get(name) if module == "spectest" else None
