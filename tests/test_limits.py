"""Resource limits of the reference engine: wall-clock and step budgets (also for a start
function), host limits on memory, tables and call depth, and the prompt-size limit."""

from __future__ import annotations

import time

import pytest
import wasmtime

import wasmformer
from wasmformer.errors import BudgetExceeded, InputError, LinkError
from wasmformer.machine import HostLimits, Instance
from wasmformer.wasm import load_module

LOOP_FOREVER = '(module (func (export "_start") (loop (br 0))))'
START_LOOPS = '(module (func $s (loop (br 0))) (start $s) (func (export "_start")))'
COUNT_TO = """(module (func (export "_start") (local i32)
  (loop (br_if 0 (i32.ne (local.tee 0 (i32.add (local.get 0) (i32.const 1)))
                         (i32.const 20000))))))"""  # ~140K instructions: 2 clock checkpoints
GROW = """(module (memory (export "memory") %d)
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))"""
RECURSE = '(module (func $f (export "_start") (call $f)))'


def test_wall_clock_budget_stops_a_run() -> None:
    start = time.monotonic()
    with pytest.raises(BudgetExceeded, match=r"^wall-clock budget of 0.2 s exhausted after "
                                             r"\d+ instructions$"):
        wasmformer.run(LOOP_FOREVER, engine="reference", timeout=0.2)
    assert time.monotonic() - start < 10


def test_wall_clock_budget_stops_a_trace() -> None:
    result = wasmformer.trace(LOOP_FOREVER, timeout=0.2)
    assert result.budget is not None and result.budget.startswith("wall-clock budget of 0.2 s")
    assert result.tokens > 0 and result.trace is not None and result.trace.outcome == "budget"


def test_a_run_within_its_budgets_is_unchanged() -> None:
    plain = wasmformer.run(COUNT_TO, engine="reference")
    timed = wasmformer.run(COUNT_TO, engine="reference", timeout=600, max_steps=plain.instructions)
    assert (timed.exit_code, timed.instructions) == (0, plain.instructions)
    with pytest.raises(BudgetExceeded, match="step budget"):
        wasmformer.run(COUNT_TO, engine="reference", timeout=600, max_steps=plain.instructions - 1)


@pytest.mark.parametrize(("budget", "message"), [({"max_steps": 1000}, "step budget of 1000"),
                                                 ({"timeout": 0.2}, "wall-clock budget")])
def test_budgets_bound_the_start_function(budget: dict, message: str) -> None:
    with pytest.raises(BudgetExceeded, match=message):
        wasmformer.run(START_LOOPS, engine="reference", **budget)
    with pytest.raises(BudgetExceeded, match=message):
        wasmformer.trace(START_LOOPS, **budget)


def test_invoke_takes_its_own_timeout() -> None:
    inst = wasmformer.load('(module (func (export "spin") (loop (br 0))))')
    with pytest.raises(BudgetExceeded, match="wall-clock budget of 0.1 s"):
        inst.invoke("spin", timeout=0.1)


@pytest.mark.parametrize("timeout", [0, -1.5, float("nan")])
def test_a_timeout_must_be_positive(timeout: float) -> None:
    with pytest.raises(InputError, match="timeout must be a positive number"):
        wasmformer.run(COUNT_TO, engine="reference", timeout=timeout)


def test_memory_grow_stops_at_the_host_limit() -> None:
    inst = wasmformer.load(GROW % 1, limits=HostLimits(max_memory_pages=3))
    assert inst.invoke("grow", [2]) == [1]
    assert inst.invoke("grow", [1]) == [-1]  # the spec allows a grow to fail
    assert wasmformer.load(GROW % 1).invoke("grow", [3]) == [1]


def test_initial_memory_over_the_host_limit_does_not_instantiate() -> None:
    with pytest.raises(LinkError, match="memory of 5 pages exceeds the host limit of 4 pages"):
        wasmformer.run(GROW % 5, engine="reference", limits=HostLimits(max_memory_pages=4))


def test_call_depth_limit_traps() -> None:
    runs = [wasmformer.run(RECURSE, engine="reference", limits=HostLimits(max_call_depth=d)) for d in (10, 20, 30)]
    assert all((r.exit_code, r.trap) == (134, "call stack exhausted") for r in runs)
    per_frame = runs[1].instructions - runs[0].instructions
    assert per_frame > 0 and runs[2].instructions - runs[1].instructions == per_frame


def test_tables_are_bounded_by_the_host() -> None:
    wat = """(module (table $t %d funcref)
      (func (export "grow") (param i32) (result i32) (table.grow $t (ref.null func) (local.get 0))))"""
    inst = Instance(load_module(wasmtime.wat2wasm(wat % 2)), limits=HostLimits(max_table_elements=5))
    assert inst.invoke("grow", [3]) == [2]
    assert inst.invoke("grow", [1]) == [-1]
    with pytest.raises(LinkError, match="table of 6 elements exceeds the host limit of 5"):
        Instance(load_module(wasmtime.wat2wasm(wat % 6)), limits=HostLimits(max_table_elements=5))


@pytest.mark.parametrize("limits", [{"max_memory_pages": 65537}, {"max_memory_pages": -1},
                                    {"max_call_depth": 0}, {"max_table_elements": -1}])
def test_host_limits_are_checked(limits: dict) -> None:
    with pytest.raises(InputError, match=next(iter(limits))):
        HostLimits(**limits)


def test_prompt_limit_is_exact() -> None:
    empty = '(module (memory 1) (data (i32.const 64) "hi") (func (export "_start")))'
    prompt = len(wasmformer.trace(empty).prompt)
    assert len(wasmformer.trace(empty, max_prompt_tokens=prompt).prompt) == prompt
    with pytest.raises(LinkError, match=f"prompt too large: more than {prompt - 1:,} tokens"):
        wasmformer.trace(empty, max_prompt_tokens=prompt - 1)


def test_a_huge_prompt_is_refused_before_it_is_built() -> None:
    # 64 MiB of non-zero memory would be 96M prompt tokens (GBs as a Python list).
    wat = """(module (memory 1024) (func $s (memory.fill (i32.const 0) (i32.const 7)
      (i32.const 0x4000000))) (start $s) (func (export "_start")))"""
    start = time.monotonic()
    with pytest.raises(LinkError, match="prompt too large: more than 4,194,304 tokens"):
        wasmformer.trace(wat)
    assert time.monotonic() - start < 30
