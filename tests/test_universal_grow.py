"""``memory.grow`` and the size after it in the universal model (universal/memsize.py).

- the programs ``grow``, ``grow_max`` and ``grow_oob`` (tests/universal_programs.py): grows
  by 0 and by 1, refused by the module's maximum, by the graph's page cap
  (``Limits.memory_page_limit``) and by a delta with high bits, stores and loads in the
  new page, out of bounds just past the old and the new size, ``memory.size`` before and
  after: the fast and torch engines' tokens equal the token machine's (run with
  ``HostLimits(max_memory_pages=Limits().memory_page_limit)``);
- the engines' refusal of a host limit below the model's cap, and the note when the
  model's cap is below what the host allows;
- the reference executor and token machine under the cap; ``Limits`` and ``supported``.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from universal_programs import (  # noqa: E402
    GROW_PROGRAMS,
    TRAP_PROGRAMS,
    check_evaluator,
    check_model,
    make_stream,
    stream,
)

import wasmformer  # noqa: E402
from wasmformer.compiler import compile_graph  # noqa: E402
from wasmformer.engine import Session  # noqa: E402
from wasmformer.errors import EngineRefusal  # noqa: E402
from wasmformer.graph import Evaluator, Graph, GraphError, as_linear  # noqa: E402
from wasmformer.machine import HostLimits, Instance, TokenMachine, vocab  # noqa: E402
from wasmformer.model import build_model  # noqa: E402
from wasmformer.toolchain import program_bytes  # noqa: E402
from wasmformer.universal import units as U  # noqa: E402
from wasmformer.universal.interpreter import build_universal_graph, supported  # noqa: E402
from wasmformer.universal.limits import Limits  # noqa: E402
from wasmformer.universal.memsize import size_byte  # noqa: E402
from wasmformer.wasm import load_module  # noqa: E402

GROWS = ("grow", "grow_max", "grow_oob")
CAP = Limits().memory_page_limit
OPS = ("i32.add", "i32.mul")  # what the grow programs compute besides memory


def wat_and_calls(name: str) -> tuple[str, list[tuple[str, list[int]]]]:
    return GROW_PROGRAMS[name] if name in GROW_PROGRAMS else TRAP_PROGRAMS[name]


def instance(wat: str, limits: HostLimits | None = None) -> Instance:
    return Instance(load_module(program_bytes(wat).wasm), limits=limits or HostLimits())


def check_session(name: str, engine: str) -> Session:
    """Every invocation of ``name`` on one session: the token machine's tokens."""
    wat, calls = wat_and_calls(name)
    from wasmformer.engine.models import BUCKETS, engine_limits
    # the engines' model caps memory at its own mem_bits: the token machine runs with that cap
    want = make_stream(name, wat, calls,
                       max_memory_pages=engine_limits(BUCKETS[-1]).memory_page_limit)
    session = Session(instance(wat), engine=engine)  # the host allows more: the default
    for (export, args), trace in zip(calls, want.traces, strict=True):
        got = session.invoke(export, args)
        assert got.tokens == trace.tokens, want.describe_failure(len(session.stream))
    return session


def test_the_programs_exercise_every_case() -> None:
    results = [t.results for t in stream("grow").traces]
    assert results[1:5] == [[1], [1], [1], [2]]  # grow by 0, size, grow by 1, size
    assert results[7:9] == [[-1], [-1]]  # past the cap (the module has no maximum); -1
    assert [t.results for t in stream("grow_max").traces] == [[-1], [256], [255], [257]]
    assert [t.outcome for t in stream("grow_oob").traces] == [
        "trap", "halt", "halt", "trap", "halt", "halt", "trap"]
    assert all(supported(stream(n).fused) == [] for n in GROWS)


@pytest.mark.parametrize("name", GROWS)
def test_fast_engine_grows_as_the_token_machine(name: str) -> None:
    session = check_session(name, "fast")
    assert session.scans == 0  # the hulls certified every lookup, the new ones included
    # a note exactly when the module's maximum (none: 65,536 pages) is above the model's cap
    declared = session.instance.memory.max_pages
    capped = (65536 if declared is None else declared) > engine_cap()
    assert bool(session.notes) == capped
    if capped:
        assert f"caps memory.grow at {engine_cap()} pages" in session.notes[0]


def test_torch_engine_grows_as_the_token_machine() -> None:
    check_session("grow_oob", "torch")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["grow", "grow_max"])
def test_torch_engine_grows_as_the_token_machine_slow(name: str) -> None:
    check_session(name, "torch")


