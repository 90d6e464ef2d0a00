"""The universal model, built once per max_len bucket and cached (in process and on disk).

``universal_model(max_len)`` builds the universal interpreter graph with every ALU op it
has (``universal.build_universal_graph``), compiles it (``compiler.compile_graph``), builds
the torch model (``model.build_model``: the numerics guard refuses a dtype/max_len it does
not prove exact) and caches the weights under ``cache_dir()/models`` (``model.io``: safetensors
with the config and a checksum). The cache key hashes the protocol version, the limits, the
dtype and the source of every module the weights derive from, so a code change rebuilds.
A refused build is cached too (its message), so a bucket beyond the proven range is not
rebuilt on every run.

Buckets: a model built for max_len N is proven for positions 0..N-1 only, so the engine
picks the smallest bucket that holds the stream (``bucket_for``). Every bucket is a float64
model with int64 attention scores (``ModelConfig.score_dtype``) and ``MEM_BITS`` bits of
linear memory; the numerics guard proves each one when it is built (the largest score,
the memory read's at 2**23 positions, is below 2**62.6; docs/UNIVERSAL.md "Numerics and
limits" has the table). Float32 is refused.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from pathlib import Path

import torch

from ..compiler import CompiledModel, compile_graph
from ..compiler.lower import key_shift
from ..compiler.program import Head
from ..errors import InputError, ModelNotProven
from ..graph import Graph, Lookup
from ..machine.prompt import VERSION as PROTOCOL_VERSION
from ..model import NumericsError, Transformer, build_model, load_model, save_model
from ..toolchain import cache_dir
from ..universal import Limits, build_universal_graph
from .sparse import sparse_copy

# max_len of the models the engine builds, smallest first (a stream moves up as it grows;
# small buckets keep short runs' prefill cheap)
BUCKETS = (2048, 8192, 2**15, 2**17, 2**18, 2**20, 2**23)
# the fast engine's buckets: its per-token cost does not depend on max_len and its caches
# grow with the stream, so it starts in the largest and never feeds a stream twice
FAST_BUCKETS = BUCKETS[-1:]
MEM_BITS = 20  # linear memory below 2**20 bytes (16 pages), every bucket
# call depths 0..127: a call at depth 127 traps (every example stays below it; printf alone
# is 8 frames deep). 256 would cost a bit of the stack lookups' scores.
MAX_DEPTH = 128
DTYPES = {"float64": torch.float64, "float32": torch.float32}
SCORE_DTYPES = {"float64": "int64", "float32": "float32"}  # the attention scores per dtype

# The packages whose source determines the weights (the graph, its compiler, the model, and
# the vocabulary and prompt layout the graph reads).
_SOURCES = ("universal", "graph", "compiler", "model", "machine/vocab.py", "machine/prompt.py",
            "engine/models.py")
# The lookups whose cache rows an engine reads (engine/host.py: a host call's arguments and
# memory), recorded in ``model.info["lookups"]`` by ``lookup_layout``.
READ_LOOKUPS = ("stack_B", "mem_read", "depth", "call_site")


_loaded: dict[tuple[int, str, str], Transformer] = {}  # (max_len, dtype, device)
_refused: dict[tuple[int, str, str], str] = {}
_fast: dict[tuple[int, str, str], Transformer] = {}


def engine_limits(max_len: int) -> Limits:
    """The limits of the engine's universal model for ``max_len`` positions."""
    return Limits(max_len=max_len, mem_bits=MEM_BITS, max_depth=MAX_DEPTH)


def model_key(limits: Limits, dtype: str) -> str:
    """A hash of everything the weights depend on."""
    h = hashlib.sha256(f"protocol {PROTOCOL_VERSION}\n{limits!r}\n{dtype} scores "
                       f"{SCORE_DTYPES[dtype]}\n".encode())
    root = Path(__file__).resolve().parent.parent
    for name in _SOURCES:
        path = root / name
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            h.update(f"\n{f.relative_to(root)}\n".encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:24]


def build_universal(limits: Limits, dtype: str = "float64") -> Transformer:
    """Build (no cache) the universal model; raises ModelNotProven where the guard refuses."""
    start = time.perf_counter()
    graph, _ = build_universal_graph(limits)
    compiled = compile_graph(graph)
    try:
        model = build_model(compiled, DTYPES[dtype], score_dtype=SCORE_DTYPES[dtype])
    except NumericsError as exc:
        raise ModelNotProven(_one_line(dtype, limits.max_len, str(exc))) from None
    model.info["lookups"] = lookup_layout(graph, compiled, READ_LOOKUPS)
    model.info["build_seconds"] = round(time.perf_counter() - start, 2)
    return model


