"""The token protocol: vocabulary, fusion, the reference token machine, the detokenizer.

- every example: the detokenized trace equals the reference run (stdout,
  stderr, exit code), the steps' fuel equals the reference count, every
  step's token count is within its stated bound, and the trace replays from
  the fused program and the tokens alone (tests/token_replay.py);
- a subset of the spec suite invoked through the token machine: results and
  traps decode to the expected values;
- fusion: random straight-line functions give the same results fused (token
  machine + replay) and unfused (reference executor);
- the vocabulary round-trips.
"""

from __future__ import annotations

import functools
import sys
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

from test_spec_exec import ScriptRunner, arg_value, matches, run_script  # noqa: E402
from token_replay import Replayer, replayer_for  # noqa: E402

from wasmformer.errors import Trap  # noqa: E402
from wasmformer.machine import Instance, WasiHost, vocab  # noqa: E402
from wasmformer.machine.detokenize import detokenize  # noqa: E402
from wasmformer.machine.fuse import ANCHORED, REMOVED, fuse, width  # noqa: E402
from wasmformer.machine.prompt import RECORD_SIZES, prompt_tokens  # noqa: E402
from wasmformer.machine.runtime import WasmFunction  # noqa: E402
from wasmformer.machine.tokens import TokenMachine, Trace, trace_tokens  # noqa: E402
from wasmformer.toolchain import program_bytes  # noqa: E402
from wasmformer.wasm import load_module  # noqa: E402

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MANIFEST = tomllib.loads((EXAMPLES / "MANIFEST.toml").read_text())
GOAL_TOKENS_PER_INSTRUCTION = 3.0
# Tokens of a non-host, non-bulk step beyond the bytes of the values it moves:
# JUMP/CALL/RET + pc (3) + depth (2), or TRAP + reason + payload (4).
FIXED_OVERHEAD = 6


# --- helpers ---


def step_bound(trace: Trace, i: int) -> int:
    """The most tokens step ``i`` may have: a constant for its instruction, plus bytes touched."""
    pc = trace.pcs[i]
    if pc < 0:
        return len(trace.step_tokens(i))  # the invocation header: CALL + its arguments
    fi = trace.fused.code[pc]
    values = sum(width(t) for t in fi.out_types)
    if fi.length is not None and fi.op not in ("br_if", "br_unless"):
        return max(fi.length, FIXED_OVERHEAD)
    tokens = trace.step_tokens(i)
    # Bulk operations and host calls: linear in the bytes they touch (output, memory, results).
    touched = sum(1 for t in tokens if not vocab.NAMED <= t)
    mem_records = tokens.count(vocab.tok("MEM"))
    if fi.op in ("call", "call_indirect") and tokens[0] != vocab.tok("CALL"):
        return touched + 7 * mem_records + 8 + FIXED_OVERHEAD
    if fi.op in ("memory.fill", "memory.copy", "memory.init", "table.fill", "table.copy",
                 "table.init", "table.grow"):
        return touched + FIXED_OVERHEAD
    return values + FIXED_OVERHEAD


@functools.cache
def example_run(name: str) -> tuple[Trace, WasiHost, Instance, TokenMachine, Replayer]:
    host = WasiHost()
    inst = Instance(load_module(program_bytes(EXAMPLES / f"{name}.c").wasm), host=host)
    tm = TokenMachine(inst, host)
    replay = replayer_for(tm)
    return tm.invoke("_start"), host, inst, tm, replay


# --- examples ---


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_example_trace(name: str) -> None:
    trace, host, inst, tm, replay = example_run(name)
    meta = MANIFEST[name]
    out = detokenize(trace.tokens)
    assert out.ended
    assert out.stdout == bytes(host.stdout_bytes) == (EXAMPLES / f"{name}.expected").read_bytes()
    assert out.stderr == bytes(host.stderr_bytes) == meta.get("stderr", "").encode()
    assert out.exit_code == meta.get("exit_code", 0)
    # Fuel: the steps add up to the reference count, and each step's is its fused fuel.
    assert sum(trace.fuels) == inst.last_instructions
    for pc, fuel, i in zip(trace.pcs, trace.fuels, range(len(trace.pcs)), strict=True):
        if pc >= 0:
            fi = trace.fused.code[pc]
            extra = fuel - fi.fuel
            assert extra == 0 or (fi.op == "call_indirect" and extra == 1) or \
                fi.op in ("memory.grow", "memory.fill", "memory.copy"), (i, fi, fuel)
    # Static lengths: a step that falls through without an anchor has its instruction's length.
    for i in range(1, len(trace.pcs)):
        fi = trace.fused.code[trace.pcs[i]]
        n = len(trace.step_tokens(i))
        assert n <= step_bound(trace, i), (i, fi, n)
        if i + 1 < len(trace.pcs) and trace.pcs[i + 1] == trace.pcs[i] + 1 and fi.length:
            tokens = trace.step_tokens(i)
            if vocab.tok("JUMP") not in tokens:
                assert n == fi.length, (i, fi, tokens)
    assert replay.run(trace.tokens) == trace.outcome
    per = len(trace.tokens) / inst.last_instructions
    print(f"{name}: {len(trace.tokens)} trace tokens, {inst.last_instructions} instructions, "
          f"{per:.2f} tokens/instruction, {len(trace.pcs) - 1} fused steps")


