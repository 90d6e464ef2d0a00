"""The transformer: a plain decoder-only model; every weight comes from a compiled graph.

    x = wte(token) + wpe([p, p**2])     # (B, T, d_model) token features, constant one, positions
    for block in blocks:
        x = x + attn(x)                 # multi-head average-hard attention, causal
        x = x + ffn(x)                  # gated ReLU: down(relu(gate(x)) * up(x))
    logits = lm_head(x)                 # the next token is the argmax

No biases and no normalisation: constants come from the residual's constant-one
dimension (a column of ``wte`` that is 1 for every token). The positional encoding is
linear: ``wpe`` maps the features p and p**2 (from ``torch.arange``) into their residual
dimensions. Scores are plain dot products (no 1/sqrt(d) scale) and attention is
*average-hard*: a query's weights are uniform over the candidates whose score equals the
row's maximum (one position for a lookup head, whose exact scores have a unique maximum;
every candidate for a mean head, whose scores are constant). So a lookup needs exact,
correctly ordered scores and nothing else: no inverse temperature. ``score_dtype`` "int64"
computes q.k in exact 64-bit integers (q and k are exact integers in float64; the numerics
guard proves every partial sum below 2**63): 10 bits more than float64's 2**53.
A *strict* head attends to j < p instead of j <= p; a head with no candidate (strict,
p = 0) outputs 0. Nothing is trained: ``model.build`` sets the weights, ``model.numerics``
says where they are exact. The softmax survives for the differentiable mode
(``Attention.weights(..., sharpness=s)``: softmax of SOFTMAX_SCALE * s * score).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from wasmformer.compiler.guards import GUARDS_PER_UNIT

from .numerics import check_runtime

SOFTMAX_SCALE = 2**10  # the differentiable mode's softmax at sharpness 1: exp(-1024) == 0
SCORE_DTYPES = ("float64", "float32", "int64")
SCORE_BLOCK = 2**24  # score entries per block of queries (bounds a long prefill's memory)
CACHE_START = 1024  # positions a KV cache holds at first; it doubles as it fills
_LIMB = 21  # bits per limb of the exact integer scores off the CPU (see integer_scores)


@dataclass(frozen=True, slots=True)
class ModelConfig:
    vocab_size: int
    max_len: int  # positions 0 .. max_len-1 (the range the numerics guard proved)
    d_model: int
    n_layer: int
    n_head: int
    d_qk: int  # query/key width per head
    d_v: int  # value width per head
    d_ff: int  # hidden units per FFN
    dtype: str = "float64"
    score_dtype: str = "float64"  # q.k in float64/float32, or exact int64 (float64 models)

    def __post_init__(self) -> None:
        if self.score_dtype not in SCORE_DTYPES:
            raise ValueError(f"score_dtype must be one of {', '.join(SCORE_DTYPES)}")
        if self.score_dtype == "int64" and self.dtype != "float64":
            raise ValueError("int64 scores need a float64 model (exact integer q and k)")

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


class LayerCache:
    """One layer's keys and values for every position so far. It starts at CACHE_START
    positions and doubles when full (up to max_len), so a long model's cache costs what
    the stream uses, not max_len."""

    def __init__(self, cfg: ModelConfig, batch: int, device: torch.device | None):
        self.max_len = cfg.max_len
        shape = (batch, cfg.n_head, min(cfg.max_len, CACHE_START))
        # int64 scores: the keys (exact integers) are kept as int64, so a decoding step
        # does not convert the whole cache again
        kind = torch.int64 if cfg.score_dtype == "int64" else cfg.torch_dtype
        self.keys = torch.zeros(*shape, cfg.d_qk, dtype=kind, device=device)
        self.values = torch.zeros(*shape, cfg.d_v, dtype=cfg.torch_dtype, device=device)

    @property
    def capacity(self) -> int:
        return self.keys.shape[2]

    def extend(self, start: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (B, H, T, d) at positions start.. and return all of 0..start+T-1."""
        end = start + k.shape[2]
        if end > self.capacity:
            self._grow(min(self.max_len, max(end, 2 * self.capacity)))
        self.keys[:, :, start:end] = k
        self.values[:, :, start:end] = v
        return self.keys[:, :, :end], self.values[:, :, :end]

    def _grow(self, size: int) -> None:
        def grown(old: torch.Tensor) -> torch.Tensor:
            new = old.new_zeros(*old.shape[:2], size, old.shape[3])
            new[:, :, :old.shape[2]] = old
            return new
        self.keys, self.values = grown(self.keys), grown(self.values)


class KVCache:
    """The state of incremental decoding: every layer's keys/values and the length so far."""

    def __init__(self, cfg: ModelConfig, batch: int = 1, device: torch.device | None = None):
        self.length = 0
        self.layers = [LayerCache(cfg, batch, device) for _ in range(cfg.n_layer)]


