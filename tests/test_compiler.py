"""The compiler: lowering, MILP scheduling, residual slots with clearing, model card."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from wasmformer.compiler import (
    CompilerError,
    Head,
    Mlp,
    Schedule,
    check_schedule,
    compile_graph,
    lower_graph,
    schedule_program,
)
from wasmformer.compiler import schedule as schedule_module
from wasmformer.graph import Graph
from wasmformer.graph import functions as F
from wasmformer.graph.examples import memory, running_sum

sys.path.insert(0, str(Path(__file__).parent))

from example_graphs import induction_graph, wide_graph  # noqa: E402

EXAMPLES = {"running_sum": running_sum, "memory": memory, "wide": wide_graph,
            "induction": induction_graph}


@pytest.fixture(scope="module", params=sorted(EXAMPLES))
def compiled(request):
    return compile_graph(EXAMPLES[request.param]())


# ---- lowering ----------------------------------------------------------------------------


def test_lookup_heads_get_their_key_squares_where_they_are_cheapest() -> None:
    program = lower_graph(memory())
    heads = {op.name: op for op in program.ops if isinstance(op, Head)}
    sources = {f.name for f in program.sources}
    # prev: key = position, never repeats -> (K', K'^2 = p^2 from the positional encoding)
    assert len(heads["prev"].key) == 2 and "position^2" in sources
    # memory: the key is computed -> an FFN node squares it; keys repeat -> position tie-break
    assert len(heads["memory"].key) == 3
    assert [op.name for op in program.ops if isinstance(op, Mlp)] == ["memory.key^2", "read"]
    # a key over token features only -> its square is one more embedding column; the key
    # is shifted by the middle of its range 1..5
    g = Graph(vocab_size=5)
    k = g.token_feature("k", [3, 1, 4, 1, 5])
    g.set_output([g.lookup("lk", query=k, key=k, values=[])[0]], [[t] for t in range(5)])
    square = next(f for f in lower_graph(g).sources if f.name == "lk.key^2")
    assert square.table == tuple((v - 3) ** 2 for v in (3, 1, 4, 1, 5))


def test_dead_nodes_are_not_compiled() -> None:
    g = Graph(vocab_size=3)
    a = g.token_feature("a", [0, 1, 2])
    F.step(g, a, 1, name="unused")
    used = F.step(g, a, 2, name="used")
    g.set_output([used], [[0], [1], [2]])
    assert [op.name for op in lower_graph(g).ops] == ["used"]


def test_a_graph_without_output_is_refused() -> None:
    g = Graph(vocab_size=2)
    g.token_feature("a", [0, 1])
    with pytest.raises(CompilerError, match="no output"):
        compile_graph(g)


# ---- scheduling --------------------------------------------------------------------------


def test_schedule_respects_dependencies_at_minimum_depth(compiled) -> None:
    program, schedule = compiled.program, compiled.schedule
    check_schedule(program, schedule)
    stage_of = {f: 0 for f in program.sources}
    for op, stage in zip(program.ops, schedule.stages, strict=True):
        assert stage % 2 == (1 if isinstance(op, Head) else 0)
        assert all(stage_of[f] < stage for f in op.reads)
        stage_of.update({f: stage for f in op.outputs})
    earliest = {f: 0 for f in program.sources}  # stage of the longest chain to each feature
    for op in program.ops:
        s = max(earliest[f] for f in op.reads) + 1
        s += (s % 2) != (1 if isinstance(op, Head) else 0)
        earliest.update({f: s for f in op.outputs})
    assert schedule.depth == max((s + 1) // 2 for s in earliest.values())


def test_milp_minimises_the_widest_sublayer() -> None:
    program = lower_graph(wide_graph())
    milp, asap = schedule_program(program), _asap(program)
    assert milp.method == "milp" and milp.depth == asap.depth == 2
    assert _most_heads(program, asap) == 3 and _most_heads(program, milp) == 2


def test_asap_fallback_when_the_milp_gives_up(monkeypatch) -> None:
    program = lower_graph(wide_graph())
    gave_up = SimpleNamespace(status=1, message="Time limit reached", x=None)
    monkeypatch.setattr(schedule_module, "milp", lambda *a, **k: gave_up)
    schedule = schedule_program(program)
    assert schedule.method == "asap" and "Time limit reached" in schedule.note
    check_schedule(program, schedule)
    assert (schedule.stages, schedule.depth) == (_asap(program).stages, _asap(program).depth)


def test_check_schedule_rejects_a_read_before_write() -> None:
    program = lower_graph(memory())
    bad = Schedule((1, 2, 1, 4), depth=2, method="milp")  # memory lookup beside prev
    with pytest.raises(CompilerError, match="reads"):
        check_schedule(program, bad)


def _asap(program) -> Schedule:
    stages = schedule_module._asap(program.ops, schedule_module.dependencies(program))
    return Schedule(tuple(stages), max((s + 1) // 2 for s in stages), "asap")


def _most_heads(program, schedule) -> int:
    per_stage: dict[int, int] = {}
    for op, s in zip(program.ops, schedule.stages, strict=True):
        if isinstance(op, Head):
            per_stage[s] = per_stage.get(s, 0) + 1
    return max(per_stage.values())


# ---- residual slots ----------------------------------------------------------------------


def test_slots_are_shared_only_after_a_clear(compiled) -> None:
    depth = compiled.schedule.depth
    by_slot: dict[int, list] = {}
    for p in compiled.allocation.placements:
        by_slot.setdefault(p.slot, []).append(p)
    for placements in by_slot.values():
        placements.sort(key=lambda p: p.written)
        for old, new in zip(placements, placements[1:], strict=False):
            assert old.cleared is not None and old.last_read <= old.cleared < new.written
            assert old.cleared % 2 == 0 and old.cleared <= 2 * depth
        assert placements[-1].cleared is None
    clears = {(p.cleared, p.slot) for p in compiled.allocation.placements if p.cleared}
    units = {(2 * b + 2, u.out_slot) for b, block in enumerate(compiled.blocks)
             for u in block.units if u.clears}
    assert clears == units


def test_slot_count_is_the_most_features_live_at_once(compiled) -> None:
    """Interval colouring is optimal: d_model equals the largest overlap of the intervals
    [written, first FFN stage at/after the last read] (to the end when never freeable)."""
    end = 2 * compiled.schedule.depth + 1
    spans = []
    for p in compiled.allocation.placements:
        clear = max(p.last_read, 1) + max(p.last_read, 1) % 2
        spans.append((p.written, clear if clear <= end - 1 else end))
    overlap = max(sum(lo <= s <= hi for lo, hi in spans) for s in range(end + 1))
    assert compiled.d_model == overlap
    assert compiled.d_model <= len(compiled.allocation.placements)


# ---- the compiled examples and their cards -------------------------------------------------


def test_example_model_cards() -> None:
    mem = compile_graph(memory()).card
    # d_ff: the key's square takes two units (the key shifted by its centre has both signs)
    assert (mem.layers, mem.d_model, mem.n_head, mem.d_qk, mem.d_v, mem.d_ff) == (2, 10, 1, 3, 2, 4)
    assert mem.clear_units == 2 and mem.schedule.startswith("milp")
    rs = compile_graph(running_sum()).card
    assert (rs.layers, rs.d_model, rs.n_head, rs.d_ff) == (2, 5, 1, 922)
    text = str(mem)
    for field in ("layers", "d_model", "heads/layer", "FFN width", "parameters", "non-zeros"):
        assert field in text


def test_gate_guards_follow_from_the_ranges() -> None:
    """A guard f: the gate is <= 0 whenever f is 0, whatever the other features hold."""
    from wasmformer.compiler.guards import choose_guards, gate_guards
    from wasmformer.compiler.program import Feature, Form, Hidden
    from wasmformer.graph import Range

    flag = lambda name: Feature(name, Range(0, 1, integer=True))  # noqa: E731
    a, b, c = flag("a"), flag("b"), flag("c")
    one = Feature("one", Range(1, 1, integer=True))
    signed = Feature("s", Range(-1, 1, integer=True))
    byte = Feature("byte", Range(0, 255, integer=True))
    both = Form(((a, 1), (b, 1), (one, -1)))  # a AND b
    assert gate_guards(both) == [a, b]
    assert gate_guards(Form(((a, 1), (b, 1)))) == []  # a OR b: either alone opens it
    assert gate_guards(Form(((a, 1), (signed, 1), (one, -1)))) == [a, signed]
    assert gate_guards(Form(((a, 300), (byte, 1), (one, -300)))) == [a, byte]
    assert gate_guards(Form(((a, 300), (byte, 1), (one, -200)))) == []  # each opens it alone
    assert gate_guards(Form(((a, 300), (byte, 1), (one, -256)))) == [a]  # byte=0 leaves 300 - 256
    assert gate_guards(Form(((one, 1),))) == []  # always open (one is never 0)
    # the rarer guard first: c guards one unit, b both
    units = [Hidden(Form(((b, 1), (c, 1), (one, -1))), Form(((one, 1),)), 1),
             Hidden(both, Form(((one, 1),)), 1)]
    chosen = choose_guards(units)
    assert chosen[id(units[0])] == (c, b)
    assert set(chosen[id(units[1])]) == {a, b}
