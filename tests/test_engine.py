"""The transformer engines (wasmformer.engine: torch and fast) against the reference token
machine.

- on the universal graph's programs (tests/universal_programs.py): the tokens the engine
  generates equal the token machine's, token for token, invocation after invocation on one
  persistent instance (the default run: the short ones; all of them: slow);
- through the public API on hand-written .wat: ``invoke(..., engine="torch")`` gives the
  reference engine's results, and its tokens are the token machine's;
- refusals before any token (an instruction the graph does not cover, a call of another
  instance's function, a stream over the proven positions), the token budget, engines not
  mixed on one instance (host calls: tests/test_host.py);
- the fast engine (the fast decoder behind the same session) on every program, equal to the
  token machine and to the torch engine; its statistics (no scan, the certified margin);
- the sparse fast path is bit-identical to the dense model; a saved model loads back
  bit-identical.

The model is built once (``engine.universal_model``: cached on disk, then in process).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from universal_programs import PROGRAMS, stream  # noqa: E402

import wasmformer  # noqa: E402
from wasmformer.engine import (  # noqa: E402
    BUCKETS,
    Session,
    TorchSession,
    fast_model,
    universal_model,
)
from wasmformer.engine.sparse import sparse_read  # noqa: E402
from wasmformer.errors import BudgetExceeded, EngineRefusal, InputError  # noqa: E402
from wasmformer.machine import Instance, Linker, TokenMachine  # noqa: E402
from wasmformer.model import load_model, save_model  # noqa: E402
from wasmformer.toolchain import program_bytes  # noqa: E402
from wasmformer.wasm import load_module  # noqa: E402

FAST = ("sum_to",)  # the default run's program (two invocations, 84 generated tokens)


@pytest.fixture(scope="session")
def model():
    """The smallest bucket's model, built (or read from the disk cache) once."""
    return fast_model(BUCKETS[0])


def machine_instance(wat: str) -> Instance:
    return Instance(load_module(program_bytes(wat).wasm))


def check_program(name: str, engine: str = "torch") -> int:
    """Run ``name``'s invocations on one session of ``engine``; every token must be the
    token machine's. Returns the tokens generated."""
    wat, calls = PROGRAMS[name]
    want = stream(name)
    session = Session(machine_instance(wat), engine=engine)
    assert session.stream == want.prompt
    generated = 0
    for (export, args), trace in zip(calls, want.traces, strict=True):
        got = session.invoke(export, args)
        assert got.tokens == trace.tokens, f"{name}: {export}{tuple(args)}"
        assert got.ending == "halt" and got.outcome.results == trace.results
        generated += got.generated
    session.rewind()  # back to the prompt (its cache kept): as a fresh stream
    export, args = calls[0]
    assert session.invoke(export, args).tokens == want.traces[0].tokens
    return generated


@pytest.mark.parametrize("name", FAST)
def test_engine_generates_the_token_machines_trace(model, name: str) -> None:
    assert check_program(name) > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(PROGRAMS) - set(FAST)))
def test_engine_generates_every_programs_trace(model, name: str) -> None:
    assert check_program(name) > 0


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_fast_engine_generates_every_programs_trace(name: str) -> None:
    assert check_program(name, "fast") > 0


def test_fast_and_torch_engines_give_the_same_tokens(model) -> None:
    wat, calls = PROGRAMS["sum_to"]
    torch_session = TorchSession(machine_instance(wat))
    fast_session = Session(machine_instance(wat), engine="fast")
    for export, args in calls:
        assert fast_session.invoke(export, args).tokens == torch_session.invoke(export, args).tokens
    assert fast_session.stream == torch_session.stream
    assert fast_session.scans == 0  # every lookup certified by its hull
    assert fast_session.margin is not None and fast_session.margin >= 1
    assert torch_session.scans is None and torch_session.margin is None


# --- the public API on hand-written programs ---

COUNTER = """(module
  (func $sq (param i64) (result i64) (i64.mul (local.get 0) (local.get 0)))
  (func (export "poly") (param $x i64) (param $k i32) (result i64)
    (i64.add (call $sq (local.get $x)) (i64.extend_i32_s (local.get $k))))
  (func (export "gcd") (param $a i32) (param $b i32) (result i32) (local $t i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $b)))
        (local.set $t (local.get $b))
        ;; a - b*floor(a/b) without division: subtract while a >= b
        (block $sub (loop $again
          (br_if $sub (i32.lt_u (local.get $a) (local.get $b)))
          (local.set $a (i32.sub (local.get $a) (local.get $b)))
          (br $again)))
        (local.set $b (local.get $a))
        (local.set $a (local.get $t))
        (br $next)))
    (local.get $a)))"""
