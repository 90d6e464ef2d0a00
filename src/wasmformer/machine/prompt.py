"""The prompt: a fused program and the machine state it starts from, as tokens.

Sections in a fixed order, each ``SECTION-token, count (3 bytes)`` then
``count`` fixed-size records, so the record of item i sits at a position a
model can compute (section start + 4 + i * record size). Numbers are byte
tokens, little-endian. The layout is documented in docs/PROTOCOL.md.

  PROGRAM   version(1)                                  (no count, no records)
  VALTYPES  one type token per record                   (1)
  TYPES     params start(3) nparams(2) nresults(2)      (7)  params then results in VALTYPES
  FUNCS     entry(3) type(2) locals start(3) nlocals(2) (10) entry FFFFFF: an import
  GLOBALS   type(1) mutable(1) value(8)                 (10)
  TABLES    type(1) size(4) max(4)                      (9)  max FFFFFFFF: none
  ELEMS     table(2) index(4) value(4)                  (10) every slot, null = value 0
  MEMORY    pages(4) max(4)                             (8)  a single record, count 0 or 1
  DATA      MEM address(4) n(2) bytes(16)               (23) the non-zero 16-byte lines
  JTAB      target(3) keep(2) drop(2)                   (7)  br_table entries
  CODE      see CODE_RECORD                             (37)
  END                                                   (no count)
"""

from __future__ import annotations

from ..errors import LinkError
from .fuse import CONST, LOCAL, NONE, FusedInstr, FusedProgram, emitted_bytes
from .instance import Instance
from .vocab import le, op_token, tok, type_token

VERSION = 3  # 3: an unsupported (float) instruction's X is its own fused pc; 2: ELEMS lists
# every table slot, nulls included (1: the non-null ones)
LINE = 16  # bytes of memory per DATA record
# A DATA record is a memory run as a host call's trace writes one (``MEM address(4) n(2)``
# then n bytes) with n = LINE: one format for every memory write that is not a store, so a
# model keys them all the same way (the run's marker is in reach of each of its bytes).
DATA_RECORD = 1 + 4 + 2 + LINE
NO_MAX = 0xFFFF_FFFF
NO_ENTRY = 0xFF_FFFF

# CODE record fields in order, with their sizes in tokens (docs/PROTOCOL.md). C comes right
# after the op token and every field sits at a fixed offset, so a model finds a record's
# fields by position; the universal model reads this table (universal/record.py).
CODE_FIELDS = (("op", 1), ("C", 3), ("W", 2), ("A", 1), ("B", 1), ("dst", 1), ("local", 2),
               ("height", 2), ("X", 4), ("Y", 2), ("Z", 2), ("valueA", 8), ("valueB", 8))
CODE_RECORD = sum(size for _, size in CODE_FIELDS)
RECORD_SIZES = {"VALTYPES": 1, "TYPES": 7, "FUNCS": 10, "GLOBALS": 10, "TABLES": 9,
                "ELEMS": 10, "MEMORY": 8, "DATA": DATA_RECORD, "JTAB": 7, "CODE": CODE_RECORD}

# The longest prompt we write. An engine must hold the prompt *and* the trace within the
# positions its model is proven exact for (model/numerics.py: a float64 position-keyed
# lookup is exact to ~5.5e7 positions), so the prompt may take a small share of them:
# 2**22 leaves over 90% for the trace, and is ~15x the largest C program's prompt (~280K).
# The check also keeps a huge module (memory full of data) from exhausting host memory.
MAX_PROMPT_TOKENS = 1 << 22

_SRC_MODE = {None: "SRC_NONE", "stack": "SRC_STACK", LOCAL: "SRC_LOCAL", CONST: "SRC_CONST"}
_DST_MODE = {NONE: "DST_NONE", "push": "DST_PUSH", "set": "DST_SET", "tee": "DST_TEE"}


def _valtype(t: str) -> int:
    return type_token(t)


class _Writer:
    def __init__(self) -> None:
        self.tokens: list[int] = []

    def section(self, name: str, records: list[list[int]]) -> None:
        size = RECORD_SIZES[name]
        assert all(len(r) == size for r in records), f"{name}: a record of the wrong size"
        self.tokens += [tok(name), *le(len(records), 3)]
        for r in records:
            self.tokens += r


def prompt_tokens(instance: Instance, fused: FusedProgram, func_index: dict[int, int],
                  max_tokens: int = MAX_PROMPT_TOKENS) -> list[int]:
    """The prompt for running ``fused`` on ``instance`` from its current state.

    ``func_index`` maps ``id(function object)`` to its index (how references are written).
    A prompt longer than ``max_tokens`` is refused (LinkError), before the big sections
    are built when their records alone are too many.
    """
    if _records_at_least(instance, fused, max_tokens) > max_tokens:
        raise _too_large(max_tokens)
    tokens = _prompt(instance, fused, func_index)
    if len(tokens) > max_tokens:
        raise _too_large(max_tokens)
    return tokens


def _too_large(max_tokens: int) -> LinkError:
    return LinkError(f"prompt too large: more than {max_tokens:,} tokens (the limit: a "
                     "model's exact positions must hold the prompt and the trace)")


def _records_at_least(instance: Instance, fused: FusedProgram, stop: int) -> int:
    """A lower bound on the prompt's length from its big sections: CODE, ELEMS, DATA.

    Counting DATA lines stops past ``stop`` tokens, so a huge memory costs little."""
    n = RECORD_SIZES["CODE"] * len(fused.code)
    n += RECORD_SIZES["ELEMS"] * sum(len(t.elems) for t in instance.tables)
    data = instance.memory.data if instance.memory is not None else bytearray()
    block = 4096  # skip all-zero blocks at C speed; look at lines only in the others
    for a in range(0, len(data), block):
        if n > stop:
            break
        if data.count(0, a, a + block) < min(block, len(data) - a):
            n += RECORD_SIZES["DATA"] * len(_data_lines(bytes(data[a:a + block])))
    return n


