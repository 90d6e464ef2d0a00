"""Host calls: which positions an engine wrote for one, so that they write no state.

The model cannot do I/O: at a host call's first token it writes ``CALL ff ff ff`` (the
import's ``FUNCS`` entry), and the engine replaces that by the host call's tokens
(docs/PROTOCOL.md): the output tokens, the ``MEM`` runs of the memory it changed,
``JUMP r`` to the call's first ``result`` record, then the results as those records'
spans. Before the ``JUMP`` re-anchors, X drifts past the call into the next records'
spans, so those positions must carry no stack, local, store or global key (a ``MEM``
run's bytes keep their own memory keys, ``memory.py``). ``spliced`` is 1 exactly there:

  an output token (``out:XX``, ``err:XX``), a ``MEM`` marker and its 6 header tokens, a
  run's bytes, a ``JUMP`` marker and its first two payload bytes (its last one is an
  anchor end, already excluded: ``locate.header_offsets``), an ``EXIT`` and its code.

A ``JUMP`` of a branch has the branch's X, which ends no value, so excluding every
``JUMP`` changes nothing there; output, ``MEM`` and ``EXIT`` tokens come only from host
calls (and the prompt's ``DATA`` runs, which need no exclusion but get it harmlessly).
The node sits at block 3 (after the run's header read), well before the keys' readers.
"""

from __future__ import annotations

from wasmformer.graph import Graph, Linear, Node

from . import units as U
from .memory import RUN_HEADER
from .window import Window

JUMP_PAYLOAD = 3
EXIT_PAYLOAD = 4


def window_needs() -> dict[int, set[str]]:
    needs: dict[int, set[str]] = {0: {"is_output"}}
    for d in range(RUN_HEADER + 1):
        needs.setdefault(d, set()).add("MEM")
    for d in range(JUMP_PAYLOAD):
        needs.setdefault(d, set()).add("JUMP")
    for d in range(EXIT_PAYLOAD + 1):
        needs.setdefault(d, set()).add("EXIT")
    return needs


def spliced(g: Graph, window: Window, in_run: Node) -> Node:
    """1 at a host call's tokens before its ``JUMP`` ends (and at ``EXIT`` and its code)."""
    flags = window.at(0, "is_output") + in_run
    flags += sum((window.at(d, "MEM") for d in range(RUN_HEADER + 1)), start=Linear())
    flags += sum((window.at(d, "JUMP") for d in range(JUMP_PAYLOAD)), start=Linear())
    flags += sum((window.at(d, "EXIT") for d in range(EXIT_PAYLOAD + 1)), start=Linear())
    return U.node(g, "host.spliced", U.step(flags, 1), 0, 1)
