"""Two small example graphs (documentation, and fixtures for the compiler/model tests).

Each comes with a plain-Python reference of what the graph should emit, written
without the graph, so a test can check graph and reference against each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from .functions import equals, piecewise_linear, product
from .graph import Graph
from .output import emit_token_id
from .ranges import Range

# ---- (a) running sum mod 10 --------------------------------------------------------


def running_sum(max_len: int = 512) -> Graph:
    """Tokens are the digits 0..9; after each token emit (sum of all digits so far) mod 10.

    The sum S(p) = (p + 1) * mean(digit over 0..p): one mean head, then one product unit
    (p + 1 is a non-negative integer), then S mod 10 as the piecewise-linear function
    through (s, s mod 10) for every integer s in 0..9*max_len (2 units per tooth).
    """
    g = Graph(vocab_size=10, max_len=max_len)
    digit = g.token_feature("digit", list(range(10)))
    p = g.position()
    average = g.mean("digit_mean", digit)
    top = 9 * max_len
    total = product(g, p + 1, average, name="digit_sum", range=Range(0, top, integer=True))
    last_digit = piecewise_linear(g, total, [(s, s % 10) for s in range(top + 1)],
                                  name="sum_mod_10")
    emit_token_id(g, last_digit)
    return g


def running_sum_reference(tokens: list[int]) -> list[int]:
    """The token the running-sum machine emits after each position."""
    out, total = [], 0
    for t in tokens:
        total += t
        out.append(total % 10)
    return out


# ---- (b) memory machine ----------------------------------------------------------


@dataclass(frozen=True)
class MemoryVocab:
    """Token ids: ``W`` = 0, ``R`` = 1, address a = 2 + a, value v = 2 + addresses + v."""

    addresses: int
    values: int
    W = 0
    R = 1

    def address(self, a: int) -> int:
        return 2 + a

    def value(self, v: int) -> int:
        return 2 + self.addresses + v

    @property
    def size(self) -> int:
        return 2 + self.addresses + self.values


def memory(addresses: int = 8, values: int = 8, max_len: int = 512) -> Graph:
    """A write/read memory: ``W a v`` writes v to address a; after every address token
    (so after ``R a``) emit the value token last written to a (value 0 if never written).

    A *write* is a value token right after an address token; after a non-address token
    the machine emits value 0. Any token sequence is accepted. Two lookups:
      prev:   query p - 1, key p  -> the address (or -1) of the previous token
              (at p = 0 the only candidate is position 0 itself);
      memory: key = prev - (A + 1) * (1 - is_value): the address written at a value token
              (-1 if the value did not follow an address), in -A-2..-2 elsewhere;
              query = this token's address, or -(A + 3) (equal to no key) if it has none;
              ties go to the latest write.
    Miss detection: the read is the found value only when matched_key == query.
    """
    vocab = MemoryVocab(addresses, values)
    g = Graph(vocab_size=vocab.size, max_len=max_len)
    address = g.token_feature("address", [-1, -1] + list(range(addresses)) + [-1] * values)
    is_value = g.token_feature("is_value", [0] * (2 + addresses) + [1] * values)
    value = g.token_feature("value", [0] * (2 + addresses) + list(range(values)))
    no_read = -(addresses + 3)
    read_address = g.token_feature("read_address", [no_read] * 2 + list(range(addresses))
                                   + [no_read] * values)
    p = g.position()
    prev = g.lookup("prev", query=p - 1, key=p, values=[address])
    write_key = prev.results[0] - (addresses + 1) * (1 - is_value)
    mem = g.lookup("memory", query=read_address, key=write_key, values=[value])
    hit_value = mem.results[0]
    read = equals(g, mem.matched_key - read_address, 0, times=hit_value, name="read")
    emit_token_id(g, read + vocab.value(0))
    return g


def memory_reference(tokens: list[int], vocab: MemoryVocab) -> list[int]:
    """The token the memory machine emits after each position."""
    cells: dict[int, int] = {}
    out = []
    for i, t in enumerate(tokens):
        is_addr = 2 <= t < 2 + vocab.addresses
        is_val = t >= 2 + vocab.addresses
        prev = tokens[i - 1] if i > 0 else None
        if is_val and prev is not None and 2 <= prev < 2 + vocab.addresses:
            cells[prev - 2] = t - 2 - vocab.addresses
        out.append(vocab.value(cells.get(t - 2, 0) if is_addr else 0))
    return out