def _prompt(instance: Instance, fused: FusedProgram, func_index: dict[int, int]) -> list[int]:
    module = instance.module
    w = _Writer()
    w.tokens += [tok("PROGRAM"), VERSION]
    valtypes: list[list[int]] = []
    types = []
    for ft in module.types:
        types.append([*le(len(valtypes), 3), *le(len(ft.params), 2), *le(len(ft.results), 2)])
        valtypes += [[_valtype(t)] for t in (*ft.params, *ft.results)]
    funcs = []
    imported = [x.desc for x in module.imports if x.kind == "func"]
    for i in range(len(module.func_types)):
        if i < len(imported):
            funcs.append([*le(NO_ENTRY, 3), *le(imported[i], 2), *le(0, 3), *le(0, 2)])  # type: ignore[arg-type]
            continue
        f = fused.func(i)
        declared = f.locals[len(f.params):]
        type_index = module.funcs[i - len(imported)].type_index
        funcs.append([*le(f.entry, 3), *le(type_index, 2), *le(len(valtypes), 3),
                      *le(len(declared), 2)])
        valtypes += [[_valtype(t)] for t in declared]
    w.section("VALTYPES", valtypes)
    w.section("TYPES", types)
    w.section("FUNCS", funcs)
    w.section("GLOBALS", [[_valtype(g.type.valtype), int(g.type.mutable),
                           *le(_ref_or_int(g.value, func_index), 8)] for g in instance.globals])
    w.section("TABLES", [[_valtype(t.elem_type), *le(len(t.elems), 4),
                          *le(NO_MAX if t.max_size is None else t.max_size, 4)]
                         for t in instance.tables])
    w.section("ELEMS", [[*le(ti, 2), *le(i, 4), *le(_ref_or_int(v, func_index), 4)]
                        for ti, t in enumerate(instance.tables)
                        for i, v in enumerate(t.elems)])
    mem = instance.memory
    w.section("MEMORY", [] if mem is None else [[*le(mem.pages, 4), *le(
        NO_MAX if mem.max_pages is None else mem.max_pages, 4)]])
    w.section("DATA", _data_lines(bytes(mem.data) if mem is not None else b""))
    jtab: list[list[int]] = []
    code = []
    for pc, fi in enumerate(fused.code):
        code.append(_code_record(fi, pc, fused.prefix[pc], jtab))
    w.section("JTAB", jtab)
    w.section("CODE", code)
    w.tokens.append(tok("END"))
    return w.tokens


def _ref_or_int(v: object, func_index: dict[int, int]) -> int:
    if isinstance(v, int):
        return v
    return 0 if v is None else func_index.get(id(v), NO_MAX - 1) + 1


def _data_lines(data: bytes) -> list[list[int]]:
    zero = bytes(LINE)
    lines = []
    for a in range(0, len(data), LINE):
        line = data[a:a + LINE]
        if line != zero[:len(line)]:
            lines.append([tok("MEM"), *le(a, 4), *le(LINE, 2), *line.ljust(LINE, b"\0")])
    return lines


def _code_record(fi: FusedInstr, pc: int, c: int, jtab: list[list[int]]) -> list[int]:
    """One CODE record. X/Y/Z hold the core op's immediates (docs/PROTOCOL.md)."""
    modes: list[str | None] = [None, None]
    values = [0, 0]
    n = min(2, len(fi.srcs) + fi.stack_operands)  # operand slots used: the last two operands
    for slot in range(2 - n, 2):
        modes[slot] = "stack"
    for i, src in enumerate(fi.srcs):
        slot = 2 - len(fi.srcs) + i
        modes[slot], values[slot] = src.mode, src.value
    x, y, z = _immediates(fi, pc, jtab)
    w = emitted_bytes(fi)
    if w >= 1 << 16:
        raise LinkError(f"an instruction emits {w} bytes of values: more than the protocol's "
                        f"{(1 << 16) - 1}")
    fields = {"op": [op_token(fi.op)], "C": le(c, 3), "W": le(w, 2),
              "A": [tok(_SRC_MODE[modes[0]])], "B": [tok(_SRC_MODE[modes[1]])],
              "dst": [tok(_DST_MODE[fi.dst])], "local": le(fi.dst_local, 2),
              "height": le(fi.height, 2), "X": le(x, 4), "Y": le(y, 2), "Z": le(z, 2),
              "valueA": le(values[0], 8), "valueB": le(values[1], 8)}
    return [t for name, _ in CODE_FIELDS for t in fields[name]]


def _immediates(fi: FusedInstr, pc: int, jtab: list[list[int]]) -> tuple[int, int, int]:
    op, a = fi.op, fi.args
    if op == "unsupported":  # its trap's payload (UNSUPPORTED + the fused pc)
        return pc, 0, 0
    if op in ("br", "br_if"):
        return a[0], a[1], a[2]
    if op == "br_table":
        first = len(jtab)
        for target, keep, drop in (*a[0], a[1]):
            jtab.append([*le(target, 3), *le(keep, 2), *le(drop, 2)])
        return first, len(a[0]) + 1, 0
    if op == "return":
        return 0, a[0], a[1]
    if op in ("br_unless", "jump") or (a and isinstance(a[0], int)):
        return a[0], (a[1] if len(a) > 1 else 0), 0
    return 0, 0, 0
