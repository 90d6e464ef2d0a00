"""What an invocation may execute that the universal graph does not cover.

``universal.supported(fused)`` lists the program's instructions outside the graph, as
``pc N: ...``. An invocation can only execute the functions reachable from the invoked one
(through ``call``; a ``call_indirect`` may reach any function), so the engine refuses an
invocation only when one of those holds an uncovered instruction: a module whose ``div``
sits in another export still runs its covered exports. A problem that names no pc refuses
every invocation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..machine.fuse import FusedProgram

_AT_PC = re.compile(r"pc (\d+): ")


@dataclass
class Coverage:
    fused: FusedProgram
    problems: list[str]
    by_func: dict[int, list[str]] = field(default_factory=dict)
    everywhere: list[str] = field(default_factory=list)  # problems that name no pc
    calls: dict[int, set[int]] = field(default_factory=dict)
    indirect: set[int] = field(default_factory=set)  # functions with a call_indirect

    def __post_init__(self) -> None:
        for problem in self.problems:
            at = _AT_PC.match(problem)
            if at is None:
                self.everywhere.append(problem)
            else:
                func = self.fused.code[int(at[1])].func
                self.by_func.setdefault(func, []).append(problem)
        for fi in self.fused.code:
            if fi.op == "call":
                self.calls.setdefault(fi.func, set()).add(fi.args[0])
            elif fi.op == "call_indirect":
                self.indirect.add(fi.func)

    def uncovered(self, func: int) -> list[str]:
        """The uncovered instructions an invocation of ``func`` may reach, in pc order."""
        if self.everywhere:
            return self.everywhere
        reached, todo = {func}, [func]
        while todo:
            f = todo.pop()
            if f in self.indirect:  # any function may be called: all of them count
                reached = {fi.func for fi in self.fused.code}
                break
            for callee in self.calls.get(f, ()):
                if callee not in reached:
                    reached.add(callee)
                    todo.append(callee)
        found = [p for f in reached for p in self.by_func.get(f, [])]
        return sorted(found, key=lambda p: int(_AT_PC.match(p)[1]))  # type: ignore[index]
