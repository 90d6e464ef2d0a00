"""The official spec test suite's execution assertions, run on the reference machine.

Every ``module``/``register``/``action``/``assert_return``/``assert_trap``/
``assert_exhaustion``/``assert_uninstantiable`` command of each .wast script
runs, in order, so instance state evolves as the suite expects. An
assertion is *counted* when all its arguments and expected results are
i32/i64 (``is_integer_only``); counted assertions must all pass. A counted
assertion whose call reaches a float instruction traps "unsupported": it is
*excluded* (never passed). Assertions with other value types still run, for
their effect on state, and are tallied apart (``other_ok``).

``python tests/test_spec_exec.py`` prints the per-file table.
"""

from __future__ import annotations

import math
import struct
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from spec_suite import WAST_NAMES, is_integer_only, module_bytes, spec_script  # noqa: E402

from wasmformer.errors import LinkError, Trap, WasmformerError  # noqa: E402
from wasmformer.machine import ExternRef, Instance, Linker, SpectestHost  # noqa: E402
from wasmformer.wasm import load_module  # noqa: E402

EXEC_COMMANDS = ("assert_return", "assert_trap", "assert_exhaustion", "action")
WIDTH = {"i32": 32, "i64": 64, "f32": 32, "f64": 64}


@dataclass
class Tally:
    passed: int = 0
    failed: int = 0
    excluded: int = 0
    other_ok: int = 0  # non-integer assertions that also pass (not counted)
    other_bad: int = 0  # non-integer assertions that fail or need floats (not counted)
    failures: list[str] = field(default_factory=list)


def arg_value(v: dict):
    t, s = v["type"], v["value"]
    if t in WIDTH:
        return int(s)
    if s == "null":
        return None
    return ExternRef(int(s)) if t == "externref" else s


def matches(expected: dict, actual) -> bool:
    t, s = expected["type"], expected.get("value")
    if t in ("i32", "i64"):  # the JSON may spell a value signed or unsigned
        return isinstance(actual, int) and actual % (1 << WIDTH[t]) == int(s) % (1 << WIDTH[t])
    if t in ("f32", "f64"):
        if not isinstance(actual, int):
            return False
        if isinstance(s, str) and s.startswith("nan:"):
            fmt = "<f" if t == "f32" else "<d"
            raw = struct.pack("<I" if t == "f32" else "<Q", actual)
            return math.isnan(struct.unpack(fmt, raw)[0])
        return actual == int(s) % (1 << WIDTH[t])
    if s == "null":
        return actual is None
    if t == "externref":
        return actual == ExternRef(int(s))
    return actual is not None  # a non-null funcref


