"""``wasmformer bench``: the report is written from real measurements of one short program."""

from __future__ import annotations

import tomllib

from test_cli import assert_one_clean_line, wasmformer

from wasmformer.bench import (
    EXAMPLES,
    TORCH_MAX_POSITIONS,
    Measurement,
    ProgramRow,
    render,
    run_bench,
    suite,
    torch_skip_note,
)


def test_suite_orders_by_size_and_quick_drops_long_programs():
    full, quick = suite(False), suite(True)
    manifest = tomllib.loads((EXAMPLES / "MANIFEST.toml").read_text())
    sizes = [manifest[n]["instructions"] for n in full]
    assert sizes == sorted(sizes)
    assert "sudoku" in full and "sudoku" not in quick and "hello" in quick


def test_bench_measures_hello(tmp_path):
    # the determinism check's section (bench --determinism) survives a full bench run
    kept = "## Determinism\n\nmeasured elsewhere\n"
    (tmp_path / "BENCHMARKS.md").write_text("# Benchmarks\n\nold\n\n" + kept)
    target = run_bench(tmp_path, engines=("reference",), names=["hello"], per_run_timeout=300)
    text = target.read_text()
    assert text.endswith("\n" + kept) and "\nold\n" not in text
    row = next(line for line in text.splitlines() if line.startswith("| hello | 918 |"))
    assert "2,386" in row  # the trace's tokens, from the token machine
    speed = [line for line in text.splitlines() if line.startswith("| hello | 0.")]
    assert len(speed) == 1 and "–" not in speed[0]  # every cell measured
    assert speed[0].endswith("| yes |")  # stdout, stderr and exit code equal wasmtime's
    assert (tmp_path / "bench-speed.png").stat().st_size > 1000


def test_a_run_that_differs_from_wasmtime_shows_no() -> None:
    from wasmformer.bench import Measurement, ProgramRow, _outcome

    row = ProgramRow("p", native=Measurement(seconds=1.0, output=_outcome(b"hi", b"", 0)))
    row.engines["fast"] = Measurement(seconds=2.0, output=_outcome(b"hi", b"", 1))
    assert "| NO |" in render([row], ("fast",), [], 1.0)


def test_render_shows_why_an_engine_has_no_number():
    row = ProgramRow("p", fuel=10, trace_tokens=25, prompt_tokens=7,
                     native=Measurement(seconds=0.001))
    row.engines["torch"] = Measurement(note="pc 3: i32.load not supported")
    text = render([row], ("torch",), [], 1.0)
    assert "| p | 10 | 25 | 2.50 | 7 |" in text
    assert "pc 3: i32.load not supported" in text


def test_torch_is_skipped_by_the_stream_against_its_budget():
    """The rule is the stream's length (prompt + trace, from the token machine), not a list of
    programs: one position over the budget gets the note, the budget itself does not."""
    under = ProgramRow("a", trace_tokens=100, prompt_tokens=TORCH_MAX_POSITIONS - 100)
    over = ProgramRow("b", trace_tokens=101, prompt_tokens=TORCH_MAX_POSITIONS - 100)
    assert torch_skip_note(under) == ""
    note = torch_skip_note(over)
    assert note.startswith(f"not run: a stream of {TORCH_MAX_POSITIONS + 1:,} positions")
    over.engines["torch"] = Measurement(note=note)
    assert note in render([over], ("torch",), [], 1.0)


def test_bench_refuses_an_unknown_engine(tmp_path):
    proc = wasmformer("bench", "-o", str(tmp_path), "--engine", "nope")
    assert_one_clean_line(proc, 2, "unknown or unavailable engine 'nope'")
    assert not (tmp_path / "BENCHMARKS.md").exists()


def test_scaling_measures_both_transformer_engines(tmp_path):
    """A short scaling run: both engines and the fast engine's scan baseline decode sum_to
    (checked against the token machine inside ``decode_windows``), and the section
    tabulates (fast / torch, fast / fast-scan) and plots their windows."""
    from wasmformer.bench import SCALED, _measure_scaling, plot_scaling, render_scaling, scaled

    assert scaled(("reference", "fast")) == ("fast", "fast-scan") and scaled(SCALED) == SCALED
    scaling = {e: _measure_scaling(e, 450, [32, 64]) for e in SCALED}
    for d in scaling.values():
        assert d["marks"][-1] > 64 and d["prompt"] + d["marks"][-1] <= 450
        assert all(b >= a for a, b in zip(d["times"], d["times"][1:], strict=False))
    lines = render_scaling(scaling, "s.png")
    assert any("fast / torch | fast / fast-scan |" in line for line in lines)
    rows = [line for line in lines if line.startswith("| ") and ".." in line]
    assert len(rows) == 3 and all(row.count("x |") == 2 for row in rows)
    assert plot_scaling(scaling, tmp_path / "s.png") and (tmp_path / "s.png").stat().st_size > 1000


def test_the_scan_baseline_scans_every_lookup_and_gives_the_trace():
    """``scaling.decoder_for("fast-scan")`` (the bench's scan baseline): the fast decoder
    with its hulls off answers every lookup by the model's own attention over all keys,
    and still decodes the token machine's trace."""
    from wasmformer.scaling import decoder_for, workload

    prompt, trace = workload(450)
    for engine in ("fast", "fast-scan"):
        decoder = decoder_for(engine, len(prompt) + len(trace))
        out = decoder.decode(prompt, 1, frozenset())
        out += decoder.decode(out[-1:], len(trace) - 1, frozenset())
        assert out == trace
        if engine == "fast":
            assert decoder.fast.scans == 0
        else:  # every lookup head, at every position after the first
            assert decoder.fast.scans >= len(prompt) + len(trace) - 2


def test_bench_refuses_an_unknown_program(tmp_path):
    proc = wasmformer("bench", "-o", str(tmp_path), "--program", "nope")
    assert_one_clean_line(proc, 2, "unknown example 'nope' (examples: hello, exitcode")
    assert not (tmp_path / "BENCHMARKS.md").exists()
