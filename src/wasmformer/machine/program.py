"""The machine program: what a WebAssembly module is lowered into.

A ``Program`` holds one flat array of machine instructions (``code``) for all
of the module's defined functions, each function a contiguous run starting at
its ``entry`` pc. Structured control is gone: branches name absolute pcs and
carry the operand-stack unwinding they need, computed statically. Every
instruction records where it came from (function index, byte offset,
WebAssembly op name) and its *fuel*: how many WebAssembly instructions it
counts for, the way wasmtime's fuel counts them (see docs/MACHINE.md).

Machine opcodes (``MInstr.op``) and their ``args``:

  <integer numeric op>      ()                  e.g. 'i32.add', 'i64.clz': see semantics.NUMERIC
  i32.const / i64.const     (value,)            unsigned
  <load> / <store>          (offset,)           e.g. 'i32.load8_s': see semantics.LOADS/STORES
  local.get/set/tee         (index,)            index into params + declared locals
  global.get/set            (index,)
  enter                     (zeros,)            function entry: append the declared locals' zeros
  call                      (func,)             function index space (imports first)
  call_indirect             (type, table)
  br                        (target, keep, drop)
  br_if                     (target, keep, drop) pops an i32; branches when non-zero
  br_table                  (targets, default)   each a (target, keep, drop)
  br_unless                 (target,)           from `if`: pops an i32; branches when zero
  jump                      (target,)           from `else`: skip the else arm
  return                    (keep, drop)
  unreachable               ()                  traps 'unreachable'
  unsupported               (reason,)           a float instruction: traps with ``reason``
  drop, select              ()
  ref.null, ref.is_null     ()
  ref.func                  (func,)
  memory.size/grow/fill/copy ()
  memory.init, data.drop    (data,)
  table.get/set/size/grow/fill (table,)
  table.copy                (dst_table, src_table)
  table.init                (elem, table)
  elem.drop                 (elem,)

Branch unwinding ``(keep, drop)``: keep the top ``keep`` values, remove the
``drop`` values beneath them. Both are static: validation fixes the operand
stack height at every instruction.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..wasm.module import FuncType, Module, ValType

# Machine opcodes that are not WebAssembly instruction names.
EXTRA_OPS = ("enter", "br_unless", "jump", "unsupported")


@dataclass(frozen=True, slots=True)
class MInstr:
    """One machine instruction."""

    op: str
    args: tuple = ()
    fuel: int = 1  # WebAssembly instructions this counts for (bulk ops add their length at run time)
    func: int = 0  # function index (in the function index space) it belongs to
    offset: int = 0  # byte offset in the module of the WebAssembly instruction it came from
    origin: str = ""  # that WebAssembly instruction's name ('end', 'if', ..., or 'entry')

    @property
    def where(self) -> str:
        return f"func {self.func} +0x{self.offset:x}"


@dataclass(frozen=True, slots=True)
class MFunc:
    """A defined function of the program."""

    index: int  # in the function index space
    type: FuncType
    entry: int  # pc of its `enter` instruction
    end: int  # one past its last instruction
    locals: tuple[ValType, ...]  # declared locals, zeroed at entry (parameters excluded)


@dataclass(frozen=True, slots=True)
class Program:
    """A lowered module: the code of its defined functions plus the module it came from.

    ``module`` still describes everything that is not code: imports, types,
    memories, tables, globals, segments, exports and the start function.
    """

    module: Module
    code: tuple[MInstr, ...]
    funcs: tuple[MFunc, ...]  # defined functions, in order: funcs[i].index == imports + i

    def func(self, index: int) -> MFunc:
        """The defined function with index ``index`` in the function index space."""
        return self.funcs[index - self.module.num_imported_funcs]
