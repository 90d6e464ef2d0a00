"""A graph around ALU circuits, fed the honest way: operands as byte tokens.

Vocabulary: tokens 0..255 are bytes (features: the byte and its 8 bits), then 8
selector tokens per op. At every position p the graph gathers the ``total`` tokens
before it (positions p - total .. p - 1) by fixed relative-position lookups: the first
operand's bytes (little-endian), then the second's. It emits result byte k of op j when
the token at p is selector 256 + 8j + k, and 0 otherwise. So a stream of operand bytes
is a test case at every position (a sliding window), and ``a b S`` makes the model emit
the byte that S selects.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from wasmformer.errors import Trap
from wasmformer.graph import EvaluationError, Ffn, Graph, Linear, Range, as_linear
from wasmformer.graph.evaluator import ffn_at
from wasmformer.graph.output import emit_token_id
from wasmformer.machine import vocab
from wasmformer.machine.semantics import NUMERIC
from wasmformer.universal import ALU_OPS, AluOp, Operand
from wasmformer.universal.units import enabled

SELECTORS = 8  # per op: one per result byte


def selector(k: int, j: int = 0) -> int:
    """The token that emits byte k of op j."""
    return 256 + SELECTORS * j + k


@dataclass(frozen=True)
class Harness:
    graph: Graph
    ops: tuple[AluOp, ...]
    results: tuple[tuple[Linear, ...], ...]  # per op, its result bytes

    @property
    def total(self) -> int:
        """Operand bytes gathered before each position (the widest op's)."""
        return max(sum(op.params) for op in self.ops)


def build(names: list[str], max_len: int = 4096, *, merged: bool = False) -> Harness:
    """A graph computing every op of ``names`` side by side on the same operand window;
    selector token ``256 + 8j + k`` emits byte k of op j.

    ``merged``: the ops' last layers go straight into the emitting node, each under its
    enable flag (``AluOp.pending``; ``results`` is then empty); otherwise every result
    byte is a feature of its own (``AluOp.__call__``) and the emitting node selects.
    """
    ops = tuple(ALU_OPS[name] for name in names)
    vocab = 256 + SELECTORS * len(ops)
    g = Graph(vocab_size=vocab, max_len=max_len)
    pad = [0] * (vocab - 256)
    byte = g.token_feature("byte", list(range(256)) + pad)
    bits = [g.token_feature(f"bit{i}", [(t >> i) & 1 for t in range(256)] + pad)
            for i in range(8)]
    p = g.position()
    total = max(sum(op.params) for op in ops)
    window = []  # window[i]: (byte, bits) of the token at p - total + i
    for d in range(total, 0, -1):
        found = g.lookup(f"back{d}", query=p - d, key=p, values=[byte, *bits])
        window.append(found.results)
    # selector token 256 + 8j + k sets the one-hot features op j and byte k; result
    # byte k of op j is enabled by op_j + byte_k - 1 (1 when both are on, else <= 0)
    op_on = [g.token_feature(f"op{j}", [int(t >= 256 and (t - 256) // SELECTORS == j)
                                        for t in range(vocab)]) for j in range(len(ops))]
    byte_on = [g.token_feature(f"byte{k}", [int(t >= 256 and (t - 256) % SELECTORS == k)
                                            for t in range(vocab)]) for k in range(SELECTORS)]
    results, emits = [], []
    for j, op in enumerate(ops):
        operands, start = [], total - sum(op.params)  # narrower ops read the latest bytes
        for size in op.params:
            chunk = window[start:start + size]
            operands.append(Operand.of([x[0] for x in chunk], [b for x in chunk for b in x[1:]]))
            start += size
        result = (op.pending if merged else op)(g, *operands)
        if not merged:
            results.append(result)
        emits += [u for k, x in enumerate(result) for u in enabled(x, op_on[j] + byte_on[k] - 1)]
    out = g.ffn("emit", emits, range=Range(0, 255, integer=True))
    emit_token_id(g, out)
    return Harness(g, ops, tuple(results))


def value_bytes(x: int, n: int) -> list[int]:
    return list(x.to_bytes(n, "little"))


def from_bytes(bs: list[int]) -> int:
    return int.from_bytes(bytes(bs), "little")


def expected(op: AluOp, window: list[int]) -> list[int]:
    """The result bytes machine.semantics gives on the operands in ``window``."""
    args, start = [], 0
    for size in op.params:
        args.append(from_bytes(window[start:start + size]))
        start += size
    return value_bytes(NUMERIC[op.name](*args), op.result)


def edge_values(n: int) -> list[int]:
    bits = 8 * n
    top = 1 << (bits - 1)
    m = (1 << bits) - 1
    small = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 255, 256]
    near = [top - 1, top, top + 1, m, m - 1, m - 255, 0xFF, 0xFF00, 0xFFFF, 0x10000,
            0x8000, 0x7FFF, 0x80, 0x7F, 0x00FF00FF & m, 0xFF00FF00 & m, 0x01010101 & m]
    return sorted({v & m for v in small + near})


def random_value(rng: random.Random, n: int) -> int:
    """Uniform, small, near 2**k, or bytes from {0, 1, 0x7f, 0x80, 0xfe, 0xff} (long
    carry and borrow chains, sign boundaries)."""
    bits = 8 * n
    kind = rng.randrange(5)
    if kind == 0:
        return rng.getrandbits(bits)
    if kind == 1:
        return rng.randrange(300) if rng.random() < 0.5 else (-rng.randrange(1, 300)) % (1 << bits)
    if kind == 2:
        return ((1 << rng.randrange(bits)) + rng.randrange(-3, 4)) % (1 << bits)
    if kind == 3:
        return from_bytes([rng.choice([0, 1, 0x7F, 0x80, 0xFE, 0xFF]) for _ in range(n)])
    return from_bytes([rng.choice([0, 0xFF, rng.randrange(256)]) for _ in range(n)])


def operand_stream(params: tuple[int, ...], rng: random.Random, cases: int) -> list[int]:
    """Concatenated operands: every edge value once as each operand (paired with a shuffled
    edge value), then random ones up to ``cases`` operand tuples."""
    columns = []
    for size in params:
        edges = edge_values(size)
        rng.shuffle(edges)
        columns.append(edges)
    longest = max(len(c) for c in columns)
    chosen = [tuple(c[i % len(c)] for c in columns) for i in range(longest)]
    if len(params) == 2 and params[0] == params[1]:  # equal and nearly equal operands
        bits = 8 * params[0]
        for v in columns[0][::4] + [random_value(rng, params[0]) for _ in range(4)]:
            chosen.append((v, v))
            chosen.append((v, v ^ (1 << rng.randrange(bits))))
    while len(chosen) < cases:
        chosen.append(tuple(random_value(rng, size) for size in params))
    stream = []
    for case in chosen:
        for v, size in zip(case, params, strict=True):
            stream += value_bytes(v, size)
    return stream


# ---- a circuit alone, evaluated on operand values (no token stream) ---------------------


@dataclass(frozen=True)
class Circuit:
    """One op's circuit in a graph of its own whose operands are plain features: evaluating
    it on operand values runs only its FFN nodes (``graph.evaluator.ffn_at``, each value
    checked against its node's range), much faster than a token stream for deep circuits."""

    graph: Graph
    op: AluOp
    operands: tuple[Operand, ...]
    result: tuple[Linear, ...]
    traps: dict[str, Linear]

    def __call__(self, *values: int) -> tuple[list[int], dict[str, int]]:
        """The result bytes and the trap flags on operands ``values``."""
        known: dict = {}
        for x, v, size in zip(self.operands, values, self.op.params, strict=True):
            for k, byte in enumerate(value_bytes(v, size)):
                known[x.bytes[k].nodes[0]] = byte
                for i in range(8):
                    known[x.bits[8 * k + i].nodes[0]] = (byte >> i) & 1
        for op in self.graph.ops:
            if isinstance(op, Ffn):
                value = ffn_at(op, known.__getitem__)
                if not op.output.range.contains(value):
                    raise EvaluationError(f"{op.name} = {value} outside {op.output.range}")
                known[op.output] = value
        result = [x.evaluate(known.__getitem__) for x in self.result]
        return result, {k: as_linear(f).evaluate(known.__getitem__) for k, f in self.traps.items()}


def circuit(name: str) -> Circuit:
    op = ALU_OPS[name]
    g = Graph(vocab_size=256)
    operands = []
    for j, size in enumerate(op.params):
        limbs = [g.token_feature(f"x{j}.{k}", list(range(256))) for k in range(size)]
        bits = [g.token_feature(f"x{j}.{k}.{i}", [(t >> i) & 1 for t in range(256)])
                for k in range(size) for i in range(8)]
        operands.append(Operand.of(limbs, bits))
    result = op(g, *operands)
    return Circuit(g, op, tuple(operands), result, op.traps(g, *operands))


def outcome(op: AluOp, args: list[int]) -> tuple[list[int] | None, str | None]:
    """machine.semantics on ``args``: (result bytes, None), or (None, the trap's vocab name)."""
    try:
        return value_bytes(NUMERIC[op.name](*args), op.result), None
    except Trap as trap:
        return None, vocab.name(vocab.trap_tokens(trap.reason, 0)[1])
