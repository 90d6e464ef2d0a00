"""Host calls on the transformer engines: the host reads the model's state, the engine
splices the host call's tokens (docs/PROTOCOL.md, docs/UNIVERSAL.md "Host calls").

The model cannot do I/O. At a host call's first token it writes ``CALL`` (then ``ff ff
ff``, the import's ``FUNCS`` entry); the engine stops at that ``CALL``, before it enters the
cache, and asks the model's own state what to do:

- **which instruction**: the ``call_site`` lookup's value at the last cached position is
  the record of the instruction the next token belongs to (the model's own floor lookup);
  a ``call`` of an import is a host call, anything else continues as generated;
- **the arguments**: the stack lookup's (``stack_B``) rows. Each position's row holds its
  write key (8 x (depth x 256 + slot) at a value's last byte, ``universal/state.py``) and
  the 8 tokens ending there; the latest row per key is the slot's value, exactly the
  head's answer to a query of that key. The depth comes from the ``depth`` lookup's rows
  (the latest ``CALL``/``RET`` end's);
- **linear memory**: the memory read's (``mem_read``) rows: each key below the memory's
  size is a byte address (a store's byte, a prompt ``DATA`` byte, a host call's ``MEM``
  byte) and the row's value that byte; latest per address wins, as in the head.

``HostView`` folds the rows into those views incrementally: each host call reads only the
rows cached since the previous one. The project's WASI host (``machine/wasi.py``, the
instance's own imported functions) then runs against the view's memory, as a device
reads and writes a machine's memory by DMA, and its effects become tokens through the
token machine's own encoder (``machine.tokens.host_call_tokens``/``exit_tokens``): the
output it wrote, the ``MEM`` runs of the bytes it changed, ``JUMP`` to the call's first
``result`` record and the results; ``proc_exit`` gives ``EXIT code``. The engine feeds
those tokens to the model, which reads them back like any other tokens.

This is not an interpreter on the side: nothing here executes a WebAssembly instruction
or keeps a machine state of its own. The view is a cache of the model's lookup rows (the
keys and values its heads attend to), rebuilt from them at every host call, and the only
code run is the host's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import EngineRefusal, Trap
from ..machine import vocab
from ..machine.fuse import FusedProgram
from ..machine.hosts import Linker
from ..machine.instance import Instance
from ..machine.prompt import CODE_RECORD
from ..machine.runtime import HostFunction
from ..machine.tokens import TokenMachine, exit_tokens, host_call_tokens
from ..machine.wasi import ProcExit, WasiHost
from ..universal.limits import SLOT_LIMIT
from ..universal.state import KEY_STEP
from ..universal.window import SPAN, VALUE
from .decoders import Decoder

STACK, MEMORY, DEPTH, SITE = "stack_B", "mem_read", "depth", "call_site"
KEY_ROW = 0  # a lookup head's first key row holds key - shift (compiler.lower.key_shift)


@dataclass
class Splice:
    tokens: list[int]  # what the engine writes in place of the model's CALL
    ends: bool  # proc_exit (or a trap): the invocation ends with these tokens


def _layout(decoder: Decoder) -> dict[str, dict]:
    """Where the decoder's model keeps the lookups the host reads. Each bucket's model is
    scheduled on its own, so the layers and heads differ between buckets: a stream that
    moves to a larger bucket must read the new model's (the folded view stays valid: the
    rows mean the same)."""
    layout = decoder.model.info.get("lookups", {})
    missing = [n for n in (STACK, MEMORY, DEPTH, SITE) if n not in layout]
    if missing:
        raise EngineRefusal(f"this model does not record where its lookups {missing} "
                            "are (built before host calls): rebuild it")
    return layout


class HostView:
    """The stack slots, memory and depth the model's lookup rows hold, folded in
    incrementally (rows ``seen``.. are new at each ``sync``)."""

    def __init__(self, memory_size: int):
        self.memory = bytearray(memory_size)
        self.slots: dict[int, list[int]] = {}  # stack key -> the 8 tokens ending there
        self.depth = 0
        self.seen = 0

    def reset(self) -> None:
        self.memory[:] = bytes(len(self.memory))
        self.slots.clear()
        self.depth = 0
        self.seen = 0

    def _rows(self, decoder: Decoder, name: str, values: list[str], start: int, stop: int):
        """Keys and the named value rows of lookup ``name`` for positions start..stop-1."""
        at = _layout(decoder)[name]
        values = [at["values"][v] for v in values]
        keys, rows = decoder.rows(at["layer"], at["head"], KEY_ROW, values, start, stop)
        return (keys + at["key_shift"]).round().astype(int).tolist(), rows.round().astype(int)

    def sync(self, decoder: Decoder) -> None:
        """Fold in the rows of the positions cached since the last call."""
        start, stop = self.seen, decoder.length
        if stop <= start:
            return
        # the writer's window: token d back from the value's last byte, value index 9 d
        writer = [str(len(VALUE) * d) for d in range(SPAN)]
        keys, windows = self._rows(decoder, STACK, writer, start, stop)
        for key, window in zip(keys, windows.tolist(), strict=True):
            if key >= 0 and key % KEY_STEP == 0:
                self.slots[key] = window
        keys, values = self._rows(decoder, MEMORY, ["0"], start, stop)
        size = len(self.memory)
        for key, (byte,) in zip(keys, values.tolist(), strict=True):
            if 0 <= key < size:
                self.memory[key] = byte
        keys, values = self._rows(decoder, DEPTH, ["0"], start, stop)
        for key, (depth,) in zip(keys, values.tolist(), strict=True):
            if key == 1:  # a CALL/RET end
                self.depth = depth
        self.seen = stop

    def next_record(self, decoder: Decoder) -> int:
        """The prompt position of the record the next token belongs to, as the model found
        it at the last cached position (the ``call_site`` lookup's value there)."""
        last = decoder.length - 1
        _, values = self._rows(decoder, SITE, ["0"], last, last + 1)
        return int(values[0, 0])

    def stack_value(self, slot: int, valtype: str) -> int:
        """The value in stack slot ``slot`` of the current frame (unsigned)."""
        width = 8 if valtype in ("i64", "f64") else 4
        window = self.slots.get(KEY_STEP * (self.depth * SLOT_LIMIT + slot))
        if window is None:
            raise EngineRefusal(f"a host call's argument in stack slot {slot} was never "
                                "written in the model's state")
        return sum(window[width - 1 - k] << (8 * k) for k in range(width))


class HostCalls:
    """Performs the host calls of one session's stream (see the module doc)."""

    def __init__(self, instance: Instance, fused: FusedProgram, machine: TokenMachine,
                 code_start: int):
        self.instance, self.fused, self.machine = instance, fused, machine
        self.code_start = code_start
        self.imported = fused.program.module.num_imported_funcs
        memory = instance.memory
        self.view = HostView(len(memory.data) if memory is not None else 0)
        self.wasi = _wasi_of(instance.host)

    def splice(self, decoder: Decoder) -> Splice | None:
        """The tokens of the host call the next token starts (None: it is not one)."""
        offset = self.view.next_record(decoder) - self.code_start
        pc, rest = divmod(offset, CODE_RECORD)
        if rest or not 0 <= pc < len(self.fused.code):
            return None
        fi = self.fused.code[pc]
        if fi.op != "call" or fi.args[0] >= self.imported:
            return None
        func = self.instance.functions[fi.args[0]]
        assert isinstance(func, HostFunction)  # Session refuses other imports
        self.view.sync(decoder)
        params, results = func.type.params, func.type.results
        base = fi.height - len(params)
        args = [self.view.stack_value(base + i, t) for i, t in enumerate(params)]
        before = bytes(self.view.memory)
        output: list[int] = []
        with _captured(self.wasi, output):
            try:
                values = func.call(_Caller(_Memory(self.view.memory)), args)
            except ProcExit as e:
                return Splice(exit_tokens(output, e.code), ends=True)
            except Trap as e:  # as the token machine writes it (no output tokens)
                return Splice(vocab.trap_tokens(e.reason, pc), ends=True)
        encoded = [self.machine.value_tokens(v, t) for v, t in zip(values, results, strict=True)]
        return Splice(host_call_tokens(output, before, bytes(self.view.memory), pc + 1, encoded),
                      ends=False)


@dataclass
class _Memory:
    data: bytearray


@dataclass
class _Caller:
    """What a host function sees of its caller: the memory (the view of the model's)."""

    memory: _Memory


def _wasi_of(host: object) -> WasiHost | None:
    if isinstance(host, WasiHost):
        return host
    if isinstance(host, Linker):
        return next((h for h in host.hosts if isinstance(h, WasiHost)), None)
    return None


@contextmanager
def _captured(wasi: WasiHost | None, into: list[int]) -> Iterator[None]:
    """Route the WASI host's output into output tokens (the engine streams them itself)."""
    if wasi is None:
        yield
        return
    out, err = wasi.write_stdout, wasi.write_stderr
    wasi.write_stdout = lambda data: into.extend(vocab.output(1, data))
    wasi.write_stderr = lambda data: into.extend(vocab.output(2, data))
    try:
        yield
    finally:
        wasi.write_stdout, wasi.write_stderr = out, err