def test_tokens_per_instruction_goal() -> None:
    ratios = []
    for name in sorted(MANIFEST):
        trace, _, inst, _, _ = example_run(name)
        ratios.append(len(trace.tokens) / inst.last_instructions)
    average = sum(ratios) / len(ratios)
    print(f"average trace tokens per WebAssembly instruction: {average:.2f}")
    assert average <= GOAL_TOKENS_PER_INSTRUCTION


def test_streaming_equals_trace() -> None:
    trace, *_ = example_run("hello")
    host = WasiHost()
    inst = Instance(load_module(program_bytes(EXAMPLES / "hello.c").wasm), host=host)
    assert list(trace_tokens(inst, host=host)) == trace.tokens


def test_budget_cuts_the_trace() -> None:
    host = WasiHost()
    inst = Instance(load_module(program_bytes(EXAMPLES / "hello.c").wasm), host=host)
    trace = TokenMachine(inst, host).invoke("_start", max_steps=100)
    assert trace.outcome == "budget" and "100" in trace.budget_message
    full, *_ = example_run("hello")
    assert trace.tokens == full.tokens[:len(trace.tokens)]
    assert sum(trace.fuels) <= 100


def test_prompt_layout() -> None:
    _, _, inst, tm, _ = example_run("hello")
    tokens = prompt_tokens(inst, tm.fused, tm.func_index)
    assert tokens[0] == vocab.tok("PROGRAM") and tokens[-1] == vocab.tok("END")
    at, seen = 2, []
    while tokens[at] != vocab.tok("END"):
        section = vocab.name(tokens[at])
        count = vocab.from_le(tokens[at + 1:at + 4])
        seen.append(section)
        at += 4 + count * RECORD_SIZES[section]
    assert seen == ["VALTYPES", "TYPES", "FUNCS", "GLOBALS", "TABLES", "ELEMS", "MEMORY",
                    "DATA", "JTAB", "CODE"]
    assert at == len(tokens) - 1


# --- the spec suite through the token machine ---

SPEC_SUBSET = ("i32", "i64", "br_table", "call_indirect", "memory_grow", "bulk", "unwind",
               "br_if", "select", "local_tee", "call", "fac", "memory_fill", "table_grow")
REPLAYED = {"i32", "i64", "br_table", "call_indirect", "unwind", "br_if", "select", "local_tee",
            "call", "fac"}


class TokenScriptRunner(ScriptRunner):
    """Runs a script's invocations through the token machine and decodes their traces."""

    def __init__(self, name: str):
        super().__init__(name)
        self.machines: dict[int, TokenMachine] = {}
        self.traced = 0

    def assertion(self, cmd: dict) -> None:
        action = cmd["action"]
        inst = self.named[action["module"]] if action.get("module") else self.current
        f = inst.exports.get(action["field"]) if inst is not None else None
        if (cmd["type"] == "action" or action["type"] != "invoke"
                or not isinstance(f, WasmFunction) or f.instance is not inst):
            return super().assertion(cmd)
        counted = all(a["type"] in ("i32", "i64") for a in action["args"]) and all(
            e["type"] in ("i32", "i64") for e in cmd.get("expected", []))
        if id(inst) not in self.machines:
            self.machines[id(inst)] = TokenMachine(inst)
        tm = self.machines[id(inst)]
        replay = replayer_for(tm) if self.name in REPLAYED else None
        trace = tm.invoke(action["field"], [arg_value(a) for a in action["args"]])
        self.traced += 1
        if replay is not None:
            assert replay.run(trace.tokens) == trace.outcome, cmd
        out = detokenize(trace.tokens, f.type.results)
        if trace.outcome == "trap":
            assert out.trap is not None
            if trace.trap.startswith("unsupported"):
                assert out.trap.startswith("unsupported at pc")
                return self.excluded(counted)
            assert out.trap == trace.trap
            if cmd["type"] in ("assert_trap", "assert_exhaustion") and out.trap.startswith(
                    cmd["text"]):
                return self.ok(counted)
            return self.fail(cmd, f"trap {out.trap!r}", counted)
        if cmd["type"] != "assert_return":
            return self.fail(cmd, f"returned, expected trap {cmd['text']!r}", counted)
        got = [r if t in ("i32", "i64") else trace.results[i]
               for i, (r, t) in enumerate(zip(out.results, f.type.results, strict=True))]
        if all(matches(e, r) for e, r in zip(cmd["expected"], got, strict=True)):
            return self.ok(counted)
        return self.fail(cmd, f"decoded {got}, expected {cmd['expected']}", counted)


