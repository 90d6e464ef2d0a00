"""``wasmformer bench --determinism``: the long check's machinery on a tiny token target
(the 10^7-token run itself is in BENCHMARKS.md)."""

from __future__ import annotations

from test_cli import assert_one_clean_line, wasmformer

from wasmformer.determinism import (
    SECTION,
    SLACK,
    STATE_FILE,
    State,
    run_determinism,
    run_stream,
    write_section,
)
from wasmformer.engine.decoders import FastDecoding
from wasmformer.engine.models import FAST_BUCKETS, bucket_for
from wasmformer.machine import vocab

SMALL = 2**15  # streams in the 32K bucket: machine.wat's 5.5K-token prompt and a few calls
SOURCES = ("machine.wat",)


def test_a_tiny_run_compares_reports_and_resumes(tmp_path):
    target = tmp_path / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n\n## Tokens\n\nkept\n\n## Scaling\n\nkept too\n")
    state = run_determinism(tmp_path, tokens=2000, stream_positions=SMALL, sources=SOURCES,
                            progress=False)
    (first,) = state.streams
    assert state.divergence is None and first.program == "machine.wat"
    assert first.generated >= 2000 and first.compared >= first.generated
    assert first.invocations >= 1 and first.prompt + first.compared < first.positions <= SMALL
    assert first.margin is not None and first.margin >= 1 and first.scans >= 0
    assert first.buckets == [bucket_for(SMALL, FAST_BUCKETS)]  # the fast engine's: the largest
    text = target.read_text()
    assert text.startswith("# Benchmarks\n\n## Tokens\n\nkept\n\n## Scaling\n\nkept too\n\n")
    assert text.count(SECTION) == 1 and "**No divergence**" in text
    assert f"({first.generated:,})" in text
    # a larger target goes on from the next stream; the first stays as it was
    again = run_determinism(tmp_path, tokens=first.generated + 1, stream_positions=SMALL,
                            sources=SOURCES, progress=False)
    assert len(again.streams) == 2 and again.streams[0] == first
    assert State.load(tmp_path / STATE_FILE).streams == again.streams
    assert target.read_text().count(SECTION) == 1


def test_a_stream_ends_before_its_bucket_would_not_hold_the_next_invocation():
    """A stream stops before an invocation that would take it past its length (with the
    token budget: the reference trace and SLACK), so every stream runs on the one decoder
    made for it (the fast engine's bucket is the largest: it never moves anyway)."""
    ran = 0
    for k in range(3):
        result, divergence = run_stream(k, 0, 8192, SOURCES, 10**9, lambda n: None)
        assert divergence is None
        if result.invocations:
            ran += 1
            assert result.buckets == [bucket_for(8192, FAST_BUCKETS)]
            assert result.positions + SLACK <= 8192
        else:  # its first invocation does not fit: nothing was decoded
            assert result.note.startswith("not run") and result.buckets == []
    assert ran


def test_a_wrong_token_is_reported_as_a_divergence(tmp_path, monkeypatch):
    """The fast engine's 300th generated token replaced by another: the run stops there and
    names the position and both tokens."""
    real = FastDecoding.decode
    done, wrong = [0], {}

    def decode(self, tokens, limit, stops):
        at = self.length + len(tokens)  # the stream position of the first token out
        out = real(self, tokens, limit, stops)
        i = 300 - done[0]
        if 0 <= i < len(out) and not wrong:
            wrong.update(position=at + i, was=out[i], now=(out[i] + 1) % vocab.SIZE)
            out[i] = wrong["now"]
        done[0] += len(out)
        return out

    monkeypatch.setattr(FastDecoding, "decode", decode)
    state = run_determinism(tmp_path, tokens=10**6, stream_positions=SMALL, sources=SOURCES,
                            progress=False)
    d = state.divergence
    assert d is not None and len(state.streams) == 1
    assert d.position == wrong["position"]
    assert (d.fast, d.reference) == (vocab.describe(wrong["now"]), vocab.describe(wrong["was"]))
    assert "**Diverged**" in (tmp_path / "BENCHMARKS.md").read_text()


def test_write_section_replaces_only_its_own(tmp_path):
    target = tmp_path / "BENCHMARKS.md"
    target.write_text("# Benchmarks\n\n## Speed\n\na\n")
    write_section(target, f"{SECTION}\n\none\n")
    assert target.read_text() == f"# Benchmarks\n\n## Speed\n\na\n\n{SECTION}\n\none\n"
    target.write_text(f"# B\n\n{SECTION}\n\nold\n| x |\n\n## Scaling\n\nb\n")
    write_section(target, f"{SECTION}\n\nnew\n")
    assert target.read_text() == f"# B\n\n{SECTION}\n\nnew\n\n## Scaling\n\nb\n"


def test_bad_stream_length_is_one_line(tmp_path):
    proc = wasmformer("bench", "--determinism", "-o", str(tmp_path), "--stream-positions", "100")
    assert_one_clean_line(proc, 2, "--stream-positions must be 4,096 to 8,388,608")
