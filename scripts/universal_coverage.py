"""Coverage of the universal interpreter graph on the C examples: the share of executed
fused steps whose instruction the graph executes (``universal.supported``), and what the
rest is. Usage: PYTHONPATH=src python scripts/universal_coverage.py [NAME ...]"""

from __future__ import annotations

import collections
import re
import sys
from pathlib import Path

import wasmformer
from wasmformer.universal import supported

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def coverage(name: str) -> tuple[float, collections.Counter]:
    result = wasmformer.trace(EXAMPLES / f"{name}.c")
    fused = result.trace.fused
    missing = {int(m.group(1)): m.group(2) for p in supported(fused)
               if (m := re.match(r"pc (\d+): (.*)", p))}
    steps = [pc for pc in result.trace.pcs if pc >= 0]
    rest = collections.Counter(_kind(missing[pc]) for pc in steps if pc in missing)
    return 1 - sum(rest.values()) / len(steps), rest


def _kind(problem: str) -> str:
    return "host call" if "host call" in problem else problem.split()[0]


def main(names: list[str]) -> None:
    names = names or sorted(p.stem for p in EXAMPLES.glob("*.c"))
    for name in names:
        share, rest = coverage(name)
        top = ", ".join(f"{k} {n}" for k, n in rest.most_common(5))
        print(f"{name:10s} {100 * share:5.1f}%   not covered: {top}")


if __name__ == "__main__":
    main(sys.argv[1:])
