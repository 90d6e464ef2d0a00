"""Programs in the universal graph's subset, their token streams, and the runners that check a
graph (exact evaluator) or a torch model against the reference token machine.

A *stream* is what an engine feeds and generates for one instance: the prompt, then per
invocation the header (``CALL entry depth args``, written by the engine) and the trace the
model must generate up to ``HALT``. Several invocations continue the same stream (a
persistent instance), which also exercises the frame rule for locals.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from wasmformer.graph import Evaluator, Graph
from wasmformer.machine import Instance, TokenMachine, prompt_tokens, vocab
from wasmformer.machine.fuse import FusedProgram
from wasmformer.machine.instance import HostLimits
from wasmformer.machine.tokens import Trace, trace_lines
from wasmformer.toolchain import program_bytes
from wasmformer.universal.limits import Limits
from wasmformer.wasm import load_module

# name: (module text, invocations (export, args))
PROGRAMS: dict[str, tuple[str, list[tuple[str, list[int]]]]] = {
    "sum_to": ("""(module
      (func (export "sum_to") (param $n i32) (result i32) (local $acc i32)
        (loop $next
          local.get $acc  local.get $n  i32.add  local.set $acc
          local.get $n  i32.const 1  i32.sub  local.tee $n
          br_if $next)
        local.get $acc))""", [("sum_to", [4]), ("sum_to", [2])]),
    "fact": ("""(module
      (func (export "fact") (param $n i64) (result i64) (local $r i64)
        i64.const 1 local.set $r
        (block $done
          (loop $next
            local.get $n i64.eqz br_if $done
            local.get $r local.get $n i64.mul local.set $r
            local.get $n i64.const 1 i64.sub local.set $n
            br $next))
        local.get $r))""", [("fact", [4])]),
    "collatz": ("""(module
      (func (export "steps") (param $n i32) (result i32) (local $k i32)
        (block $done
          (loop $next
            local.get $n i32.const 1 i32.eq br_if $done
            (if (i32.and (local.get $n) (i32.const 1))
              (then (local.set $n (i32.add (i32.mul (local.get $n) (i32.const 3))
                                           (i32.const 1))))
              (else (local.set $n (i32.shr_u (local.get $n) (i32.const 1)))))
            local.get $k i32.const 1 i32.add local.set $k
            br $next))
        local.get $k))""", [("steps", [6])]),
    "clamp": ("""(module
      (func (export "clamp") (param $x i32) (result i32)
        (block $hi
          (block $lo
            (br_if $lo (i32.lt_s (local.get $x) (i32.const 0)))
            (br_if $hi (i32.gt_s (local.get $x) (i32.const 100)))
            (return (local.get $x)))
          (return (i32.const 0)))
        i32.const 100))""", [("clamp", [-7]), ("clamp", [55]), ("clamp", [1000])]),
    "exprs": ("""(module
      (func (export "mix") (param $a i32) (param $b i64) (result i64)
        (i64.add
          (i64.extend_i32_s (i32.sub (i32.mul (local.get $a) (i32.const 7))
                                     (i32.add (local.get $a) (i32.const 3))))
          (i64.rotl (local.get $b) (i64.const 13))))
      (func (export "bits") (param $x i32) (result i32) (local $t i32)
        (local.tee $t (i32.xor (local.get $x) (i32.const 0x5a5a)))
        i32.popcnt
        (i32.clz (local.get $t))
        i32.add
        (i32.ctz (i32.or (local.get $x) (i32.const 0x100)))
        i32.add
        (i32.wrap_i64 (i64.shr_s (i64.const -4096)
                                 (i64.extend_i32_u (i32.and (local.get $x) (i32.const 7)))))
        i32.add)
      (func (export "cmp") (param $a i32) (param $b i32) (result i32)
        (i32.add (i32.lt_s (local.get $a) (local.get $b))
                 (i32.add (i32.gt_u (local.get $a) (local.get $b))
                          (i32.mul (i32.eqz (local.get $a)) (i32.const 10)))))
      (func (export "k") (result i64) i64.const 0x123456789abcdef0))""",
              [("mix", [-5, 0x0102030405060708]), ("bits", [0x1234]), ("cmp", [-3, 4]),
               ("k", [])]),
    "find": ("""(module
      (func (export "find") (param $n i32) (result i32) (local $i i32)
        (loop $next
          (if (i32.ge_u (i32.mul (local.get $i) (local.get $i)) (local.get $n))
            (then (return (local.get $i))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          br $next)
        i32.const -1))""", [("find", [10])]),
    "sum_squares": ("""(module
      (func $square (param i32) (result i32)
        local.get 0  local.get 0  i32.mul)
      (func (export "sum_squares") (param $n i32) (result i32) (local $acc i32)
        (loop $next
          local.get $acc  local.get $n  call $square  i32.add  local.set $acc
          local.get $n  i32.const 1  i32.sub  local.tee $n
          br_if $next)
        local.get $acc))""", [("sum_squares", [3])]),
    "recursion": ("""(module
      (func $fib (export "fib") (param $n i32) (result i32)
        (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
          (then (local.get $n))
          (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
                         (call $fib (i32.sub (local.get $n) (i32.const 2))))))))""",
                  [("fib", [5])]),
    "frames": ("""(module
      (func $mix (param $a i64) (param $b i32) (param $c i64) (result i64) (local $t i64)
        (local.set $t (i64.xor (local.get $a) (local.get $c)))
        (i64.add (local.get $t) (i64.extend_i32_u (local.get $b))))
      (func $noop (param i32))
      (func $twice (param $x i32) (result i32) (local $y i32)
        (call $noop (local.get $x))
        (local.set $y (i32.add (local.get $y) (local.get $x)))
        (i32.add (local.get $y) (local.get $x)))
      (func (export "run") (param $x i32) (result i64) (local $u i32)
        (local.set $u (call $twice (local.get $x)))
        (i64.add (call $mix (i64.const 0x1111000011110000) (local.get $u)
                            (i64.extend_i32_s (call $twice (i32.const -3))))
                 (i64.const 1))))""", [("run", [7]), ("run", [1])]),
    "select": ("""(module
      (func (export "pick") (param $a i32) (param $b i32) (param $w i64) (result i64)
        (local $m i32)
        (local.set $m (select (local.get $a) (local.get $b) (i32.lt_s (local.get $a)
                                                                      (local.get $b))))
        (i64.add (select (local.get $w) (i64.const 5) (local.get $m))
                 (i64.extend_i32_u (select (i32.const 9) (local.get $m)
                                           (i32.eqz (local.get $b)))))))""",
               [("pick", [3, -8, 0x1_0000_0007]), ("pick", [0, 0, -2])]),
    # every load and store width, sign and zero extension, unaligned and overlapping
    # writes, the prompt's initial data, never-written bytes, memory.size
    "memory": ("""(module (memory 1)
      (data (i32.const 32) "\\01\\82\\03\\f4\\05\\06\\87\\f8\\09")
      (func (export "widths") (param $a i32) (param $v i64) (result i64)
        (i64.store offset=3 (local.get $a) (local.get $v))
        (i32.store16 offset=5 (local.get $a) (i32.const 0x8181))
        (i64.store8 (i32.add (local.get $a) (i32.const 4)) (i64.const -1))
        (i64.add (i64.load offset=3 (local.get $a))
          (i64.add (i64.load8_s offset=5 (local.get $a))
            (i64.add (i64.load16_u offset=6 (local.get $a))
              (i64.add (i64.load32_s offset=7 (local.get $a))
                       (i64.load32_u (i32.add (local.get $a) (i32.const 1))))))))
      (func (export "narrow") (param $a i32) (result i32)
        (i32.store8 (local.get $a) (i32.const 0x1ff))
        (i32.add (i32.load8_s (local.get $a))
          (i32.add (i32.load8_u (local.get $a))
            (i32.add (i32.load16_s offset=1 (i32.const 34))
              (i32.add (i32.load offset=2 (i32.const 31))
                       (i32.load16_u (i32.const 60)))))))
      (data (i32.const 70) "\\7f\\80")
      (func $unwritten (local $p i32)  ;; stores at its own local 0: unwritten, so 0 + 50
        (i32.store8 offset=50 (local.get $p) (i32.const 9)))
      (func (export "size") (param $x i32) (result i32)
        (i32.store offset=40 (i32.const 8) (i32.const 0x01020304))
        (call $unwritten)
        (i32.add (i32.add (memory.size) (i32.load8_u (local.get $x)))
          (i32.add (i32.load (i32.const 68))
            (i32.add (i32.load8_u (i32.const 50)) (i32.load16_u (i32.const 49)))))))""",
               [("widths", [101, 0x8122_3344_F566_7788]), ("narrow", [33]), ("size", [7])]),
    # globals (i32 and i64, from the prompt and as set), a stack pointer kept in memory
    "globals": ("""(module (memory 1)
      (global $sp (mut i32) (i32.const 1024))
      (global $big (mut i64) (i64.const -81985529216486896))
      (global $k i32 (i32.const 7))
      (func $push (param $v i32)
        (global.set $sp (i32.sub (global.get $sp) (i32.const 4)))
        (i32.store (global.get $sp) (local.get $v)))
      (func $pop (result i32) (local $v i32)
        (local.set $v (i32.load (global.get $sp)))
        (global.set $sp (i32.add (global.get $sp) (i32.const 4)))
        (local.get $v))
      (func (export "run") (param $n i32) (result i64) (local $i i32) (local $s i32)
        (loop $fill
          (call $push (i32.mul (local.get $i) (global.get $k)))
          (local.tee $i (i32.add (local.get $i) (i32.const 1)))
          (local.get $n) i32.lt_u br_if $fill)
        (loop $drain
          (local.set $s (i32.add (local.get $s) (call $pop)))
          (local.tee $i (i32.sub (local.get $i) (i32.const 1)))
          br_if $drain)
        (global.set $big (i64.add (global.get $big) (i64.extend_i32_u (local.get $s))))
        (i64.add (global.get $big) (i64.extend_i32_u (global.get $sp)))))""",
                [("run", [2]), ("run", [1])]),
    "multi": ("""(module
      (func $swap (param i32 i64) (result i64 i32) (local.get 1) (local.get 0))
      (func (export "three") (param $a i32) (param $b i64) (result i32 i64 i32)
        (local.get $a)
        (call $swap (i32.add (local.get $a) (i32.const 1)) (local.get $b)))
      (func (export "early") (param $a i32) (result i64 i64)
        (i64.const 5)
        (if (local.get $a) (then (return (i64.const -1) (i64.extend_i32_u (local.get $a)))))
        (i64.const 9)))""",
              [("three", [5, 0x1122334455667788]), ("early", [3]), ("early", [0])]),
    "switch": ("""(module
      (func (export "classify") (param $x i32) (result i32)
        (block $d (block $c (block $b (block $a
          (br_table $a $b $c $a $d (local.get $x)))
          (return (i32.const 10)))
          (return (i32.const 20)))
          (return (i32.add (local.get $x) (i32.const 30))))
        i32.const 99)
      (func (export "count") (param $n i32) (result i32) (local $s i32)
        (loop $next
          (block $odd (block $even
            (br_table $even $odd (i32.and (local.get $n) (i32.const 1))))
            (local.set $s (i32.add (local.get $s) (i32.const 2))))
          (local.set $s (i32.add (local.get $s) (i32.const 1)))
          (br_if $next (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))
        local.get $s))""",
               [("classify", [0]), ("classify", [1]), ("classify", [2]), ("classify", [3]),
                ("classify", [4]), ("classify", [-1]), ("count", [3])]),
}

# memory.grow (universal/memsize.py; tests/test_universal_grow.py runs them)
GROW_PROGRAMS: dict[str, tuple[str, list[tuple[str, list[int]]]]] = {
    # memory.grow (docs/UNIVERSAL.md): by 0, by 1 (then stores and loads in the new page),
    # refused by the graph's page cap (Limits.memory_page_limit: 2 pages) and by a delta
    # with high bits; the result kept in a local; memory.size before and after
    "grow": ("""(module (memory 1)
      (data (i32.const 65530) "\\05\\06")
      (func (export "size") (result i32) (memory.size))
      (func (export "grow") (param $d i32) (result i32) (memory.grow (local.get $d)))
      (func (export "touch") (param $a i32) (param $v i32) (result i32)
        (i32.store offset=1 (local.get $a) (local.get $v))
        (i32.add (i32.load offset=1 (local.get $a)) (i32.load8_u (i32.const 65531))))
      (func (export "again") (result i32) (local $r i32)
        (local.set $r (memory.grow (i32.const 0)))
        (i32.add (i32.mul (local.get $r) (i32.const 16))
                 (i32.add (memory.size) (memory.grow (i32.const 1))))))""",
             [("size", []), ("grow", [0]), ("size", []), ("grow", [1]), ("size", []),
              ("touch", [131067, 0x01020304]), ("touch", [65536, 9]), ("grow", [1]),
              ("grow", [-1]), ("again", []), ("size", [])]),
    # refused by the module's maximum (1 page) below the graph's cap
    "grow_max": ("""(module (memory 0 1)
      (func (export "grow") (param $d i32) (result i32)
        (i32.add (memory.grow (local.get $d)) (i32.mul (memory.size) (i32.const 256)))))""",
                 [("grow", [2]), ("grow", [1]), ("grow", [1]), ("grow", [0])]),
}

# Programs whose invocations trap (and invocations after the trap on the same instance).
TRAP_PROGRAMS: dict[str, tuple[str, list[tuple[str, list[int]]]]] = {
    "unreachable": ("""(module
      (func $check (param $x i32) (result i32)
        (if (i32.gt_u (local.get $x) (i32.const 3)) (then unreachable))
        (i32.mul (local.get $x) (i32.const 5)))
      (func $mid (param $x i32) (result i32) (local $t i32)
        (local.set $t (i32.add (local.get $x) (i32.const 1)))
        (i32.add (call $check (local.get $t)) (local.get $t)))
      (func (export "run") (param $x i32) (result i32)
        (i32.sub (call $mid (local.get $x)) (i32.const 1)))
      (func (export "now") unreachable))""",
                    [("run", [1]), ("run", [7]), ("run", [2]), ("now", []), ("run", [0])]),
    "unsupported": ("""(module
      (func $half (param $x i32) (result i32)
        (i32.trunc_f32_s (f32.div (f32.convert_i32_s (local.get $x)) (f32.const 2))))
      (func (export "run") (param $x i32) (result i32)
        (if (result i32) (i32.lt_u (local.get $x) (i32.const 10))
          (then (i32.add (local.get $x) (i32.const 1)))
          (else (call $half (local.get $x))))))""",
                    [("run", [3]), ("run", [12]), ("run", [4])]),
    "recursion_depth": ("""(module
      (func $down (export "down") (param $n i32) (result i32)
        (if (result i32) (i32.eqz (local.get $n))
          (then (i32.const 100))
          (else (i32.add (call $down (i32.sub (local.get $n) (i32.const 1)))
                         (local.get $n))))))""",
                        [("down", [2]), ("down", [30]), ("down", [7]), ("down", [8]),
                         ("down", [3])]),
    "call_indirect": ("""(module
      (type $bin (func (param i32 i32) (result i32)))
      (type $un (func (param i32) (result i32)))
      (table 6 funcref)
      (elem (i32.const 1) $add $sub $neg)
      (elem (i32.const 5) $down)
      (func $add (type $bin) (i32.add (local.get 0) (local.get 1)))
      (func $sub (type $bin) (i32.sub (local.get 0) (local.get 1)))
      (func $neg (type $un) (i32.sub (i32.const 0) (local.get 0)))
      (func $down (type $un)
        (if (result i32) (i32.eqz (local.get 0))
          (then (i32.const 0))
          (else (i32.add (call_indirect (type $un)
                           (i32.sub (local.get 0) (i32.const 1)) (i32.const 5))
                         (i32.const 2)))))
      (func (export "apply") (param $f i32) (param $x i32) (result i32)
        (i32.mul (call_indirect (type $bin) (local.get $x) (i32.const 3) (local.get $f))
                 (i32.const 2)))
      (func (export "down") (param $n i32) (result i32)
        (call_indirect (type $un) (local.get $n) (i32.const 5))))""",
                      [("apply", [9, 1]), ("apply", [1, 10]), ("apply", [0, 1]),
                       ("apply", [3, 1]), ("apply", [-1, 1]), ("down", [20]), ("down", [1])]),
    # out-of-bounds loads and stores (the last byte just past the end, a huge address, a
    # call chain), each followed by an invocation that reads what the earlier ones stored
    "memory_oob": ("""(module (memory 1)
      (func $put (param $a i32) (param $v i32)
        (i32.store offset=2 (local.get $a) (local.get $v)))
      (func (export "store") (param $a i32) (param $v i32) (result i32)
        (call $put (local.get $a) (local.get $v))
        (i32.load16_u offset=2 (local.get $a)))
      (func (export "load") (param $a i32) (result i64)
        (i64.load (local.get $a))))""",
                   [("store", [100, 0x1234]), ("store", [65533, 7]), ("load", [65528]),
                    ("load", [65529]), ("load", [-8]), ("load", [100]),
                    ("store", [65532, 9]), ("store", [65530, 0x3344])]),
    # out of bounds against the grown size: just past the end before and after a grow
    "grow_oob": ("""(module (memory 1 4)
      (func (export "grow") (param $d i32) (result i32) (memory.grow (local.get $d)))
      (func (export "load") (param $a i32) (result i32) (i32.load16_u (local.get $a))))""",
                 [("load", [65535]), ("grow", [1]), ("load", [65535]), ("load", [131071]),
                  ("load", [131070]), ("grow", [1]), ("load", [131071])]),
}

OUTCOMES = {"grow_oob": ["trap", "halt", "halt", "trap", "halt", "halt", "trap"],
            "memory_oob": ["halt", "trap", "halt", "trap", "trap", "halt", "trap", "halt"],
            "call_indirect": ["trap", "halt", "trap", "trap", "trap", "trap", "halt"],
            "unreachable": ["halt", "trap", "halt", "trap", "halt"],
            "unsupported": ["halt", "trap", "halt"],
            "recursion_depth": ["halt", "trap", "halt", "trap", "halt"]}


@dataclass(frozen=True)
class Stream:
    """An instance's token stream: the prompt, then (header, trace) per invocation."""

    name: str
    fused: FusedProgram
    prompt: list[int]
    traces: list[Trace]
    calls: list[tuple[str, list[int]]]

    @property
    def tokens(self) -> list[int]:
        return self.prompt + [t for tr in self.traces for t in tr.tokens]

    def predicted(self) -> list[bool]:
        """For each position: whether the model must predict the *next* token (the token
        after it is a trace token, not part of the prompt or of an invocation header)."""
        flags = [False] * len(self.prompt)
        for tr in self.traces:  # header, trace, and its last token (HALT or a trap's)
            head = len(tr.step_tokens(0))
            flags += [False] * (head - 1) + [True] * (len(tr.tokens) - head) + [False]
        return flags

    def describe_failure(self, position: int) -> str:
        at = len(self.prompt)
        for (export, args), tr in zip(self.calls, self.traces, strict=True):
            if position < at + len(tr.tokens):
                lines = "\n".join(trace_lines(tr, export))
                return (f"{self.name}: {export}{tuple(args)}, trace token {position + 1 - at}"
                        f"\n{lines}")
            at += len(tr.tokens)
        return f"{self.name}: position {position}"


def make_stream(name: str, wat: str, calls: list[tuple[str, list[int]]],
                max_call_depth: int = Limits().call_depth_limit,
                max_memory_pages: int = Limits().memory_page_limit) -> Stream:
    """The stream of ``calls`` on one instance, run with the call-depth and memory page
    limits a graph of default ``Limits`` agrees with. Invocations end by returning or by a
    trap."""
    limits = HostLimits(max_call_depth=max_call_depth,
                        max_memory_pages=max_memory_pages)
    inst = Instance(load_module(program_bytes(wat).wasm), limits=limits)
    tm = TokenMachine(inst)
    prompt = prompt_tokens(inst, tm.fused, tm.func_index)
    traces = [tm.invoke(export, args) for export, args in calls]
    assert all(t.outcome in ("halt", "trap") for t in traces), name
    return Stream(name, tm.fused, prompt, traces, calls)


@functools.cache
def stream(name: str) -> Stream:
    wat, calls = {**PROGRAMS, **GROW_PROGRAMS, **TRAP_PROGRAMS}[name]
    return make_stream(name, wat, calls)


def check_evaluator(g: Graph, s: Stream) -> int:
    """Generate ``s``'s traces with the exact evaluator (greedy: each predicted token is fed
    back); assert every one equals the token machine's. Returns the tokens generated."""
    ev = Evaluator(g)
    tokens, predicted = s.tokens, s.predicted()
    generated = 0
    token = tokens[0]
    for i in range(len(tokens) - 1):
        if not predicted[i]:
            ev.feed(token)
            token = tokens[i + 1]
            continue
        got = ev.append(token)
        want = tokens[i + 1]
        assert got == want, (f"position {i}: graph {vocab.describe(got)}, token machine "
                             f"{vocab.describe(want)}\n{s.describe_failure(i)}")
        generated += 1
        token = got
    return generated


def check_model(model: torch.nn.Module, s: Stream) -> int:
    """The model's argmax at every predicted position equals the token machine's next token
    (one causal forward over the whole stream: by induction, greedy decoding then
    generates exactly the trace). Returns the tokens checked."""
    tokens, predicted = s.tokens, s.predicted()
    with torch.no_grad():
        best = model(torch.tensor([tokens]))[0].argmax(-1).tolist()
    checked = 0
    for i, flag in enumerate(predicted):
        if flag:
            assert best[i] == tokens[i + 1], (
                f"position {i}: model {vocab.describe(best[i])}, token machine "
                f"{vocab.describe(tokens[i + 1])}\n{s.describe_failure(i)}")
            checked += 1
    return checked


def generate_with_cache(model, s: Stream) -> list[list[int]]:
    """Greedy decoding with the KV cache, invocation after invocation on one cache: the
    generated traces (each up to and including HALT)."""
    halt = vocab.tok("HALT")
    cache = model.new_cache()
    out = []
    with torch.no_grad():
        model.run(torch.tensor([s.prompt]), 0, cache)
        for tr in s.traces:
            head = tr.step_tokens(0)
            logits = model.run(torch.tensor([head]), cache.length, cache)[0, -1]
            new: list[int] = []
            while len(new) < len(tr.tokens) - len(head):
                new.append(int(logits.argmax()))
                logits = model.step(torch.tensor([new[-1]]), cache)[0]
                if new[-1] == halt:
                    break
            out.append(new)
    return out
