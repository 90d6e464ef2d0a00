"""The universal model's embedding: what each token of the protocol's vocabulary carries.

Every feature is a column of the embedding (``Graph.token_feature``), one value per token id
of ``machine.vocab``. A byte token carries its value and its 8 bits (so arithmetic reads
bytes and bitwise circuits read bits without converting); the named tokens carry 0/1 flags
for the roles the graph tests linearly (markers, modes) and an integer id for the ops,
decoded into per-op flags only once an instruction's record has been fetched.
"""

from __future__ import annotations

from dataclasses import dataclass

from wasmformer.graph import Graph, Node
from wasmformer.machine import vocab
from wasmformer.machine.semantics import DIVISION_OPS, LOADS, STORES, division_stage_count

from .alu import ALU_OPS
from .memops import OP_COLUMNS as MEMORY_OP_COLUMNS

# Ops the interpreter graph executes besides the ALU's (docs/PROTOCOL.md names them all).
CONTROL_OPS = ("param", "result", "copy", "select", "br", "br_if", "br_unless", "jump", "call",
               "return")
FLAGS = ("JUMP", "CALL", "RET", "CODE", "FUNCS", "SRC_STACK", "SRC_LOCAL", "SRC_CONST",
         "DST_PUSH", "DST_SET", "DST_TEE", "MEM", "GLOBALS", "MEMORY", "TRAP", "JTAB",
         "TABLES", "ELEMS", "EXIT")


def op_id(op: str) -> int:
    """The integer the ``op_id`` feature gives an ``OP:<op>`` token (0: not an op token)."""
    return 1 + vocab.OPS.index(op)


def operand_bytes(op: str) -> tuple[int, int]:
    """The byte sizes of operand slots A and B that ``op`` reads (0: the slot is unused);
    where the size is the record's W it is marked -1 (``copy``, ``return``, the values
    ``param`` and ``result`` copy from another frame, ``select``'s values)."""
    if op in ALU_OPS:
        params = ALU_OPS[op].params
        return (0, params[0]) if len(params) == 1 else (params[0], params[1])
    if op in ("br_if", "br_unless"):
        return 0, 4
    if op in ("copy", "return", "param", "result"):
        return 0, -1
    if op == "select":
        return -1, 4
    return _memory_operand_bytes(op)


def _memory_operand_bytes(op: str) -> tuple[int, int]:
    """Loads: the address (B); stores: the address (A) and the value (B, its type's width);
    ``global.set``: the value (W bytes)."""
    if op in LOADS:
        return 0, 4
    if op in STORES:
        return 4, 8 if op.startswith("i64") else 4
    if op == "global.set":
        return 0, -1
    return 0, 0


@dataclass(frozen=True)
class TokenFeatures:
    byte: Node  # the value of a byte token or a stage token (0 for any other token)
    bits: tuple[Node, ...]  # its 8 bits, least significant first
    flag: dict[str, Node]  # FLAGS: 1 on that named token
    callret: Node  # 1 on CALL and RET (anchors whose payload is 5 bytes)
    is_op: Node  # 1 on any OP:<op> token
    op_id: Node  # op_id(op) on OP:<op>, else 0
    wide_a: Node  # on OP:<op>: 1 when operand slot A holds 8 bytes
    wide_b: Node  # on OP:<op>: 1 when operand slot B holds 8 bytes
    a_sized_by_w: Node  # on OP:<op>: 1 when slot A's size is the record's W (select)
    sized_by_w: Node  # on OP:<op>: 1 when slot B's size is the record's W (copy, return, ...)
    deep: Node  # on OP:<op>: 1 when it pops an operand below slots A and B (select)
    extra: dict[str, Node]  # is_byte, is_output (out:XX, err:XX), memops.OP_COLUMNS
    indirect: Node  # 1 on OP:call_indirect (its arguments sit below the table index)
    stages: Node  # on OP:<op>: its stage tokens before the result (division, else 0)

    def named(self, name: str) -> Node:
        """A feature by name: 'byte', 'bit3', a FLAGS name, 'callret', 'is_op', 'op_id', ..."""
        if name.startswith("bit"):
            return self.bits[int(name[3:])]
        if name in self.flag:
            return self.flag[name]
        if name in self.extra:
            return self.extra[name]
        return getattr(self, name)


def _carried_byte(t: int) -> int:
    """The byte a token carries: a byte token's value, a stage token's (d:XX), else 0."""
    if vocab.is_byte(t):
        return t
    stage = vocab.stage_byte(t)
    return 0 if stage is None else stage


def token_features(g: Graph) -> TokenFeatures:
    size = vocab.SIZE
    ops = {vocab.op_token(op): op for op in vocab.OPS}

    def column(name: str, value) -> Node:
        return g.token_feature(name, [value(t) for t in range(size)])

    byte = column("byte", _carried_byte)
    bits = tuple(column(f"bit{i}", lambda t, i=i: (_carried_byte(t) >> i) & 1)
                 for i in range(8))
    ids = {name: vocab.tok(name) for name in FLAGS}
    flag = {name: column(f"is_{name}", lambda t, n=name: int(t == ids[n])) for name in FLAGS}
    callret = column("is_CALLRET", lambda t: int(t in (ids["CALL"], vocab.tok("RET"))))
    return TokenFeatures(
        byte=byte, bits=bits, flag=flag, callret=callret,
        is_op=column("is_OP", lambda t: int(t in ops)),
        op_id=column("op_id", lambda t: op_id(ops[t]) if t in ops else 0),
        wide_a=column("wide_a", lambda t: int(t in ops and operand_bytes(ops[t])[0] == 8)),
        wide_b=column("wide_b", lambda t: int(t in ops and operand_bytes(ops[t])[1] == 8)),
        a_sized_by_w=column("a_sized_by_w",
                            lambda t: int(t in ops and operand_bytes(ops[t])[0] < 0)),
        sized_by_w=column("sized_by_w", lambda t: int(t in ops and operand_bytes(ops[t])[1] < 0)),
        deep=column("deep", lambda t: int(t in ops and ops[t] == "select")),
        stages=column("stages", lambda t: division_stage_count(ops[t])
                      if t in ops and ops[t] in DIVISION_OPS else 0),
        extra={"is_byte": column("is_byte", lambda t: int(vocab.is_byte(t))),
               "is_output": column("is_output", lambda t: int(vocab.STDOUT <= t < vocab.NAMED)),
               "is_stage": column("is_stage", lambda t: int(vocab.stage_byte(t) is not None)),
               **{name: column(name, lambda t, f=f: f(ops[t]) if t in ops else 0)
                  for name, f in MEMORY_OP_COLUMNS.items()}},
        indirect=column("indirect", lambda t: int(t in ops and ops[t] == "call_indirect")),
    )
