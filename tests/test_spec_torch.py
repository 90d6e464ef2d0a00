"""The spec suite's integer assertions executed by the torch engine (slow).

Each script runs in order on the reference machine, as in test_spec_exec.py, so module state
evolves as the suite expects. Before the reference runs an ``assert_return``/``assert_trap``
(integer arguments and results only), the torch engine runs the same invocation on a token
stream whose prompt is the reference instance's state at that moment:

- one stream serves consecutive assertions while the module's state (memory, globals,
  tables) is unchanged and the stream, with room for the next header and ``MAX_TOKENS``,
  stays in the prompt's bucket (the smallest model holding the prompt and that room);
  past it, the stream is rewound to its prompt (``TorchSession.rewind``: the prompt's cache
  is kept) rather than moved to a larger model (exact too, but every token then costs more
  and the larger model is prefilled again), and when the state changed, a fresh stream
  starts from the current state. That is exact by construction: a prompt describes the
  state its trace starts from (docs/PROTOCOL.md), and both are the stream a fresh
  ``Instance`` would build from that state;
- an invocation that may reach an instruction the graph does not cover is *refused* (never
  run); everything it runs must give the expected results or trap.

``python tests/test_spec_torch.py [FILE ...]`` prints the counts per file. Measured
(docs/UNIVERSAL.md): i32 374 passed, i64 384 passed, 0 failed, 0 refused (5,776 and 14,146
generated tokens; 10.5 and 13 minutes on the shared 2-core CPU).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from spec_suite import is_integer_only, module_bytes, spec_script  # noqa: E402
from test_spec_exec import arg_value, matches  # noqa: E402

from wasmformer.engine import TorchSession, bucket_for  # noqa: E402
from wasmformer.errors import EngineRefusal, Trap, WasmformerError  # noqa: E402
from wasmformer.machine import Instance, Linker, SpectestHost  # noqa: E402
from wasmformer.wasm import load_module  # noqa: E402

FILES = ("i32", "i64")
MAX_TOKENS = 1000  # a safety net (and room kept per stream): these assertions need < 200


@dataclass
class TorchTally:
    passed: int = 0
    failed: int = 0
    unsupported: int = 0  # refused: the invocation may reach an uncovered instruction
    too_long: int = 0  # refused: prompt + trace over the proven positions
    streams: int = 0  # token streams started (prefills of a prompt)
    rewinds: int = 0  # streams rewound to their prompt (``TorchSession.rewind``)
    tokens: int = 0  # tokens generated
    failures: list[str] = field(default_factory=list, repr=False)


def state_key(inst: Instance) -> str:
    """A digest of the state a prompt describes: memory, globals, tables."""
    h = hashlib.sha256(bytes(inst.memory.data) if inst.memory is not None else b"")
    h.update(repr([g.value if isinstance(g.value, int) else id(g.value)
                   for g in inst.globals]).encode())
    h.update(repr([[id(e) for e in t.elems] for t in inst.tables]).encode())
    return h.hexdigest()


class TorchScriptRunner:
    def __init__(self, name: str, progress: bool = False):
        self.name = name
        self.progress = progress
        self.linker = Linker(SpectestHost())
        self.current: Instance | None = None
        self.session: TorchSession | None = None
        self.key = ""
        self.tally = TorchTally()

    def run(self) -> TorchTally:
        commands, folder = spec_script(self.name)
        for cmd in commands:
            if cmd["type"] == "module":
                self.session = None
                try:
                    self.current = Instance(load_module(module_bytes(folder, cmd)),
                                            host=self.linker)
                except WasmformerError:
                    self.current = None
            elif cmd["type"] in ("assert_return", "assert_trap", "action"):
                self.assertion(cmd)
        return self.tally

    def assertion(self, cmd: dict) -> None:
        action, inst = cmd["action"], self.current
        if inst is None or action.get("module") or action["type"] != "invoke":
            return
        args = [arg_value(a) for a in action["args"]]
        if cmd["type"] != "action" and is_integer_only(cmd):
            self.check_torch(cmd, inst, action["field"], args)
        try:  # the reference moves the state on, as the suite expects
            inst.invoke(action["field"], args)
        except Trap:
            pass

    def stream_for(self, inst: Instance, name: str, args: list) -> TorchSession:
        """The stream for the next assertion: the current one while the state is the prompt's
        and the invocation keeps it in the prompt's bucket, else rewound to its prompt (a
        longer stream would move to a larger model, exact but slower per token, and be
        prefilled again), or a fresh stream on a changed state."""
        key = state_key(inst)
        if self.session is None or key != self.key:
            self.session, self.key = TorchSession(inst), key
            self.tally.streams += 1
            return self.session
        session = self.session
        extra = len(session.machine.invocation(name, args)[1]) + MAX_TOKENS
        if (len(session.stream) > session.prompt_length
                and bucket_for(len(session.stream) + extra)
                != bucket_for(session.prompt_length + extra)):
            session.rewind()  # same state as the prompt's: a fresh stream, prefill kept
            self.tally.rewinds += 1
        return session

    def check_torch(self, cmd: dict, inst: Instance, name: str, args: list) -> None:
        try:
            ended = self.stream_for(inst, name, args).invoke(name, args, max_tokens=MAX_TOKENS)
        except EngineRefusal as e:
            if "proven exact for at most" in str(e):
                self.tally.too_long += 1
            else:
                self.tally.unsupported += 1
            return
        except WasmformerError as e:  # a budget stop: the model did not finish
            self.session = None
            self.fail(cmd, f"{type(e).__name__}: {e}")
            return
        self.tally.tokens += ended.generated
        if self.progress and (self.tally.passed + self.tally.failed) % 25 == 0:
            print(f"  {self.name}: {self.tally}", flush=True)
        o = ended.outcome
        if cmd["type"] == "assert_trap":
            if o.trap is not None and o.trap.startswith(cmd["text"]):
                self.tally.passed += 1
            else:
                self.fail(cmd, f"torch gave {o.results} / trap {o.trap!r}")
        elif o.trap is None and len(o.results) == len(cmd["expected"]) and all(
                matches(e, r) for e, r in zip(cmd["expected"], o.results, strict=True)):
            self.tally.passed += 1
        else:
            self.fail(cmd, f"torch gave {o.results} / trap {o.trap!r}, expected "
                           f"{cmd.get('expected')}")

    def fail(self, cmd: dict, message: str) -> None:
        self.tally.failed += 1
        self.tally.failures.append(f"{self.name}.wast:{cmd['line']} {cmd['action']['field']}: "
                                   f"{message}")
        if self.progress:
            print("  FAILED", self.tally.failures[-1], flush=True)


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")  # tests/conftest.py: one token's matrices are small
@pytest.mark.parametrize("name", FILES)
def test_spec_file_on_the_torch_engine(name: str) -> None:
    t = TorchScriptRunner(name).run()
    print(f"{name}: passed {t.passed} failed {t.failed} refused: unsupported {t.unsupported}, "
          f"too long {t.too_long}")
    assert not t.failures, "\n".join(t.failures[:20])
    assert t.unsupported == 0 and t.too_long == 0  # the graph covers i32/i64; streams fit
    assert t.passed > 0


def main(names: list[str]) -> None:
    import time

    import torch

    # One token's products are small: a second thread only waits, and on a shared CPU (or
    # with both files run at once) oversubscribed threads made decoding several times slower.
    torch.set_num_threads(1)

    print(f"{'file':12} {'passed':>7} {'failed':>7} {'unsupported':>12} {'too long':>9} "
          f"{'streams':>8} {'rewinds':>8} {'tokens':>8} {'seconds':>8}")
    for name in names:
        start = time.perf_counter()
        t = TorchScriptRunner(name, progress=True).run()
        print(f"{name:12} {t.passed:7} {t.failed:7} {t.unsupported:12} {t.too_long:9} "
              f"{t.streams:8} {t.rewinds:8} {t.tokens:8} {time.perf_counter() - start:8.1f}",
              flush=True)
        for f in t.failures[:5]:
            print("   ", f)


if __name__ == "__main__":
    main(sys.argv[1:] or list(FILES))