CALLS = [("gcd", [12, 18]), ("poly", [-3, 5]), ("gcd", [7, 5]), ("poly", [1 << 33, -1])]


def test_api_persistent_instance_matches_the_reference(model) -> None:
    """Four invocations continue one stream: results as the reference engine's, tokens as
    the token machine's."""
    torch_inst = wasmformer.load(COUNTER)
    ref_inst = wasmformer.load(COUNTER)
    machine = TokenMachine(machine_instance(COUNTER))
    for export, args in CALLS:
        got = torch_inst.invoke_torch(export, args)
        assert got.tokens == machine.invoke(export, args).tokens
        assert got.outcome.results == ref_inst.invoke(export, args)


def test_api_persistent_instance_on_the_fast_engine() -> None:
    """The same four invocations on the fast engine: the token machine's tokens, the
    reference engine's results, through both API calls."""
    fast_inst, ref_inst = wasmformer.load(COUNTER), wasmformer.load(COUNTER)
    machine = TokenMachine(machine_instance(COUNTER))
    for export, args in CALLS:  # each call twice: through invoke_tokens, then invoke
        got = fast_inst.invoke_tokens(export, args, engine="fast")
        assert got.tokens == machine.invoke(export, args).tokens
        assert got.outcome.results == ref_inst.invoke(export, args)
        assert fast_inst.invoke(export, args, engine="fast") == ref_inst.invoke(export, args)
        machine.invoke(export, args)  # the token machine follows the same state


def test_run_on_the_fast_engine() -> None:
    result = wasmformer.run(START, engine="fast")
    want = wasmformer.run(START, engine="torch")
    assert (result.exit_code, result.stdout, result.trap) == (0, b"", None)
    assert (result.tokens, result.prompt_tokens, result.generated) == \
        (want.tokens, want.prompt_tokens, want.generated)
    assert result.scans == 0 and result.margin is not None


@pytest.mark.slow
def test_api_invoke_returns_the_results(model) -> None:
    torch_inst, ref_inst = wasmformer.load(COUNTER), wasmformer.load(COUNTER)
    for export, args in CALLS:
        assert torch_inst.invoke(export, args, engine="torch") == ref_inst.invoke(export, args)


def test_run_a_start_function(model, tmp_path: Path) -> None:
    result = wasmformer.run(START, engine="torch")
    assert (result.exit_code, result.stdout, result.trap) == (0, b"", None)
    assert result.tokens and result.tokens > 20 and result.prompt_tokens


START = """(module (func (export "_start") (local $i i32)
  (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if $l (i32.lt_u (local.get $i) (i32.const 5))))))"""


# --- refusals and budgets ---

MEMORY = """(module (memory 1) (func (export "f") (param i32) (result i32)
  (i32.store (local.get 0) (i32.const 7)) (i32.load (local.get 0))))"""
FILL = """(module (memory 1) (func (export "f") (param i32)
  (memory.fill (local.get 0) (i32.const 7) (i32.const 3))))"""


@pytest.mark.parametrize("engine", ["torch", "fast"])
def test_refuses_an_instruction_the_graph_does_not_cover(engine: str) -> None:
    with pytest.raises(EngineRefusal, match=rf"the {engine} engine cannot execute this "
                                            r"program yet: pc \d+: memory.fill"):
        wasmformer.load(FILL).invoke("f", [1], engine=engine)


def test_memory_through_the_torch_engine() -> None:
    torch_instance, reference = wasmformer.load(MEMORY), wasmformer.load(MEMORY)
    for address in (8, 65532, 65533):
        try:
            want = reference.invoke("f", [address])
        except wasmformer.Trap as exc:
            with pytest.raises(wasmformer.Trap, match=exc.reason):
                torch_instance.invoke("f", [address], engine="torch")
        else:
            assert torch_instance.invoke("f", [address], engine="torch") == want


def test_refuses_a_call_of_another_instances_function() -> None:
    """Host calls run (tests/test_host.py); a function of another instance does not."""
    linker = Linker()
    linker.register("lib", machine_instance('(module (func (export "f") (param i32)))'))
    user = Instance(load_module(program_bytes(
        '(module (import "lib" "f" (func $f (param i32)))'
        ' (func (export "_start") (call $f (i32.const 3))))').wasm), host=linker)
    with pytest.raises(EngineRefusal, match="call of another instance's function"):
        Session(user).invoke("_start")


