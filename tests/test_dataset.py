"""`wasmformer dataset`: trace records that load with pandas and agree with `wasmformer.trace`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import wasmformer
from wasmformer.dataset import build_record
from wasmformer.machine.prompt import VERSION
from wasmformer.machine.semantics import LOADS
from wasmformer.machine.vocab import from_le, tok

EXAMPLES = Path(__file__).parent.parent / "examples"

# Output through a host call (with a host memory write), a call with a br_table that moves its
# kept value down the stack, a store of the call's result, a bulk fill, and an exit code.
WAT = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "ok\\n")
  (func $pick (param i32) (result i32)
    (block $b1 (result i32)
      (block $b0 (result i32)
        (i32.const 5) (i32.const 40) (local.get 0)
        (br_table $b0 $b1))
      (i32.const 1) (i32.add)))
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16)) (i32.store (i32.const 4) (i32.const 3))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 32) (call $pick (i32.const 0)))
    (memory.fill (i32.const 64) (i32.const 7) (i32.const 3))
    (call $exit (i32.load (i32.const 32)))))"""


def wasmformer_cli(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    prefix = ["-c", code] if code else ["-m", "wasmformer"]
    return subprocess.run([sys.executable, *prefix, *args], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> list[Path]:
    wat = tmp_path_factory.mktemp("progs") / "pick.wat"
    wat.write_text(WAT)
    return [EXAMPLES / "hello.c", wat]


@pytest.fixture(scope="module")
def traces(programs) -> list[wasmformer.TraceResult]:
    return [wasmformer.trace(p) for p in programs]


def load(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_json(path, lines=True)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_dataset_loads_with_pandas_and_matches_the_trace(tmp_path, programs, traces, suffix):
    out = tmp_path / f"traces{suffix}"
    proc = wasmformer_cli("dataset", *map(str, programs), "-o", str(out))
    assert proc.returncode == 0, proc.stderr.decode()
    df = load(out)
    assert list(df.program) == [str(p) for p in programs]
    for row, t in zip(df.itertuples(), traces, strict=True):
        trace_tokens = [int(x) for x in row.trace_tokens]
        assert [int(x) for x in row.prompt_tokens] == t.prompt
        assert trace_tokens == t.trace.tokens
        assert (row.n_prompt_tokens, row.n_trace_tokens) == (len(t.prompt), len(t.trace.tokens))
        assert row.stdout.encode() == t.stdout
        assert row.exit_code == t.exit_code and row.instructions == t.instructions
        assert row.protocol_version == VERSION and len(row.wasm_sha256) == 64
        # the steps' spans are contiguous and concatenate to the trace exactly
        steps = list(row.steps)
        assert len(steps) == row.n_steps == len(t.trace.pcs)
        at = 0
        for i, s in enumerate(steps):
            assert s["step"] == i and s["start"] == at and s["pc"] == t.trace.pcs[i]
            assert [int(x) for x in s["tokens"]] == trace_tokens[s["start"]:s["end"]]
            at = s["end"]
        assert at == len(trace_tokens)
        assert sum(s["instructions"] for s in steps) == row.instructions
        assert bytes(b for s in steps for b in s["out_bytes"]) == t.stdout
    hello, pick = df.iloc[0], df.iloc[1]
    assert hello.stdout == "Hello, world!\n" and hello.outcome == "halt"
    assert pick.stdout == "ok\n" and pick.exit_code == 41 and pick.outcome == "exit"


def test_decoded_effects(programs) -> None:
    """What each step of the .wat did, read from its tokens, where the program says it is."""
    steps = build_record(programs[1])["steps"]
    by_kind: dict[str, list[dict]] = {}
    for s in steps:
        by_kind.setdefault(s["kind"], []).append(s)
    stores = by_kind["store"]
    assert [(s["address"], s["memory"][0]["bytes"]) for s in stores] == [
        (0, [16, 0, 0, 0]), (4, [3, 0, 0, 0]), (32, [41, 0, 0, 0])]
    (host,) = by_kind["host_call"]
    assert bytes(host["out_bytes"]) == b"ok\n" and host["callee"] == 0
    assert host["memory"] == [{"address": 8, "bytes": [3]}]  # nwritten: only the changed byte
    assert host["writes"] == [{"target": "stack", "space": 0, "index": 0, "type": "i32",
                               "value": 0}]
    (call,) = by_kind["call"]
    assert call["callee"] == 2 and call["depth"] == 0
    assert call["writes"] == [{"target": "local", "space": 1, "index": 0, "type": "i32",
                               "value": 0}]
    (branch,) = by_kind["branch"]  # br_table to $b0: the kept 40 moves down over the 5
    assert branch["taken"] and branch["depth"] == 1
    assert branch["writes"] == [{"target": "stack", "space": 1, "index": 0, "type": "i32",
                                 "value": 40}]
    (ret,) = by_kind["return"]  # 40 + 1 returned to the caller's slot above the address
    assert ret["target"] == call["pc"] + 1
    assert ret["writes"] == [{"target": "stack", "space": 0, "index": 1, "type": "i32",
                              "value": 41}]
    (fill,) = by_kind["memory_bulk"]
    assert fill["memory"] == [{"address": 64, "bytes": [7, 7, 7]}]
    (exit_step,) = by_kind["exit"]
    assert exit_step["exit_code"] == 41 and steps[-1] is exit_step


def test_load_addresses_agree_with_the_bytes_written(traces, programs) -> None:
    """Every load's value is what the prompt's data and the earlier steps put at its address."""
    prompt = traces[0].prompt
    at = prompt.index(tok("DATA")) + 1
    memory: dict[int, int] = {}
    for r in range(from_le(prompt[at:at + 3])):  # DATA records: MEM address(4) n(2) 16 bytes
        rec = prompt[at + 3 + 23 * r:at + 26 + 23 * r]
        assert rec[0] == tok("MEM") and from_le(rec[5:7]) == 16
        memory.update({from_le(rec[1:5]) + i: b for i, b in enumerate(rec[7:])})
    loads = 0
    for s in build_record(programs[0])["steps"]:
        if s["op"] in LOADS:
            w = LOADS[s["op"]][0]
            got = bytes(memory.get(s["address"] + i, 0) for i in range(w))
            assert s["writes"][0]["value"] % (1 << 8 * w) == int.from_bytes(got, "little"), s
            loads += 1
        for m in s["memory"]:
            memory.update({m["address"] + i: b for i, b in enumerate(m["bytes"])})
    assert loads > 50


def test_no_steps_and_explicit_format(tmp_path, programs) -> None:
    out = tmp_path / "traces.data"
    proc = wasmformer_cli("dataset", str(programs[1]), "-o", str(out), "--format", "parquet",
                          "--no-steps")
    assert proc.returncode == 0, proc.stderr.decode()
    df = pd.read_parquet(out)
    assert "steps" not in df.columns and df.iloc[0].exit_code == 41


def assert_one_line(proc: subprocess.CompletedProcess, code: int, contains: str) -> None:
    err = proc.stderr.decode()
    assert proc.returncode == code, (proc.returncode, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and contains in lines[0] and "Traceback" not in err, err


def test_failures_leave_no_file(tmp_path, programs) -> None:
    out = tmp_path / "traces.jsonl"
    assert_one_line(wasmformer_cli("dataset", str(programs[0]), "-o", str(out),
                                   "--max-steps", "100"), 124, "step budget of 100 exhausted")
    assert_one_line(wasmformer_cli("dataset", str(programs[0]), str(tmp_path / "nope.c"), "-o",
                                   str(out)), 2, "no such file")
    bad = tmp_path / "bad.c"
    bad.write_text("int main(void) { return x; }\n")
    assert_one_line(wasmformer_cli("dataset", str(bad), "-o", str(out)), 2, "compile error")
    assert_one_line(wasmformer_cli("dataset", str(programs[1]), "-o", str(tmp_path / "t.csv")),
                    2, "unknown dataset suffix")
    assert_one_line(wasmformer_cli("dataset", str(programs[1]), "-o", str(out), "--format", "xml"),
                    2, "unknown dataset format")
    assert list(tmp_path.iterdir()) == [bad]  # no output, no temporary file
    out.write_text("old\n")  # a failed run leaves an existing file as it was
    wasmformer_cli("dataset", str(programs[0]), "-o", str(out), "--max-steps", "100")
    assert out.read_text() == "old\n"


def test_parquet_without_pyarrow_says_so(tmp_path, programs) -> None:
    hide_pyarrow = ("import sys; sys.modules['pyarrow'] = None; "
                    "sys.argv[0] = 'wasmformer'; from wasmformer.cli import main; main()")
    out = tmp_path / "traces.parquet"
    proc = wasmformer_cli("dataset", str(programs[1]), "-o", str(out), code=hide_pyarrow)
    assert_one_line(proc, 2, "pip install pyarrow")
    assert not out.exists()


def test_docs_example_record_is_current(tmp_path) -> None:
    """docs/DATASET.md's example record (its program, run now) has the numbers the page
    quotes: the protocol version, vocabulary, lengths and the whole trace."""
    import json
    import re

    text = (Path(__file__).parent.parent / "docs" / "DATASET.md").read_text()
    wat = re.search(r"## Example\n\n```wat\n(.*?)```", text, re.S).group(1)
    shown = re.search(r"writes one line \(shortened here\):\n\n```json\n(.*?)```", text,
                      re.S).group(1)
    program = tmp_path / "count.wat"
    program.write_text(wat)
    record = build_record(program)
    for key in ("protocol_version", "vocab_size", "n_prompt_tokens", "n_trace_tokens",
                "n_steps", "instructions"):
        assert int(re.search(rf'"{key}": (\d+)', shown).group(1)) == record[key], key
    trace = re.search(r'"trace_tokens": (\[[^\]]*\])', shown).group(1)
    assert json.loads(trace) == record["trace_tokens"]
    prompt = re.search(r'"prompt_tokens": \[([^\]]*), \.\.\.\]', shown).group(1)
    head = [int(t) for t in prompt.split(",")]
    assert record["prompt_tokens"][:len(head)] == head
    assert record["wasm_sha256"].startswith(re.search(r'"wasm_sha256": "(\w+)', shown).group(1))