@pytest.mark.parametrize("name", SPEC_SUBSET)
def test_spec_through_tokens(name: str) -> None:
    runner = TokenScriptRunner(name)
    tally = runner.run()
    print(f"{name}: traced {runner.traced}, passed {tally.passed}, failed {tally.failed}, "
          f"excluded {tally.excluded}")
    assert not tally.failures, "\n".join(tally.failures[:10])
    assert runner.traced > 0 and tally.passed > 0
    # The same verdicts as the reference executor's, uncounted (non-integer) assertions included.
    plain = run_script(name)
    assert (tally.passed, tally.excluded, tally.other_ok, tally.other_bad) == (
        plain.passed, plain.excluded, plain.other_ok, plain.other_bad)


# --- fusion: random straight-line code, fused vs unfused ---

LOCALS = ("i32", "i32", "i32", "i64")  # two parameters, then two declared locals
BINARY = {"i32": ("add", "sub", "mul", "div_u", "rem_s", "and", "shl", "shr_s", "rotl", "lt_s",
                  "eq"),
          "i64": ("add", "mul", "div_s", "xor", "shr_u")}
UNARY = {"i32": ("i32.eqz", "i32.clz", "i32.popcnt", "i64.extend_i32_s", "i32.load",
                 "i64.load8_s"),
         "i64": ("i64.eqz", "i32.wrap_i64", "i64.ctz")}
RESULT = {"i32.eqz": "i32", "i32.clz": "i32", "i32.popcnt": "i32", "i64.extend_i32_s": "i64",
          "i32.load": "i32", "i64.load8_s": "i64", "i64.eqz": "i32", "i32.wrap_i64": "i32",
          "i64.ctz": "i64"}


@st.composite
def straight_line(draw) -> str:
    """A well-typed body over i32/i64 that leaves one i32."""
    stack: list[str] = []
    body: list[str] = []
    for _ in range(draw(st.integers(1, 30))):
        choices = ["get", "const"]
        if stack:
            choices += ["unary", "set", "drop"]
        if len(stack) >= 2 and stack[-1] == stack[-2]:
            choices.append("binary")
        if len(stack) >= 2 and stack[-2] == "i32":
            choices.append("store")
        if len(stack) >= 3 and stack[-1] == "i32" and stack[-2] == stack[-3]:
            choices.append("select")
        kind = draw(st.sampled_from(choices))
        if kind == "get":
            k = draw(st.integers(0, 3))
            body.append(f"local.get {k}")
            stack.append(LOCALS[k])
        elif kind == "const":
            t = draw(st.sampled_from(("i32", "i64")))
            v = draw(st.sampled_from((0, 1, 2, 7, 255, 65535, -1, -2**31, 2**31 - 1)))
            body.append(f"{t}.const {v}")
            stack.append(t)
        elif kind == "unary":
            op = draw(st.sampled_from(UNARY[stack[-1]]))
            body.append(op)
            stack[-1] = RESULT[op]
        elif kind == "binary":
            t = stack.pop()
            op = draw(st.sampled_from(BINARY[t]))
            body.append(f"{t}.{op}")
            stack[-1] = "i32" if op in ("lt_s", "eq") else t
        elif kind == "set":
            ks = [k for k in range(4) if LOCALS[k] == stack[-1]]
            k = draw(st.sampled_from(ks))
            tee = draw(st.booleans())
            body.append(f"local.{'tee' if tee else 'set'} {k}")
            if not tee:
                stack.pop()
        elif kind == "drop":
            body.append("drop")
            stack.pop()
        elif kind == "store":
            t = stack.pop()
            stack.pop()
            body.append(f"{t}.store offset={draw(st.sampled_from((0, 3, 65530)))}")
        else:
            body.append("select")
            stack.pop()
            stack.pop()
    while len(stack) > 1:
        body.append("drop")
        stack.pop()
    if not stack:
        body.append("local.get 2")
    elif stack[0] == "i64":
        body.append("i32.wrap_i64")
    return "\n".join(body)