@functools.cache
def small_model():
    g = build_universal_graph(Limits(max_len=2048, ops=OPS))[0]
    return build_model(compile_graph(g), torch.float64)


@pytest.mark.slow
@pytest.mark.parametrize("name", GROWS)
def test_grow_programs_on_a_small_model_and_the_evaluator(name: str) -> None:
    g = build_universal_graph(Limits(max_len=2048, ops=OPS))[0]
    assert check_evaluator(g, stream(name)) > 0
    assert check_model(small_model(), stream(name)) > 0


GROW_ONLY = """(module (memory %s)
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "_start") (drop (memory.grow (i32.const 5)))))"""


def test_an_engine_refuses_a_host_limit_below_the_models_cap() -> None:
    cap = engine_cap()  # the engines' model: its own mem_bits
    with pytest.raises(EngineRefusal, match="lower host limit"):
        Session(instance(GROW_ONLY % "1", HostLimits(max_memory_pages=cap - 1)), engine="fast")
    # a module maximum at or below the host's limit: no refusal, no note
    assert Session(instance(GROW_ONLY % f"1 {cap - 1}", HostLimits(max_memory_pages=cap - 1)),
                   engine="fast").notes == []
    with pytest.raises(EngineRefusal, match="mem_bits"):
        Session(instance(GROW_ONLY % f"{cap + 1}"), engine="fast")


def test_the_api_notes_the_cap() -> None:
    notes = wasmformer.run(GROW_ONLY % "1", engine="fast").notes
    assert len(notes) == 1 and "16,384 pages elsewhere" in notes[0]
    assert wasmformer.run(GROW_ONLY % "1", engine="reference").notes == ()  # no cap


@pytest.mark.slow  # a subprocess loading the model: ~15 s
def test_the_cli_notes_the_cap(tmp_path: Path) -> None:
    prog = tmp_path / "grow.wat"
    prog.write_text(GROW_ONLY % "1")
    proc = subprocess.run([sys.executable, "-m", "wasmformer", "run", str(prog), "--engine",
                           "fast"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"note: the fast engine caps memory.grow at {engine_cap()} pages" in proc.stderr
    assert "16,384 pages elsewhere" in proc.stderr


def test_the_token_machine_under_the_cap() -> None:
    """The reference executor's HostLimits cap: a grow past it pushes -1 (255 x 4 tokens),
    the memory stays, a grow within it pushes the old size."""
    inst = instance(GROW_ONLY % "1", HostLimits(max_memory_pages=CAP))
    tm = TokenMachine(inst)
    grow = 2  # step 0: the invocation, 1: the argument's copy, 2: the grow
    ok = tm.invoke("grow", [CAP - 1])
    assert tm.fused.code[ok.pcs[grow]].op == "memory.grow"
    assert ok.step_tokens(grow) == [1, 0, 0, 0] and inst.memory.pages == CAP
    refused = tm.invoke("grow", [1])
    assert refused.step_tokens(grow) == [255] * 4 and inst.memory.pages == CAP
    assert tm.invoke("grow", [0]).step_tokens(grow) == [CAP, 0, 0, 0]


def test_limits_check_the_initial_size_only() -> None:
    assert Limits(mem_bits=16).memory_page_limit == 1 and CAP == 2
    grows = stream("grow")  # no maximum: the graph's cap bounds it
    Limits().check(grows.fused, len(grows.tokens))
    with pytest.raises(GraphError, match="memory of 2 pages"):
        Limits(mem_bits=16).check(TokenMachine(instance("(module (memory 2))")).fused, 10)


def test_size_bytes_of_a_large_page_limit() -> None:
    """``memsize.size_byte`` with 65,536 pages (mem_bits 32: thresholds at multiples of 256;
    the default graphs' 2 pages need none): sizes 256 p + offset, p = 0..255."""
    g = Graph(vocab.SIZE, 256)
    offsets = (0, 1, 255, 256)
    nodes = {o: [U.node(g, f"byte{k}", size_byte(256 * as_linear(g.position()) + o, k, 65536),
                        0, 255) for k in range(4)] for o in offsets}
    ev = Evaluator(g)
    for _ in range(256):
        ev.feed(0)
    for o in offsets:
        got = list(zip(*(ev.values(n) for n in nodes[o]), strict=True))
        assert got == [tuple((256 * p + o).to_bytes(4, "little")) for p in range(256)]


def engine_cap() -> int:
    """The page cap of the engines' model (its own mem_bits, not the default Limits')."""
    from wasmformer.engine.models import BUCKETS, engine_limits

    return engine_limits(BUCKETS[-1]).memory_page_limit
