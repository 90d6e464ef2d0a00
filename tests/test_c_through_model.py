"""C programs executed by the transformer itself (the fast and torch engines).

For an example in examples/: the engine's tokens (the header, the generated trace and the
host calls the engine spliced) equal the reference token machine's, token for token, and
its stdout and exit code equal the checked-in expectation, which tests/test_examples.py
proves against wasmtime. hello.c runs through the fast engine in the default run; every
example through the fast engine, and hello.c through the torch engine, in the slow run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_examples import EXAMPLES, compiled  # noqa: E402

from wasmformer.engine import Session  # noqa: E402
from wasmformer.engine.models import BUCKETS, engine_limits  # noqa: E402
from wasmformer.engine.session import reference_limits  # noqa: E402
from wasmformer.machine import Instance, TokenMachine  # noqa: E402
from wasmformer.machine.wasi import WasiHost  # noqa: E402
from wasmformer.wasm import load_module  # noqa: E402

DEFAULT = ("hello",)  # the default run's example: ~26K prompt tokens, 2.4K trace tokens


def through_the_model(name: str, engine: str) -> None:
    example = next(e for e in EXAMPLES if e.name == name)
    module = load_module(compiled(name))
    host = WasiHost()
    want = TokenMachine(Instance(module, host=host, limits=reference_limits()), host).invoke("_start")
    session = Session(Instance(module, host=WasiHost(), limits=reference_limits()), engine=engine)
    stream = session.prompt_length + len(want.tokens)
    if stream > BUCKETS[-1]:  # sudoku: ~6M tokens
        pytest.skip(f"{name}: prompt + trace {stream:,} tokens, over the largest proven "
                    f"bucket ({BUCKETS[-1]:,} positions)")
    got = session.invoke("_start")
    assert len(got.tokens) == len(want.tokens), (len(got.tokens), len(want.tokens))
    first = next((i for i, (a, b) in enumerate(zip(got.tokens, want.tokens, strict=True))
                  if a != b), None)
    assert first is None, f"{name}: trace token {first} differs"
    assert got.outcome.stdout == example.expected_stdout
    assert (got.outcome.exit_code or 0) == example.exit_code
    if engine == "fast":
        assert session.scans == 0  # every lookup certified by the hulls


@pytest.mark.parametrize("name", [
    pytest.param(e.name, marks=() if e.name in DEFAULT else pytest.mark.slow)
    for e in EXAMPLES])
def test_example_through_the_fast_engine(name: str) -> None:
    through_the_model(name, "fast")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hello", "exitcode"])  # the examples with ~30K streams
def test_example_through_the_torch_engine(name: str) -> None:
    """The torch module itself (KV cache, attention over every cached key per token).
    Measured on the 2-core CPU: hello 1,484 s, exitcode 1,213 s, ~4.2 GB peak RSS each;
    the other examples' prompts are 166K-285K tokens (hours each at O(n) per token)."""
    through_the_model(name, "torch")


DEEP = """(module
  (func $down (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0)) (then (i32.const 0))
      (else (i32.add (i32.const 1) (call $down (i32.sub (local.get 0) (i32.const 1)))))))
  (func (export "_start") (drop (call $down (i32.const 500)))))"""


def test_recursion_past_the_models_frames_traps_with_a_note() -> None:
    """The model holds engine_limits().call_depth_limit frames; the reference engine allows
    50,000 by default, so the transformer's trap says why it came sooner."""
    import wasmformer

    frames = engine_limits(BUCKETS[-1]).call_depth_limit
    assert wasmformer.run(DEEP, engine="reference").trap is None
    result = wasmformer.run(DEEP, engine="fast")
    assert result.exit_code == 134
    assert result.trap == (f"call stack exhausted (the fast engine's model holds {frames} "
                           f"frames; the host allows 50,000)")