def _module(body: str) -> str:
    return (f'(module (memory 1) (func (export "f") (param i32 i32) (result i32) '
            f'(local i32 i64)\n{body}))')


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(straight_line(), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_fusion_matches_unfused(body: str, a: int, b: int) -> None:
    wasm = program_bytes(_module(body)).wasm
    reference = Instance(load_module(wasm))
    try:
        expected: object = reference.invoke("f", [a, b])
    except Trap as e:
        expected = e.reason
    inst = Instance(load_module(wasm))
    tm = TokenMachine(inst)
    replay = replayer_for(tm)
    trace = tm.invoke("f", [a, b])
    assert replay.run(trace.tokens) == trace.outcome
    out = detokenize(trace.tokens, ("i32",))
    assert (out.trap if out.trap is not None else out.results) == expected
    assert sum(trace.fuels) == reference.last_instructions


def test_fusion_shapes() -> None:
    """The patterns fuse as documented, and a jump target always starts a group."""
    wasm = program_bytes(_module(
        "local.get 0 local.get 1 i32.add local.set 2 "
        "i32.const 5 local.get 2 i32.mul local.tee 2 drop "
        "(block (loop local.get 2 i32.const 1 i32.sub local.tee 2 br_if 0)) "
        "local.get 2")).wasm
    fused = fuse(Instance(load_module(wasm)).program)
    shapes = [(f.op, tuple(s.mode for s in f.srcs), f.dst) for f in fused.code]
    assert shapes == [
        ("param", (), "set"),  # one record per parameter: the call header's arguments
        ("param", (), "set"),
        ("i32.add", ("local", "local"), "set"),
        ("i32.mul", ("const", "local"), "tee"),
        ("i32.sub", ("local", "const"), "tee"),  # the loop header starts this group
        ("br_if", (), "none"),
        ("copy", ("local",), "push"),
        ("return", (), "none"),
    ]
    code = fused.program.code
    for fi in fused.code:
        assert all(code[pc].op not in REMOVED for pc in fi.origin)
        assert (fi.length is None) == (fi.op in ANCHORED)
    assert sum(f.fuel for f in fused.code) == sum(i.fuel for i in code) - 1  # minus `enter`


# --- the vocabulary ---


def test_vocabulary_round_trip() -> None:
    for t in range(vocab.SIZE):
        text = vocab.describe(t)
        assert text and not text.startswith("<invalid")
        assert vocab.parse(text) == t
    assert vocab.describe(vocab.SIZE).startswith("<invalid")
    assert vocab.output(1, b"A") == [vocab.STDOUT + 65]
    assert vocab.output_byte(vocab.STDERR + 10) == (2, 10)
    assert vocab.from_le(vocab.le(0x123456, 3)) == 0x123456
    for reason in ("unreachable", "integer divide by zero", "undefined element 7",
                   "uninitialized element 3", "call stack exhausted"):
        tokens = vocab.trap_tokens(reason, 0)
        assert vocab.trap_reason(tokens[1:]) == (reason, len(tokens) - 1)
    assert all(vocab.op_token(op) for op in vocab.OPS)


# --- `wasmformer trace` and `wasmformer.trace` ---


def test_trace_command(tmp_path: Path) -> None:
    from test_cli import WRITE_AND_EXIT, assert_one_clean_line, wasmformer

    import wasmformer as api

    prog = tmp_path / "w.wat"
    prog.write_text(WRITE_AND_EXIT)
    proc = wasmformer("trace", str(prog))
    assert proc.returncode == 7, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[0].startswith("0  invoke _start  -> CALL ")
    assert "out:68 out:69 out:0a" in proc.stdout.decode()  # "hi\n" as output tokens
    assert lines[-1].endswith("-> EXIT 07 00 00 00")
    assert "tokens=" in proc.stderr.decode() and "Traceback" not in proc.stderr.decode()
    result = api.trace(str(prog))
    assert result.stdout == b"hi\n" and result.exit_code == 7
    assert len(lines) == len(result.trace.pcs) and result.tokens == len(result.trace.tokens)
    out = tmp_path / "t.txt"
    cut = wasmformer("trace", str(prog), "--max-steps", "3", "-o", str(out))
    assert_one_clean_line(cut, 124, "step budget of 3 exhausted")
    assert not out.exists()  # a budget stop leaves no partial output file (docs/ERRORS.md)
    full = wasmformer("trace", str(prog), "-o", str(out))
    assert full.returncode == 7 and out.read_text().splitlines() == lines
