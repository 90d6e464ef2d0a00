"""The official spec suite's validation verdicts, file by file.

Every ``assert_invalid`` module must be refused by ``load_module`` (with the
suite's message when the validator is the one refusing), and every plain
``module`` must load.
"""

from __future__ import annotations

import pytest
from spec_suite import WAST_NAMES, module_bytes, spec_script

from wasmformer.errors import InvalidModule, MalformedModule
from wasmformer.wasm import load_module


def _where(name: str, command: dict) -> str:
    return f"{name}.wast:{command['line']} ({command['filename']})"


def _invalid_problem(name: str, out_dir, command: dict) -> str | None:
    """None if the module is refused as the suite expects, else what went wrong."""
    try:
        load_module(module_bytes(out_dir, command))
    except MalformedModule:
        return None  # refused by the decoder already: still not a valid module
    except InvalidModule as err:
        if err.message.startswith(command["text"]):
            return None
        return f"{_where(name, command)}: expected {command['text']!r}, got {err}"
    return f"{_where(name, command)}: accepted, expected {command['text']!r}"


def _valid_problem(name: str, out_dir, command: dict) -> str | None:
    try:
        load_module(module_bytes(out_dir, command))
    except (MalformedModule, InvalidModule) as err:
        return f"{_where(name, command)}: refused: {err}"
    return None


@pytest.mark.parametrize("name", WAST_NAMES)
def test_spec_validation_verdicts(name: str):
    commands, out_dir = spec_script(name)
    problems = []
    for command in commands:
        if command.get("module_type") != "binary":
            continue
        if command["type"] == "assert_invalid":
            problems.append(_invalid_problem(name, out_dir, command))
        elif command["type"] == "module":
            problems.append(_valid_problem(name, out_dir, command))
    problems = [p for p in problems if p is not None]
    assert not problems, f"{len(problems)} wrong verdict(s):\n" + "\n".join(problems)


def test_spec_suite_counts():
    """Guard against the suite silently shrinking: the numbers the brief was written for."""
    invalid = valid = 0
    for name in WAST_NAMES:
        commands, _ = spec_script(name)
        for c in commands:
            if c.get("module_type") == "binary":
                invalid += c["type"] == "assert_invalid"
                valid += c["type"] == "module"
    assert (invalid, valid) == (1293, 694)