def test_refuses_a_stream_over_the_proven_positions() -> None:
    # the prompt lists every table slot: 110,000 slots are 1.1M tokens; with a budget of
    # 2**23 - 10**6 the stream could pass 2**23
    big = '(module (table 110000 funcref) (func (export "f") (param i32) (result i32) i32.const 0))'
    with pytest.raises(EngineRefusal, match="proven exact for at most"):
        wasmformer.load(big).invoke("f", [1], engine="torch", max_tokens=BUCKETS[-1] - 10**6)
    with pytest.raises(EngineRefusal, match="token budget"):  # prompt + budget too long
        wasmformer.load(COUNTER).invoke("gcd", [1, 1], engine="torch", max_tokens=BUCKETS[-1])


@pytest.mark.parametrize("engine", ["torch", "fast"])
def test_token_budget_stops_and_cuts_the_stream(model, engine: str) -> None:
    inst = wasmformer.load(COUNTER)
    with pytest.raises(BudgetExceeded, match="token budget of 5 exhausted"):
        inst.invoke("gcd", [12, 18], engine=engine, max_tokens=5)
    with pytest.raises(EngineRefusal, match="was cut"):
        inst.invoke("gcd", [1, 1], engine=engine)


def test_a_stream_stops_before_it_runs_out_of_memory(monkeypatch) -> None:
    """The fast engine stops a stream, as a budget does, when going on would leave the
    machine less than ``MEMORY_RESERVE`` bytes (here: a machine that pretends to have
    almost none left), and says so; the decoder's estimate grows with the positions and
    counts a doubling's copy."""
    from wasmformer.engine import session as session_module

    inst = wasmformer.load(COUNTER)
    monkeypatch.setattr(session_module, "memory_available",
                        lambda: session_module.MEMORY_RESERVE + 1000)
    with pytest.raises(BudgetExceeded, match=r"memory: .* positions decoded; going on needs"):
        inst.invoke("gcd", [12, 18], engine="fast")
    decoder = inst.session.decoder.fast
    here, room = decoder.length, decoder.capacity
    within = decoder.memory_needed(here + 10)
    assert 0 < within < decoder.memory_needed(here + 20)
    assert decoder.memory_needed(room + 1) > decoder.memory_needed(room) + 1000
    assert decoder.memory_needed(here) == 0
    monkeypatch.setattr(session_module, "memory_available", lambda: None)  # not Linux
    assert wasmformer.load(COUNTER).invoke("gcd", [12, 18], engine="fast") == [6]


def test_engines_are_not_mixed_on_one_instance(model) -> None:
    inst = wasmformer.load(COUNTER)
    inst.invoke("poly", [2, 1])  # reference first: the torch prompt starts from this state
    assert inst.invoke("poly", [2, 1], engine="torch") == [5]
    with pytest.raises(InputError, match="ran on the torch engine"):
        inst.invoke("poly", [2, 1])
    with pytest.raises(InputError, match="ran on the torch engine"):
        inst.invoke("poly", [2, 1], engine="fast")


# --- the models ---


def test_sparse_path_is_bit_identical(model) -> None:
    tokens = torch.tensor([stream("sum_to").tokens])
    with torch.inference_mode():
        assert torch.equal(model(tokens), universal_model(BUCKETS[0])(tokens))


@pytest.mark.parametrize("queries", [1, 7])
def test_sparse_attention_read(queries: int) -> None:
    """The sparse read equals ``w @ v`` bit for bit on one-hot and empty rows (lookup heads)
    and silent heads, and to rounding on a mean head (the dense product per head)."""
    gen = torch.Generator().manual_seed(1)
    b, h, tk, d = 2, 4, 300, 5
    v = torch.randn(b, h, tk, d, generator=gen, dtype=torch.float64)
    w = torch.zeros(b, h, queries, tk, dtype=torch.float64)
    keys = torch.randint(tk, (b, queries), generator=gen)
    for i in range(b):
        for q in range(queries):
            w[i, 0, q, keys[i, q]] = 1.0  # a lookup head
            w[i, 1, q, keys[i, q]] = float(q % 2)  # one-hot or empty rows
            w[i, 2, q] = 1 / tk  # a mean head
    v[:, 3] = 0.0
    w[:, 3] = 1 / tk  # a padding head: uniform weights, zero values
    got, want = sparse_read(w, v, [False, False, False, True]), w @ v
    assert torch.equal(got[:, [0, 1, 3]], want[:, [0, 1, 3]])
    assert torch.allclose(got[:, 2], want[:, 2], rtol=1e-12, atol=1e-15)
    assert not torch.equal(sparse_read(w, v, [True] * h)[:, 0], want[:, 0])  # it reads v


