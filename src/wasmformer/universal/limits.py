"""The ranges a universal graph is built for (and exact within).

Everything the graph reads from tokens is a number of a few byte tokens; declaring how
many of them can be non-zero keeps every feature's range, and so every weight and score
of the compiled model, as small as the programs need. ``check`` refuses a program that a
graph built with these limits would misread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wasmformer.graph import GraphError
from wasmformer.machine.fuse import FusedProgram
from wasmformer.machine.runtime import PAGE_SIZE
from wasmformer.machine.semantics import LOADS, STORES

from .alu import ALU_OPS

SLOT_LIMIT = 256  # stack heights, local indices and call depths are read from their low byte


@dataclass(frozen=True)
class Limits:
    max_len: int = 2048  # positions: prompt + trace
    pc_bytes: int = 2  # fused pcs and C(pc) below 256**pc_bytes
    max_depth: int = 8  # call depths 0 .. max_depth - 1
    # ALU ops built: by default all of them (division across its stage tokens: stages.py)
    ops: tuple[str, ...] = field(default_factory=lambda: tuple(sorted(ALU_OPS)))
    mem_bits: int = 17  # linear memory (and every static offset) below 2**mem_bits bytes:
    # its initial size, and memory.grow beyond it fails (memory_page_limit)

    def __post_init__(self) -> None:
        unknown = [op for op in self.ops if op not in ALU_OPS]
        if unknown:
            raise GraphError(f"no ALU circuit for {', '.join(unknown)}")
        if self.pc_bytes not in (1, 2, 3):
            raise GraphError("pc_bytes must be 1, 2 or 3")
        if not 1 <= self.max_depth <= SLOT_LIMIT:
            raise GraphError(f"max_depth must be within 1..{SLOT_LIMIT}")
        if not 16 <= self.mem_bits <= 32:
            raise GraphError("mem_bits must be within 16..32")

    @property
    def call_depth_limit(self) -> int:
        """The reference executor's ``HostLimits.max_call_depth`` this graph agrees with: a
        call made at depth max_depth - 1 traps (STACK_EXHAUSTED, universal/traps.py)."""
        return self.max_depth - 1

    @property
    def memory_page_limit(self) -> int:
        """The pages ``memory.grow`` may reach (besides the module's maximum): 2**mem_bits
        bytes, what the memory keys cover. The reference executor agrees when run with
        ``HostLimits(max_memory_pages=memory_page_limit)`` (universal/memsize.py)."""
        return 2 ** self.mem_bits // PAGE_SIZE

    def check(self, fused: FusedProgram, length: int) -> None:
        """Raise unless ``fused`` run over ``length`` positions is within these limits."""
        if length > self.max_len:
            raise GraphError(f"{length} positions: over the graph's max_len {self.max_len}")
        top = 256 ** self.pc_bytes
        c_total = fused.prefix[-1] + 64 if fused.prefix else 0
        if len(fused.code) >= top or c_total >= top:
            raise GraphError(f"{len(fused.code)} fused instructions: over the graph's "
                             f"{self.pc_bytes}-byte pcs")
        for fi in fused.code:
            if fi.height >= SLOT_LIMIT or fi.dst_local >= SLOT_LIMIT:
                raise GraphError(f"pc with stack height {fi.height} or local {fi.dst_local}: "
                                 f"over {SLOT_LIMIT - 1}")
        for f in fused.funcs:
            if len(f.locals) > SLOT_LIMIT:
                raise GraphError(f"function {f.index} has {len(f.locals)} locals: over "
                                 f"{SLOT_LIMIT}")
        self._check_memory(fused)

    def _check_memory(self, fused: FusedProgram) -> None:
        """Memory, offsets and global indices within what the keys are built for."""
        module = fused.program.module
        top = 2 ** self.mem_bits
        for mem in module.mem_types:
            pages = mem.limits.min  # memory.grow beyond the limit fails (memory_page_limit)
            if pages > self.memory_page_limit:
                raise GraphError(f"memory of {pages} pages: over the graph's 2**{self.mem_bits} "
                                 f"bytes (Limits.mem_bits; the memory keys' range, which "
                                 f"float64 exactness bounds)")
        for pc, fi in enumerate(fused.code):
            if fi.op in LOADS or fi.op in STORES:
                if fi.args[0] >= top:
                    raise GraphError(f"pc {pc}: memory offset {fi.args[0]} over the graph's "
                                     f"2**{self.mem_bits} (Limits.mem_bits)")
        if len(module.global_types) > SLOT_LIMIT:
            raise GraphError(f"{len(module.global_types)} globals: over {SLOT_LIMIT}")
