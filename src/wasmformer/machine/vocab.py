"""THE vocabulary of the token protocol: every token id, its name, and how values become tokens.

One table serves both directions (encode and decode), so the prompt writer,
the reference token machine, the detokenizer and a future model share it.
Layout of the ids (see docs/PROTOCOL.md):

  0 ..  255   byte tokens: one byte of a value (values are little-endian, LSB first)
  256 .. 511  stdout byte tokens: one byte the program wrote to fd 1
  512 .. 767  stderr byte tokens: one byte written to fd 2
  768 ..      named tokens: trace markers, trap reasons, prompt sections,
              operand/destination modes, value types, machine ops
  then        256 stage tokens ``d:XX``: one byte of a division's work (a quotient digit or a
              partial remainder's byte, ``semantics.division_stages``), not a value
"""

from __future__ import annotations

from ..wasm.opcodes import OPS_BY_NAME
from .semantics import LOADS, NUMERIC, STORES

BYTE, STDOUT, STDERR = 0, 256, 512
NAMED = 768

# Trace markers.
MARKERS = (
    "NT",  # a conditional branch not taken
    "JUMP",  # an anchor: the next instruction is the fused pc in the 3 bytes that follow
    "CALL",  # a call: callee entry (3 bytes), new depth (2 bytes), then the arguments' bytes
    "RET",  # a return: return pc (3 bytes), new depth (2 bytes), then the results' bytes
    "EXIT",  # proc_exit: the exit code follows (4 bytes)
    "TRAP",  # a trap: its reason token (and payload) follows
    "HALT",  # the invoked function returned (its results' bytes precede this token)
    "MEM",  # a host's memory write: address (4 bytes), length n (2 bytes), n bytes
    "STEP",  # an instruction with no value to show (data.drop, elem.drop)
)

# Trap reasons: token name, the executor's message, payload bytes after the token.
TRAPS = (
    ("UNREACHABLE", "unreachable", 0),
    ("DIV_BY_ZERO", "integer divide by zero", 0),
    ("INT_OVERFLOW", "integer overflow", 0),
    ("MEMORY_OOB", "out of bounds memory access", 0),
    ("TABLE_OOB", "out of bounds table access", 0),
    ("UNDEFINED_ELEMENT", "undefined element", 4),  # + the element index (4 bytes)
    ("UNINITIALIZED_ELEMENT", "uninitialized element", 4),  # + the element index (4 bytes)
    ("CALL_TYPE_MISMATCH", "indirect call type mismatch", 0),
    ("STACK_EXHAUSTED", "call stack exhausted", 0),
    ("UNSUPPORTED", "unsupported", 3),  # + the fused pc of the float instruction (3 bytes)
)

# Prompt sections (docs/PROTOCOL.md, "The prompt").
SECTIONS = ("PROGRAM", "VALTYPES", "TYPES", "FUNCS", "GLOBALS", "TABLES", "ELEMS", "MEMORY",
            "DATA", "JTAB", "CODE", "END")

# Operand and destination modes of a fused instruction (fuse.py).
MODES = ("SRC_NONE", "SRC_STACK", "SRC_LOCAL", "SRC_CONST",
         "DST_NONE", "DST_PUSH", "DST_SET", "DST_TEE")

VALTYPES = ("i32", "i64", "f32", "f64", "funcref", "externref")

# Machine ops that appear in a fused program besides the integer numeric ops, loads and stores.
_CONTROL_AND_OTHER = (
    "param", "result", "copy", "global.get", "global.set", "select", "br", "br_if", "br_unless", "br_table", "jump",
    "call", "call_indirect", "return", "unreachable", "unsupported",
    "ref.null", "ref.is_null", "ref.func",
    "memory.size", "memory.grow", "memory.fill", "memory.copy", "memory.init", "data.drop",
    "table.get", "table.set", "table.size", "table.grow", "table.fill", "table.copy",
    "table.init", "elem.drop",
)


def _by_encoding(names) -> list[str]:
    return sorted(names, key=lambda n: OPS_BY_NAME[n].code)


OPS = (*_CONTROL_AND_OTHER, *_by_encoding(NUMERIC), *_by_encoding(LOADS), *_by_encoding(STORES))

_NAMES: tuple[str, ...] = (
    *MARKERS,
    *(name for name, _, _ in TRAPS),
    *SECTIONS,
    *MODES,
    *(f"T_{t}" for t in VALTYPES),
    *(f"OP:{op}" for op in OPS),
)
_IDS: dict[str, int] = {name: NAMED + i for i, name in enumerate(_NAMES)}
assert len(_IDS) == len(_NAMES), "duplicate token name"
STAGE = NAMED + len(_NAMES)  # the stage tokens d:00 .. d:ff follow the named tokens
SIZE = STAGE + 256