def lookup_layout(graph: Graph, compiled: CompiledModel, names: tuple[str, ...]
                  ) -> dict[str, dict]:
    """Where lookups ``names`` sit in the model: layer, head (the block's heads in program
    order, as ``compiler.compiled`` places them), the key's shift (a head's first key row
    holds key - shift: ``compiler.lower.key_shift``) and the value row of each output ('key' for the
    matched key, '0', '1', ... for the lookup's values)."""
    shifts = {op.name: int(key_shift(op)) for op in graph.ops if isinstance(op, Lookup)}
    heads_in: dict[int, int] = {}
    layout = {}
    for op, stage in zip(compiled.program.ops, compiled.schedule.stages, strict=True):
        if not isinstance(op, Head):
            continue
        layer = (stage + 1) // 2 - 1
        index = heads_in.get(layer, 0)
        heads_in[layer] = index + 1
        if op.name in names:
            rows = {f.name.removeprefix(f"{op.name}."): i for i, f in enumerate(op.outputs)}
            layout[op.name] = {"layer": layer, "head": index, "key_shift": shifts[op.name],
                               "values": rows}
    return layout


def _one_line(dtype: str, max_len: int, message: str) -> str:
    problems = message.split("; ")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return (f"the universal model in {dtype} at max_len {max_len} is not proven exact: "
            f"{problems[0].removeprefix(dtype + ': ')}{more}")


def universal_model(max_len: int, dtype: str = "float64", device: str = "cpu") -> Transformer:
    """The universal model for ``max_len`` positions on ``device``, from the in-process or
    on-disk cache, built when neither has it. Raises ModelNotProven where the numerics guard
    refuses."""
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r} (float64 or float32)")
    at = (max_len, dtype, device)
    if at in _loaded:
        _loaded[at] = _loaded.pop(at)  # the most recently used last
        return _loaded[at]
    model = _cpu_model(max_len, dtype)
    if device != "cpu":  # Module.to moves in place: keep the CPU copy as it is
        model = copy.deepcopy(model).to(device)
    _remember(at, model)
    return model


KEEP = 2  # models held in process (a growing stream moves up the buckets: ~1.4 GB each)


def _remember(at: tuple[int, str, str], model: Transformer) -> None:
    _loaded[at] = model
    while len(_loaded) > KEEP:
        del _loaded[next(iter(_loaded))]  # the least recently used


def release_models() -> None:
    """Drop the models this process holds (each dense bucket is over a gigabyte in
    float64); the on-disk cache stays, so the next use loads instead of building."""
    _loaded.clear()
    _fast.clear()


def fast_model(max_len: int, dtype: str = "float64", device: str = "cpu") -> Transformer:
    """``universal_model`` with sparse linear maps (``sparse.sparse_copy``): bit-identical
    outputs, several times faster per token on a CPU. Cached in process."""
    if (max_len, dtype, device) not in _fast:
        _fast[max_len, dtype, device] = sparse_copy(universal_model(max_len, dtype, device))
    return _fast[max_len, dtype, device]


def _cpu_model(max_len: int, dtype: str) -> Transformer:
    at = (max_len, dtype, "cpu")
    if at in _loaded:
        return _loaded[at]
    if at in _refused:
        raise ModelNotProven(_refused[at])
    limits = engine_limits(max_len)
    path = cache_dir() / "models" / f"universal-{max_len}-{dtype}-{model_key(limits, dtype)}"
    weights, refused = path.with_suffix(".safetensors"), path.with_suffix(".refused.json")
    if refused.exists():
        _refused[at] = json.loads(refused.read_text())["message"]
        raise ModelNotProven(_refused[at])
    if weights.exists():
        model = load_model(weights)
    else:
        try:
            model = build_universal(limits, dtype)
        except ModelNotProven as exc:
            message = json.dumps({"message": str(exc)})
            _write(refused, lambda tmp: tmp.write_text(message))
            _refused[at] = str(exc)
            raise
        _write(weights, lambda tmp: save_model(model, tmp))
        _prune(path)
    _remember(at, model)
    return model


def _prune(current: Path) -> None:
    """Remove this bucket's models built from other sources (over a gigabyte each): a code
    change rebuilds, and the disk should not keep every past build."""
    stem = current.name.rsplit("-", 1)[0]  # universal-{max_len}-{dtype}
    for old in current.parent.glob(f"{stem}-*"):
        if old.name.split(".")[0] != current.name:
            old.unlink(missing_ok=True)


def _write(target: Path, write) -> None:
    """Write through a temporary file and a rename: a concurrent reader never sees half."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        tmp.replace(target)
    except OSError:
        tmp.unlink(missing_ok=True)  # a read-only cache only costs a rebuild next time


def engine_buckets(engine: str) -> tuple[int, ...]:
    """The buckets an engine's streams use: the fast engine ("fast-scan", its scan
    baseline, too) only the largest, the torch engine every one."""
    return FAST_BUCKETS if engine.startswith("fast") else BUCKETS


def bucket_for(positions: int, buckets: tuple[int, ...] = BUCKETS) -> int | None:
    """The smallest of ``buckets`` holding ``positions`` (None: over the largest)."""
    return next((b for b in buckets if b >= positions), None)