UNBOUNDED = (-2**63, 2**63 - 1)  # a value row with no proven integer range


class Attention(nn.Module):
    """Multi-head attention with average-hard (or, in the differentiable mode, softmax)
    weights.

    ``value_range[h * d_v + i]`` is (lo, hi): integers that value row i of head h always
    lies between, as the compiler proved from the graph's ranges (``UNBOUNDED``: no such
    claim). The forward pass does not use it; a decoder may store the cached values in a
    narrower integer type (``engine.fast``)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.d_qk, self.d_v = cfg.n_head, cfg.d_qk, cfg.d_v
        self.query = nn.Linear(cfg.d_model, cfg.n_head * cfg.d_qk, bias=False)
        self.key = nn.Linear(cfg.d_model, cfg.n_head * cfg.d_qk, bias=False)
        self.value = nn.Linear(cfg.d_model, cfg.n_head * cfg.d_v, bias=False)
        self.out = nn.Linear(cfg.n_head * cfg.d_v, cfg.d_model, bias=False)
        self.register_buffer("strict", torch.zeros(cfg.n_head, dtype=torch.bool))
        self.register_buffer("value_range", torch.tensor([UNBOUNDED] * (cfg.n_head * cfg.d_v)))
        self.score_dtype = cfg.score_dtype

    def split(self, x: torch.Tensor, width: int) -> torch.Tensor:
        b, t, _ = x.shape  # (B, T, H*width) -> (B, H, T, width)
        return x.view(b, t, self.n_head, width).transpose(1, 2)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys, values (B, H, T, d) of the positions in x."""
        return (self.split(self.query(x), self.d_qk), self.split(self.key(x), self.d_qk),
                self.split(self.value(x), self.d_v))

    def scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """q.k (B, H, T, Tk) for every query/key pair, in the configured score dtype."""
        if self.score_dtype == "int64":
            return integer_scores(q, k)
        return q @ k.transpose(-2, -1)

    def weights(self, scores: torch.Tensor, start: int,
                sharpness: float | None = None) -> torch.Tensor:
        """Causal attention weights (B, H, T, Tk) of scores for queries at positions
        start..start+T-1 over keys 0..Tk-1: j <= p, or j < p for strict heads; a query with
        no candidate (strict, p = 0) gets weight 0 everywhere. Average-hard (uniform over
        the candidates with the row's maximal score) unless ``sharpness`` is given: then
        softmax(SOFTMAX_SCALE * sharpness * scores) (the differentiable mode)."""
        t, tk = scores.shape[-2:]
        at_q = torch.arange(start, start + t, device=scores.device)
        at_k = torch.arange(tk, device=scores.device)
        last = at_q[None, :, None] - self.strict.long()[:, None, None]  # (H, T, 1)
        allowed = at_k <= last  # (H, T, Tk)
        dtype = self.out.weight.dtype
        if sharpness is not None:
            soft = scores.to(dtype) * (SOFTMAX_SCALE * sharpness)
            weights = torch.softmax(soft.masked_fill(~allowed, float("-inf")), dim=-1)
            return torch.where(allowed.any(-1, keepdim=True), weights, 0.0)
        floor = (torch.iinfo if scores.dtype == torch.int64 else torch.finfo)(scores.dtype).min
        masked = scores.masked_fill(~allowed, floor)
        best = (masked == masked.amax(-1, keepdim=True)) & allowed
        hits = best.to(dtype)
        return hits / hits.sum(-1, keepdim=True).clamp(min=1)

    def merge(self, y: torch.Tensor) -> torch.Tensor:
        """(B, H, T, d_v) head outputs -> (B, T, d_model) through the output map."""
        b, _, t, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, self.n_head * self.d_v))

    def forward(self, x: torch.Tensor, start: int, cache: LayerCache | None) -> torch.Tensor:
        q, k, v = self.project(x)  # (B, H, T, .)
        if cache is not None:
            k, v = cache.extend(start, k, v)  # (B, H, start+T, .)
        b, h, t, _ = q.shape
        block = max(1, SCORE_BLOCK // (b * h * k.shape[2]))  # queries per block of scores
        y = [self.weights(self.scores(q[:, :, i:i + block], k), start + i) @ v
             for i in range(0, t, block)]
        return self.merge(torch.cat(y, dim=2))


class FeedForward(nn.Module):
    """Gated ReLU: hidden unit i is relu(gate_i . x) * (up_i . x).

    ``guards[i]`` holds up to two residual dimensions (-1: none) whose value 0 shuts unit i's
    gate, as the compiler proved from the graph's ranges (``compiler.guards``). The forward
    pass does not use them; a sparse decoder may skip the unit's rows (``engine.fast``)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.up = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        self.register_buffer("guards", torch.full((cfg.d_ff, GUARDS_PER_UNIT), -1))

    def forward(self, x: torch.Tensor, activation=torch.relu) -> torch.Tensor:
        """``activation`` replaces relu only in the differentiable mode's smooth surrogate."""
        return self.down(activation(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn = Attention(cfg)
        self.ffn = FeedForward(cfg)

    def forward(self, x: torch.Tensor, start: int, cache: LayerCache | None) -> torch.Tensor:
        x = x + self.attn(x, start, cache)
        return x + self.ffn(x)


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.info: dict = {}  # model card and numerics report, set by build/load
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.wpe = nn.Linear(2, cfg.d_model, bias=False)  # [p, p**2] -> residual
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.to(cfg.torch_dtype).requires_grad_(False).eval()

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, vocab) for token ids (B, T), each position seeing only its prefix."""
        return self.run(tokens, 0, None)

    def new_cache(self, batch: int = 1) -> KVCache:
        return KVCache(self.config, batch, self.lm_head.weight.device)

    def step(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits (B, vocab) after appending one token per sequence (B,) to ``cache``."""
        return self.run(tokens.view(-1, 1), cache.length, cache)[:, -1]

    def run(self, tokens: torch.Tensor, start: int, cache: KVCache | None) -> torch.Tensor:
        """Logits (B, T, vocab) for tokens (B, T) at positions start.., extending ``cache``."""
        b, t = tokens.shape
        check_runtime(self.config.torch_dtype, start + t, self.config.max_len)
        p = torch.arange(start, start + t, dtype=self.config.torch_dtype, device=tokens.device)
        x = self.wte(tokens) + self.wpe(torch.stack([p, p * p], dim=-1))  # (B, T, d_model)
        for i, block in enumerate(self.blocks):
            x = block(x, start, None if cache is None else cache.layers[i])
        if cache is not None:
            cache.length = start + t
        return self.lm_head(x)

    @torch.no_grad()
    def generate(self, prompt: list[int], max_new_tokens: int,
                 stop: int | tuple[int, ...] = ()) -> list[int]:
        """Greedy decoding with the KV cache: the new tokens (a stop token included, last)."""
        if not prompt:
            raise ValueError("generate needs a non-empty prompt")
        stops = {stop} if isinstance(stop, int) else set(stop)
        device = self.lm_head.weight.device
        cache = self.new_cache()
        logits = self.run(torch.tensor([prompt], device=device), 0, cache)[:, -1]
        new: list[int] = []
        while len(new) < max_new_tokens:
            new.append(int(logits.argmax(-1)))
            if new[-1] in stops or len(new) == max_new_tokens:
                break
            logits = self.step(torch.tensor([new[-1]], device=device), cache)
        return new


def integer_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """q @ k^T (B, H, T, Tk) in exact int64 for float tensors holding exact integers (each
    below 2**53; the numerics guard proves every partial sum below 2**63). On the CPU one
    int64 matmul. Elsewhere (CUDA has no int64 matmul) each operand is split into three
    21-bit limbs (exact float64 arithmetic: floor of a power-of-two multiple), the nine limb
    products are float64 matmuls whose sums stay below 2**53 (d_qk * 2**42), and they are
    recombined in int64 (wrapping arithmetic: the exact total is below 2**63, so the
    wrapped sum is that total)."""
    if q.device.type == "cpu":
        return q.long() @ k.long().transpose(-2, -1)
    return limb_scores(q, k)


def limb_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``integer_scores`` by float64 matmuls of 21-bit limbs (any device)."""
    if q.shape[-1] >= 2**(53 - 2 * _LIMB):
        raise ValueError("limb_scores: d_qk too wide for exact limb products")
    qs, ks = _limbs(q.double()), _limbs(k.double().transpose(-2, -1))
    total = torch.zeros(q.shape[:-1] + k.shape[-2:-1], dtype=torch.int64, device=q.device)
    for i, a in enumerate(qs):
        for j, b in enumerate(ks):
            if _LIMB * (i + j) < 64:  # the others are multiples of 2**64: 0 when wrapped
                total += (a @ b).long() << (_LIMB * (i + j))
    return total


def _limbs(x: torch.Tensor) -> list[torch.Tensor]:
    """x = x0 + x1 * 2**21 + x2 * 2**42 with 0 <= x0, x1 < 2**21 (all exact in float64)."""
    parts = []
    for _ in range(2):
        high = torch.floor(x * 2.0**-_LIMB)
        parts.append(x - high * 2.0**_LIMB)
        x = high
    return [*parts, x]