_TRAP_BY_TOKEN = {_IDS[name]: (message, payload) for name, message, payload in TRAPS}


def tok(name: str) -> int:
    """The id of the named token ``name`` (e.g. 'JUMP', 'OP:i32.add', 'T_i64')."""
    return _IDS[name]


def op_token(op: str) -> int:
    return _IDS[f"OP:{op}"]


def type_token(valtype: str) -> int:
    return _IDS[f"T_{valtype}"]


def name(token: int) -> str:
    """The name of a named token (``KeyError`` for byte, output and stage tokens)."""
    if not NAMED <= token < STAGE:
        raise KeyError(token)
    return _NAMES[token - NAMED]


def is_byte(token: int) -> bool:
    return 0 <= token < 256


def stage(values) -> list[int]:
    """The stage tokens of a division's work bytes (``semantics.division_stages``)."""
    return [STAGE + v for v in values]


def stage_byte(token: int) -> int | None:
    """The byte a stage token carries, None for any other token."""
    return token - STAGE if STAGE <= token < SIZE else None


def output(fd: int, data: bytes) -> list[int]:
    """The output tokens of ``data`` written to fd 1 (stdout) or 2 (stderr)."""
    base = STDOUT if fd == 1 else STDERR
    return [base + b for b in data]


def output_byte(token: int) -> tuple[int, int] | None:
    """(fd, byte) of an output token, None for any other token."""
    if STDOUT <= token < STDERR:
        return 1, token - STDOUT
    if STDERR <= token < NAMED:
        return 2, token - STDERR
    return None


def le(value: int, width: int) -> list[int]:
    """``value`` (unsigned, < 2**(8*width)) as ``width`` byte tokens, least significant first."""
    assert 0 <= value < 1 << (8 * width), f"{value} does not fit in {width} bytes"
    return list(value.to_bytes(width, "little"))


def from_le(tokens) -> int:
    """The unsigned value of a run of byte tokens (least significant first)."""
    assert all(is_byte(t) for t in tokens), "not a run of byte tokens"
    return int.from_bytes(bytes(tokens), "little")


def trap_tokens(reason: str, pc: int) -> list[int]:
    """TRAP, the reason's token, and its payload. ``pc``: the fused pc of the trapping instruction."""
    for tname, message, payload in TRAPS:
        if reason == message or (payload and reason.startswith(message)):
            out = [_IDS["TRAP"], _IDS[tname]]
            if tname == "UNSUPPORTED":
                return out + le(pc, 3)
            if payload:
                return out + le(int(reason.rsplit(" ", 1)[1]), payload)
            return out
    raise ValueError(f"trap reason without a token: {reason!r}")


def trap_reason(tokens) -> tuple[str, int]:
    """The message of the trap whose reason token starts ``tokens``, and how many tokens it used.

    An unsupported instruction's message names the fused pc (``unsupported at pc N``):
    the full message needs the program (``detokenize.trap_message``).
    """
    message, payload = _TRAP_BY_TOKEN[tokens[0]]
    if not payload:
        return message, 1
    value = from_le(tokens[1:1 + payload])
    if message == "unsupported":
        return f"unsupported at pc {value}", 1 + payload
    return f"{message} {value}", 1 + payload


def trap_payload(token: int) -> int:
    """How many byte tokens follow the trap reason ``token``."""
    return _TRAP_BY_TOKEN[token][1]


def describe(token: int) -> str:
    """A short readable name for any token id: '0a', 'out:0a', 'err:0a', 'JUMP', 'OP:i32.add',
    'd:0a'."""
    if is_byte(token):
        return f"{token:02x}"
    fd_byte = output_byte(token)
    if fd_byte is not None:
        fd, b = fd_byte
        return f"{'out' if fd == 1 else 'err'}:{b:02x}"
    if NAMED <= token < STAGE:
        return _NAMES[token - NAMED]
    if STAGE <= token < SIZE:
        return f"d:{token - STAGE:02x}"
    return f"<invalid {token}>"


def parse(text: str) -> int:
    """The inverse of ``describe``."""
    if text in _IDS:
        return _IDS[text]
    if len(text) == 2:
        return int(text, 16)
    if text.startswith("d:"):
        return STAGE + int(text[2:], 16)
    if text.startswith(("out:", "err:")):
        return (STDOUT if text[:3] == "out" else STDERR) + int(text[4:], 16)
    return _IDS[text]
