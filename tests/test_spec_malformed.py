"""The decoder against the official spec suite's binary modules.

Every ``assert_malformed`` binary module must be rejected by ``decode`` alone
with MalformedModule; every module the suite expects to be well formed
(``module``, ``assert_invalid``, ``assert_uninstantiable``) must decode.
"""

from __future__ import annotations

import pytest
from spec_suite import WAST_NAMES, module_bytes, spec_script

from wasmformer.errors import MalformedModule
from wasmformer.wasm.decode import decode

WELL_FORMED = ("module", "assert_invalid", "assert_uninstantiable")

# The spec interpreter reads a section or body past its declared size and only
# then compares sizes, so for these cases its first complaint differs from ours
# (we stop at the section/function boundary). The verdict, malformed, agrees.
MAX_WORDING_DIFFERENCES = 6


def _binary_commands(name: str, kinds: tuple[str, ...]) -> list[tuple[dict, bytes]]:
    commands, out_dir = spec_script(name)
    return [
        (c, module_bytes(out_dir, c))
        for c in commands
        if c["type"] in kinds and c.get("module_type", "binary") == "binary" and "filename" in c
    ]


@pytest.mark.parametrize("name", WAST_NAMES)
def test_malformed_binaries_are_rejected(name: str) -> None:
    failures = []
    for command, data in _binary_commands(name, ("assert_malformed",)):
        try:
            decode(data)
        except MalformedModule:
            continue
        failures.append(f"line {command['line']}: accepted, expected {command['text']!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", WAST_NAMES)
def test_well_formed_binaries_decode(name: str) -> None:
    failures = []
    for command, data in _binary_commands(name, WELL_FORMED):
        try:
            decode(data)
        except MalformedModule as error:
            failures.append(f"line {command['line']} ({command['type']}): {error}")
    assert not failures, "\n".join(failures)


def test_malformed_counts_and_wording() -> None:
    """All ~155 malformed binaries are seen, and nearly all messages start with the spec's words."""
    total, differences = 0, []
    for name in WAST_NAMES:
        for command, data in _binary_commands(name, ("assert_malformed",)):
            total += 1
            with pytest.raises(MalformedModule) as caught:
                decode(data)
            if not caught.value.message.startswith(command["text"]):
                differences.append(f"{name}:{command['line']} want {command['text']!r}, got {caught.value}")
    print(f"{total} malformed binaries rejected, {total - len(differences)} with the spec's wording")
    assert total >= 150
    assert len(differences) <= MAX_WORDING_DIFFERENCES, "\n".join(differences)