def test_saved_model_loads_bit_identical(model, tmp_path: Path) -> None:
    dense = universal_model(BUCKETS[0])
    save_model(dense, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    tokens = torch.tensor([stream("clamp").tokens])
    with torch.inference_mode():
        assert torch.equal(loaded(tokens), dense(tokens))


@pytest.mark.parametrize("engine", ["torch", "fast"])
def test_stops_where_the_proven_positions_end(model, monkeypatch, engine: str) -> None:
    """With the 2048 bucket the largest, a loop whose prompt nearly fills it stops (exit 124)
    when the stream reaches 2048 positions, never decoding past the proof."""
    from wasmformer.engine import models, session

    monkeypatch.setattr(models, "BUCKETS", (BUCKETS[0],))
    monkeypatch.setattr(models, "FAST_BUCKETS", (BUCKETS[0],))
    monkeypatch.setattr(session, "BUCKETS", (BUCKETS[0],))
    filler = " ".join(f"(local.set 0 (i32.add (local.get 0) (i32.const {i})))" for i in range(46))
    wat = f'(module (func (export "f") (param i32) (loop br 0) {filler}))'
    inst = wasmformer.load(wat)
    with pytest.raises(BudgetExceeded, match="the stream reached 2,049 tokens, more than the "
                                             "2,048 positions the universal model is proven"):
        inst.invoke("f", [1], engine=engine)


def first_bucket_asked(monkeypatch, max_tokens: int | None) -> int:
    """The max_len of the first model a fast session asks for (none is built: the request
    stops the invocation)."""
    from wasmformer.engine import session

    asked = []

    class Asked(Exception):
        pass

    def model_for(max_len, *args, **kwargs):
        asked.append(max_len)
        raise Asked

    monkeypatch.setattr(session, "universal_model", model_for)
    wat, calls = PROGRAMS["sum_to"]
    s = Session(machine_instance(wat), engine="fast")
    with pytest.raises(Asked):
        s.invoke(*calls[0], max_tokens=max_tokens)
    assert len(asked) == 1
    return asked[0]


@pytest.mark.parametrize("max_tokens, bucket", [(None, BUCKETS[0]), (3000, BUCKETS[1]),
                                                (BUCKETS[1], BUCKETS[2])])
def test_a_token_budget_picks_the_bucket_that_holds_it(monkeypatch, max_tokens, bucket) -> None:
    """With every bucket open to it (as the torch engine has), a stream without a budget
    starts in the smallest bucket (and moves up as it grows); with one, in the smallest
    bucket holding the prompt, the header and the budget, so the stream is fed once."""
    from wasmformer.engine import models

    monkeypatch.setattr(models, "FAST_BUCKETS", BUCKETS)
    assert first_bucket_asked(monkeypatch, max_tokens) == bucket


@pytest.mark.parametrize("max_tokens", [None, 3000])
def test_the_fast_engine_starts_in_the_largest_bucket(monkeypatch, max_tokens) -> None:
    """Its cost does not depend on max_len: a stream never moves, so is never fed twice."""
    assert first_bucket_asked(monkeypatch, max_tokens) == BUCKETS[-1]


# --- division: its stage tokens through the compiled model ---

DIVIDE = """(module
  (func (export "i32") (param $a i32) (param $b i32) (result i32)
    (i32.add (i32.div_s (local.get $a) (local.get $b)) (i32.rem_u (local.get $a) (local.get $b))))
  (func (export "i64") (param $a i64) (param $b i64) (result i64)
    (i64.xor (i64.rem_s (local.get $a) (local.get $b)) (i64.div_u (local.get $a) (local.get $b)))))"""
DIVIDE_CALLS = [("i32", [-100, 7]), ("i32", [5, 0]), ("i64", [-(10 ** 15) - 7, 12345]),
                ("i32", [-(1 << 31), -1]), ("i64", [1 << 63, 3]),
                ("i32", [100, -7]), ("i64", [-(10 ** 12) - 1, -(1 << 33) - 5])]  # b < 0


@pytest.mark.parametrize("engine", ["torch", "fast"])
def test_division_through_the_engine(model, engine: str) -> None:
    """Signed and unsigned division of both widths, and its traps: the engine's tokens are
    the token machine's (stage tokens included), its results the reference engine's."""
    inst, ref = wasmformer.load(DIVIDE), wasmformer.load(DIVIDE)
    machine = TokenMachine(machine_instance(DIVIDE))
    for export, args in DIVIDE_CALLS:
        got = inst.invoke_tokens(export, args, engine=engine)
        want = machine.invoke(export, args)
        assert got.tokens == want.tokens, f"{export}{tuple(args)}"
        try:
            assert got.outcome.results == ref.invoke(export, args)
        except wasmformer.Trap as exc:
            assert got.outcome.trap == exc.reason
