"""Rules of the code itself: no function in `ingestion_assets/` (the demo API aside) is longer
than 80 lines. (No `dagster._` import outside the shim: `test_dagster_shim.py`.)

A function's length is from its ``def`` line to its last line, nested functions included, as a
reader scrolls through it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ingestion_assets"
MAX_LINES = 80
#: Not held to the rule: the demo API (a test double, not the product).
EXEMPT_FOLDERS = {"demo_api"}


def function_lengths() -> dict[str, tuple[str, int]]:
    """``module.function`` -> (where it is, how many lines), for every function of the package
    (methods and nested functions too) outside the exempt folders."""
    found: dict[str, tuple[str, int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if EXEMPT_FOLDERS & set(relative.parts):
            continue
        module = relative.with_suffix("").as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                name = f"{module}.{node.name}"
                where = f"ingestion_assets/{relative.as_posix()}:{node.lineno} {node.name}"
                if length > found.get(name, ("", 0))[1]:
                    found[name] = (where, length)
    return found


def test_no_function_is_longer_than_80_lines():
    lengths = function_lengths()
    assert len(lengths) > 100, "the package's functions were not found: the test proves nothing"
    too_long = sorted(
        f"{where} is {length} lines (at most {MAX_LINES})"
        for name, (where, length) in lengths.items()
        if length > MAX_LINES
    )
    assert not too_long, "split these functions:\n" + "\n".join(too_long)

