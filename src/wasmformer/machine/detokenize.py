"""Trace tokens -> what the program did: stdout, stderr, exit code or trap, results.

Uses only the vocabulary (no program, no execution): output tokens carry
their fd and byte, ``EXIT`` is followed by the exit code, ``TRAP`` by a
reason token and its payload, and ``HALT`` is preceded by the invoked
function's results (their byte widths come from its result types, which
the caller supplies when it wants them decoded).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..errors import Trap
from .semantics import to_signed
from .vocab import NAMED, STDERR, STDOUT, from_le, tok, trap_payload, trap_reason

_EXIT, _TRAP, _HALT = tok("EXIT"), tok("TRAP"), tok("HALT")


@dataclass
class Outcome:
    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int | None = None  # proc_exit's code, 0 after HALT, 134 after a trap
    trap: str | None = None
    results: list[int] = field(default_factory=list)  # i32/i64 signed; other types unsigned
    ended: bool = False  # the trace reached HALT, EXIT or a trap


def detokenize(tokens: Iterable[int], result_types: Sequence[str] = ()) -> Outcome:
    """Decode a trace (a sequence or a stream of token ids)."""
    tokens = tokens if isinstance(tokens, list) else list(tokens)
    out, err = bytearray(), bytearray()
    result = Outcome()
    for i, t in enumerate(tokens):
        if t < STDOUT:  # a value byte: nothing the outside world sees
            continue
        if t < STDERR:
            out.append(t - STDOUT)
        elif t < NAMED:
            err.append(t - STDERR)
        elif t == _EXIT:
            result.exit_code, result.ended = to_signed(from_le(tokens[i + 1:i + 5]), 32), True
            break
        elif t == _TRAP:
            reason = tokens[i + 1]
            payload = tokens[i + 2:i + 2 + trap_payload(reason)]
            result.trap, _ = trap_reason([reason, *payload])
            result.exit_code, result.ended = Trap.exit_code, True
            break
        elif t == _HALT:  # the results' bytes come right before it
            keep = sum(8 if rt in ("i64", "f64") else 4 for rt in result_types)
            result.results = _results(tokens[i - keep:i], result_types)
            result.exit_code, result.ended = 0, True
            break
    result.stdout, result.stderr = bytes(out), bytes(err)
    return result


def _results(data: list[int], types: Sequence[str]) -> list[int]:
    values, at = [], 0
    for t in types:
        w = 8 if t in ("i64", "f64") else 4
        v = from_le(data[at:at + w])
        values.append(to_signed(v, 8 * w) if t in ("i32", "i64") else v)
        at += w
    return values


def trap_message(reason: str, fused_code: Sequence) -> str:
    """The executor's full message for a decoded reason (an unsupported op names its origin)."""
    if reason.startswith("unsupported at pc "):
        fi = fused_code[int(reason.rsplit(" ", 1)[1])]
        return fi.args[0]  # the machine's message: 'unsupported: OP at func N +0xOFFSET'
    return reason
