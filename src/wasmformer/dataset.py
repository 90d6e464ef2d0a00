"""Trace datasets: one record per program run, for training or probing other models.

A record holds a run's prompt and trace tokens (``wasmformer.trace``) and,
per executed fused instruction, its decoded state: where its tokens are, the
WebAssembly instructions it came from and what it did (values written and
where, memory addresses, branches, calls, output). Everything is *read* from
the trace: the step tokens say what was written, the fused program says
where. No instruction is executed again; the only thing the decoder keeps is
the values the earlier tokens wrote (stack slots by (depth, height), locals),
so that a load's or a store's address is its base value plus its static
offset, as a model reading the trace would find it. The schema is
docs/DATASET.md.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import api
from .errors import BudgetExceeded, InputError
from .machine.fuse import LOCAL, PUSH, SET, TEE, FusedInstr, FusedProgram, width
from .machine.prompt import VERSION
from .machine.semantics import LOADS
from .machine.tokens import (
    K_BR,
    K_BR_TABLE,
    K_CALL,
    K_COND,
    K_DIVIDE,
    K_GLOBAL_SET,
    K_JUMP,
    K_MEM_BULK,
    K_RETURN,
    K_STEP,
    K_STORE,
    K_TABLE_BULK,
    K_TABLE_GROW,
    K_TABLE_SET,
    K_VALUE,
    Trace,
    _kind,
    _machine_text,
)
from .machine.vocab import SIZE, from_le, output_byte, tok, trap_reason
from .toolchain import program_bytes

FORMATS = ("jsonl", "parquet")
NT, JUMP, CALL, RET, EXIT, HALT, MEM, TRAP = (
    tok(n) for n in ("NT", "JUMP", "CALL", "RET", "EXIT", "HALT", "MEM", "TRAP"))


# --- one record per program run ---


def build_record(program: api.Program, *, max_steps: int | None = None,
                 steps: bool = True) -> dict[str, Any]:
    """The dataset record of one run of ``program``'s ``_start``.

    A run that exhausts ``max_steps`` raises ``BudgetExceeded``: a dataset
    holds complete runs only.
    """
    resolved = program_bytes(program)  # for the hash; a C compile is cached, so this is cheap
    result = api.trace(program, max_steps=max_steps)
    if result.budget is not None:
        raise BudgetExceeded(f"{resolved.name}: {result.budget}")
    t = result.trace
    record: dict[str, Any] = {
        "program": resolved.name,
        "wasm_sha256": hashlib.sha256(resolved.wasm).hexdigest(),
        "protocol_version": VERSION,
        "vocab_size": SIZE,
        "prompt_tokens": list(result.prompt),
        "trace_tokens": list(t.tokens) if t is not None else [],
        "n_prompt_tokens": len(result.prompt),
        "n_trace_tokens": result.tokens,
        "n_steps": len(t.pcs) if t is not None else 0,
        "instructions": result.instructions,
        "outcome": t.outcome if t is not None else "trap",
        "exit_code": result.exit_code,
        "trap": result.trap,
        "stdout": result.stdout.decode("utf-8", errors="replace"),
        "stderr": result.stderr.decode("utf-8", errors="replace"),
    }
    if steps:
        record["steps"] = decode_steps(t) if t is not None else []
    return record


# --- the decoded state of each step ---


@dataclass
class _Frame:
    locals: dict[int, int]
    stack: dict[int, int] = field(default_factory=dict)  # static height -> value
    base: int = 0  # the caller's stack height where this frame's results go


def decode_steps(trace: Trace) -> list[dict[str, Any]]:
    """One dict per executed fused instruction (step 0: the invocation), read from the trace."""
    return _Decoder(trace).steps()


def _values(tokens: list[int], types: tuple[str, ...]) -> list[int]:
    """Consecutive little-endian values of the given types at the start of ``tokens``."""
    out, at = [], 0
    for t in types:
        out.append(from_le(tokens[at:at + width(t)]))
        at += width(t)
    return out


def _write(target: str, space: int, index: int, typ: str, value: int) -> dict[str, Any]:
    """A value written: ``space`` is the frame depth (stack, local) or the table index."""
    return {"target": target, "space": space, "index": index, "type": typ, "value": value}


def _memory_write(address: int | None, data: list[int]) -> dict[str, Any]:
    return {"address": _or(address), "bytes": list(data)}


class _Decoder:
    """Walks a trace step by step, keeping only the values its tokens wrote."""

    def __init__(self, trace: Trace):
        self.trace = trace
        self.fused: FusedProgram = trace.fused
        self.module = self.fused.program.module
        self.func_at_entry = {f.entry: f for f in self.fused.funcs}
        self.frames: list[_Frame] = []

    def steps(self) -> list[dict[str, Any]]:
        t = self.trace
        out = []
        for i, pc in enumerate(t.pcs):
            start = t.ends[i - 1] if i else 0
            step = self._blank(i, pc, start, t.ends[i], t.fuels[i])
            toks = step["tokens"]
            if TRAP in toks:  # no other step token has this id (values are byte tokens)
                step.update(kind="trap", trap=trap_reason(toks[toks.index(TRAP) + 1:])[0])
            elif pc < 0:
                self._invoke(step, toks)
            else:
                self._step(step, self.fused.code[pc], toks)
            out.append(step)
        return out

    def _blank(self, i: int, pc: int, start: int, end: int, fuel: int) -> dict[str, Any]:
        code, fused_pc = self.fused.program.code, self.fused.fused_pc
        fi = self.fused.code[pc] if pc >= 0 else None
        return {
            "step": i, "pc": pc, "func": fi.func if fi else -1,
            "depth": len(self.frames) - 1, "op": fi.op if fi else "invoke",
            "wasm": [_machine_text(code[m], fused_pc) for m in fi.origin] if fi else [],
            "instructions": fuel, "start": start, "end": end,
            "tokens": self.trace.tokens[start:end], "kind": "",
            "writes": [], "memory": [], "address": -1, "taken": None, "target": -1, "callee": -1,
            "out_bytes": [], "err_bytes": [], "exit_code": None, "trap": None,
        }

    # --- state ---

    @property
    def frame(self) -> _Frame:
        return self.frames[-1]

    def _operands(self, fi: FusedInstr) -> list[int | None]:
        """The core op's operands as earlier tokens wrote them: stack slots, then the sources."""
        f, base = self.frame, fi.height - fi.stack_operands
        vals: list[int | None] = [f.stack.get(base + i) for i in range(fi.stack_operands)]
        for s in fi.srcs:
            vals.append(f.locals.get(s.value, 0) if s.mode == LOCAL else s.value)
        return vals

    def _push(self, step: dict, height: int, typ: str, v: int) -> None:
        self.frame.stack[height] = v
        step["writes"].append(_write("stack", len(self.frames) - 1, height, typ, v))

    def _set_local(self, step: dict, index: int, typ: str, v: int) -> None:
        self.frame.locals[index] = v
        step["writes"].append(_write("local", len(self.frames) - 1, index, typ, v))

    # --- steps ---

    def _invoke(self, step: dict, toks: list[int]) -> None:
        entry = from_le(toks[1:4])
        callee = self.func_at_entry[entry]
        step.update(kind="invoke", target=entry, callee=callee.index, func=callee.index, depth=0)
        self.frames.append(_Frame({}))
        for i, v in enumerate(_values(toks[6:], callee.params)):
            self._set_local(step, i, callee.params[i], v)

    def _step(self, step: dict, fi: FusedInstr, toks: list[int]) -> None:
        kind = _kind(fi)
        if kind == K_VALUE:
            self._value(step, fi, toks)
        elif kind == K_DIVIDE:  # the stage tokens are work, not state: the value follows them
            self._value(step, fi, toks[-width(fi.out_types[0]):])
        elif kind == K_STORE:
            base = self._operands(fi)[0]
            address = _address(base, fi.args[0])
            step.update(kind="store", address=address)
            step["memory"].append(_memory_write(address, toks))
        elif kind == K_GLOBAL_SET:
            typ = fi.out_types[0]
            step.update(kind="global.set")
            step["writes"].append(_write("global", -1, fi.args[0], typ, from_le(toks)))
        elif kind in (K_COND, K_BR, K_JUMP, K_BR_TABLE):
            self._branch(step, fi, kind, toks)
        elif kind == K_CALL:
            self._call(step, fi, toks)
        elif kind == K_RETURN:
            self._return(step, fi, toks)
        else:
            self._other(step, fi, kind, toks)

    def _value(self, step: dict, fi: FusedInstr, toks: list[int]) -> None:
        typ = fi.out_types[0]
        v = from_le(toks)
        step["kind"] = "value"
        if fi.op in LOADS:
            base = self._operands(fi)[-1]
            step["address"] = _address(base, fi.args[0])
        if fi.dst in (PUSH, TEE):
            self._push(step, fi.height - fi.stack_operands, typ, v)
        if fi.dst in (SET, TEE):
            self._set_local(step, fi.dst_local, typ, v)

    def _branch(self, step: dict, fi: FusedInstr, kind: int, toks: list[int]) -> None:
        step["kind"] = "branch"
        if toks == [NT]:
            step["taken"] = False
            return
        keep, drop = 0, 0
        if kind == K_BR or (kind == K_COND and fi.op == "br_if"):
            keep, drop = fi.args[1:]
        elif kind == K_BR_TABLE:
            table, default = fi.args
            i = self._operands(fi)[-1]
            keep, drop = (table[i] if i is not None and i < len(table) else default)[1:]
        target = from_le(toks[-3:])
        step.update(taken=True, target=target)
        if keep and drop:  # the kept values moved down the stack: their bytes precede JUMP
            top = fi.height - fi.stack_operands
            for i, v in enumerate(_values(toks, fi.out_types)):
                self._push(step, top - keep - drop + i, fi.out_types[i], v)

    def _call(self, step: dict, fi: FusedInstr, toks: list[int]) -> None:
        base = fi.height - fi.stack_operands  # where the operands began: the results go there
        if toks[0] == CALL:  # into this program: a new frame whose first locals are the arguments
            entry = from_le(toks[1:4])
            callee = self.func_at_entry[entry]
            step.update(kind="call", target=entry, callee=callee.index)
            self.frames.append(_Frame({}, base=base))
            for i, v in enumerate(_values(toks[6:], callee.params)):
                self._set_local(step, i, callee.params[i], v)
            return
        self._host_call(step, fi, toks, base)

    def _host_call(self, step: dict, fi: FusedInstr, toks: list[int], base: int) -> None:
        """Output, memory runs the host wrote, then EXIT, or JUMP and the results."""
        step["kind"] = "host_call"
        if fi.op == "call":
            step["callee"] = fi.args[0]
            ftype = self.module.func_types[fi.args[0]]
        else:
            ftype = self.module.types[fi.args[0]]
        at = 0
        while at < len(toks):
            t = toks[at]
            fd_byte = output_byte(t)
            if fd_byte is not None:
                step["out_bytes" if fd_byte[0] == 1 else "err_bytes"].append(fd_byte[1])
                at += 1
            elif t == MEM:
                a, n = from_le(toks[at + 1:at + 5]), from_le(toks[at + 5:at + 7])
                step["memory"].append(_memory_write(a, toks[at + 7:at + 7 + n]))
                at += 7 + n
            elif t == EXIT:
                step.update(kind="exit", exit_code=_signed32(from_le(toks[at + 1:at + 5])))
                return
            else:
                break
        # JUMP to the call's first `result` record, then the results (those records' spans)
        step["target"] = from_le(toks[at + 1:at + 4])
        for i, v in enumerate(_values(toks[at + 4:], ftype.results)):
            self._push(step, base + i, ftype.results[i], v)

    def _return(self, step: dict, fi: FusedInstr, toks: list[int]) -> None:
        types = fi.out_types
        if toks[-1] == HALT:
            step["kind"] = "halt"
            for i, v in enumerate(_values(toks, types)):
                step["writes"].append(_write("result", -1, i, types[i], v))
            return
        ret_pc = from_le(toks[1:4])
        done = self.frames.pop()
        step.update(kind="return", target=ret_pc)
        for i, v in enumerate(_values(toks[6:], types)):
            self._push(step, done.base + i, types[i], v)

    def _other(self, step: dict, fi: FusedInstr, kind: int, toks: list[int]) -> None:
        ops = self._operands(fi)
        if kind == K_MEM_BULK:  # the n bytes written from the destination on, then JUMP
            step.update(kind="memory_bulk", address=_or(ops[0]), target=from_le(toks[-3:]))
            step["memory"].append(_memory_write(ops[0], toks[:-4]))
        elif kind == K_TABLE_SET:
            step["kind"] = "table.set"
            step["writes"].append(_write("table", fi.args[0], _or(ops[0]), "ref", from_le(toks)))
        elif kind == K_TABLE_BULK:
            table = fi.args[1] if fi.op == "table.init" else fi.args[0]
            step.update(kind="table_bulk", target=from_le(toks[-3:]))
            self._table_run(step, table, ops[0], toks[:-4])
        elif kind == K_TABLE_GROW:  # the new elements, the old size (the result), JUMP
            old = from_le(toks[-8:-4])
            step.update(kind="table.grow", target=from_le(toks[-3:]))
            self._table_run(step, fi.args[0], old, toks[:-8])
            self._push(step, fi.height - fi.stack_operands, "i32", old)
        elif kind == K_STEP:
            step["kind"] = "step"
        else:
            raise AssertionError(f"{fi.op} completed without trapping")

    def _table_run(self, step: dict, table: int, first: int | None, toks: list[int]) -> None:
        for i in range(len(toks) // 4):
            index = -1 if first is None else first + i
            value = from_le(toks[4 * i:4 * i + 4])
            step["writes"].append(_write("table", table, index, "ref", value))


def _or(v: int | None) -> int:
    """-1 for a value the earlier tokens did not write (it cannot happen in a complete trace)."""
    return -1 if v is None else v


def _address(base: int | None, offset: int) -> int:
    """A load's or store's effective address: its base operand plus its static offset."""
    return -1 if base is None else base + offset


def _signed32(v: int) -> int:
    return v - (1 << 32) if v >> 31 else v


# --- files ---


def output_format(path: Path, fmt: str | None) -> str:
    """The format to write: ``fmt`` if given, else from the file's suffix."""
    if fmt is None:
        fmt = {".jsonl": "jsonl", ".parquet": "parquet"}.get(path.suffix.lower())
        if fmt is None:
            raise InputError(f"{path}: unknown dataset suffix '{path.suffix}' "
                             "(use .jsonl or .parquet, or --format)")
    if fmt not in FORMATS:
        raise InputError(f"unknown dataset format '{fmt}' (available: {', '.join(FORMATS)})")
    if fmt == "parquet":
        _pyarrow()  # fail before running anything
    return fmt


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401 - the writer
    except ImportError:
        raise InputError("parquet output needs pyarrow: pip install pyarrow "
                         "(or write .jsonl)") from None
    return pyarrow


def encode(records: list[dict[str, Any]], fmt: str) -> bytes:
    """The dataset file's bytes: JSON lines, or one parquet table."""
    if fmt == "jsonl":
        return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records).encode()
    pa = _pyarrow()
    import pyarrow.parquet as pq

    with_steps = bool(records) and "steps" in records[0]
    table = pa.Table.from_pylist(records, schema=parquet_schema(pa, with_steps))
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def parquet_schema(pa, with_steps: bool):
    """The parquet columns (docs/DATASET.md): explicit, so 64-bit values keep all their bits."""
    tokens = pa.list_(pa.int32())
    record = [
        ("program", pa.string()), ("wasm_sha256", pa.string()),
        ("protocol_version", pa.int32()), ("vocab_size", pa.int32()),
        ("prompt_tokens", tokens), ("trace_tokens", tokens),
        ("n_prompt_tokens", pa.int64()), ("n_trace_tokens", pa.int64()),
        ("n_steps", pa.int64()), ("instructions", pa.int64()), ("outcome", pa.string()),
        ("exit_code", pa.int64()), ("trap", pa.string()),
        ("stdout", pa.string()), ("stderr", pa.string()),
    ]
    if with_steps:
        record.append(("steps", pa.list_(_step_type(pa))))
    return pa.schema(record)


def _step_type(pa):
    write = pa.struct([
        ("target", pa.string()), ("space", pa.int64()), ("index", pa.int64()),
        ("type", pa.string()), ("value", pa.uint64()),
    ])
    memory = pa.struct([("address", pa.int64()), ("bytes", pa.list_(pa.uint8()))])
    return pa.struct([
        ("step", pa.int64()), ("pc", pa.int64()), ("func", pa.int64()), ("depth", pa.int64()),
        ("op", pa.string()), ("wasm", pa.list_(pa.string())), ("instructions", pa.int64()),
        ("start", pa.int64()), ("end", pa.int64()), ("tokens", pa.list_(pa.int32())),
        ("kind", pa.string()), ("writes", pa.list_(write)),
        ("memory", pa.list_(memory)), ("address", pa.int64()),
        ("taken", pa.bool_()), ("target", pa.int64()), ("callee", pa.int64()),
        ("out_bytes", pa.list_(pa.uint8())), ("err_bytes", pa.list_(pa.uint8())),
        ("exit_code", pa.int64()), ("trap", pa.string()),
    ])