class ScriptRunner:
    """Runs one script's commands against the reference machine."""

    def __init__(self, name: str):
        self.name = name
        self.linker = Linker(SpectestHost())
        self.named: dict[str, Instance] = {}
        self.current: Instance | None = None
        self.tally = Tally()

    def run(self) -> Tally:
        commands, folder = spec_script(self.name)
        for cmd in commands:
            kind = cmd["type"]
            if kind == "module":
                self.instantiate(cmd, folder)
            elif kind == "register":
                inst = self.named.get(cmd.get("name")) if cmd.get("name") else self.current
                if inst is not None:
                    self.linker.register(cmd["as"], inst)
            elif kind in EXEC_COMMANDS:
                self.assertion(cmd)
            elif kind == "assert_uninstantiable":
                self.uninstantiable(cmd, folder)
        return self.tally

    def instantiate(self, cmd: dict, folder: Path) -> None:
        self.current = None
        try:
            self.current = Instance(load_module(module_bytes(folder, cmd)), host=self.linker)
        except WasmformerError as e:
            self.fail(cmd, f"module did not instantiate: {e}", counted=True)
            return
        if cmd.get("name"):
            self.named[cmd["name"]] = self.current

    def uninstantiable(self, cmd: dict, folder: Path) -> None:
        try:
            Instance(load_module(module_bytes(folder, cmd)), host=self.linker)
        except Trap as e:
            if e.reason.startswith(cmd["text"]):
                self.tally.passed += 1
                return
            self.fail(cmd, f"trapped {e.reason!r}, expected {cmd['text']!r}", counted=True)
            return
        except (LinkError, WasmformerError) as e:
            self.fail(cmd, f"refused: {e}", counted=True)
            return
        self.fail(cmd, "instantiated, expected a trap", counted=True)

    def assertion(self, cmd: dict) -> None:
        counted = cmd["type"] != "action" and is_integer_only(cmd)
        action = cmd["action"]
        inst = self.named[action["module"]] if action.get("module") else self.current
        if inst is None:
            self.fail(cmd, "no module to run against", counted)
            return
        try:
            if action["type"] == "get":
                results = [inst.global_value(action["field"])]
            else:
                results = inst.invoke(action["field"], [arg_value(a) for a in action["args"]])
        except Trap as e:
            if e.reason.startswith("unsupported:"):
                self.excluded(counted)
            elif cmd["type"] in ("assert_trap", "assert_exhaustion") and e.reason.startswith(cmd["text"]):
                self.ok(counted)
            else:
                self.fail(cmd, f"trap {e.reason!r}", counted)
            return
        if cmd["type"] in ("assert_trap", "assert_exhaustion"):
            self.fail(cmd, f"returned {results}, expected trap {cmd['text']!r}", counted)
        elif cmd["type"] == "action":
            pass
        elif len(results) == len(cmd["expected"]) and all(
                matches(e, r) for e, r in zip(cmd["expected"], results, strict=True)):
            self.ok(counted)
        else:
            self.fail(cmd, f"returned {results}, expected {cmd['expected']}", counted)

    def ok(self, counted: bool) -> None:
        if counted:
            self.tally.passed += 1
        else:
            self.tally.other_ok += 1

    def excluded(self, counted: bool) -> None:
        if counted:
            self.tally.excluded += 1
        else:
            self.tally.other_bad += 1

    def fail(self, cmd: dict, message: str, counted: bool) -> None:
        if not counted:
            self.tally.other_bad += 1
            return
        self.tally.failed += 1
        field_ = cmd.get("action", {}).get("field", "")
        self.tally.failures.append(f"{self.name}.wast:{cmd['line']} {cmd['type']} {field_}: {message}")


@cache
def run_script(name: str) -> Tally:
    return ScriptRunner(name).run()


@pytest.mark.parametrize("name", WAST_NAMES)
def test_spec_file(name: str) -> None:
    tally = run_script(name)
    print(f"{name}: passed {tally.passed} failed {tally.failed} excluded {tally.excluded}")
    assert not tally.failures, "\n".join(tally.failures[:20])


def test_spec_totals() -> None:
    """The counted set is the size the suite promises (guards against silently counting nothing)."""
    tallies = [run_script(n) for n in WAST_NAMES]
    assert sum(t.failed for t in tallies) == 0
    assert sum(t.passed for t in tallies) >= 7000


def main() -> None:
    print(f"{'file':24} {'passed':>7} {'failed':>7} {'excluded':>9} {'other ok':>9} {'other':>6}")
    total = Tally()
    for name in WAST_NAMES:
        t = run_script(name)
        print(f"{name:24} {t.passed:7} {t.failed:7} {t.excluded:9} {t.other_ok:9} {t.other_bad:6}")
        for attr in ("passed", "failed", "excluded", "other_ok", "other_bad"):
            setattr(total, attr, getattr(total, attr) + getattr(t, attr))
        for f in t.failures[:5]:
            print("   ", f)
    print(f"{'TOTAL':24} {total.passed:7} {total.failed:7} {total.excluded:9} "
          f"{total.other_ok:9} {total.other_bad:6}")


if __name__ == "__main__":
    main()
