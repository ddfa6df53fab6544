"""A tiny dotted-path lookup into parsed JSON (``data``, ``paging.next.after``, ``items.0``).

Deliberately minimal: record and cursor locations in REST APIs are plain key paths, and a
pre-split tuple keeps the per-page cost to a few dict look-ups.
"""

from __future__ import annotations

from typing import Any

_MISSING = object()


def compile_path(path: str | None) -> tuple[str | int, ...]:
    """Split ``"a.b.0"`` (optionally ``"$.a.b"``) into look-up steps; ``""``/``"$"`` is the root."""
    if path is None:
        return ()
    path = path.strip()
    if path.startswith("$"):
        path = path[1:].lstrip(".")
    if not path:
        return ()
    steps: list[str | int] = []
    for part in path.split("."):
        if part.lstrip("-").isdigit():
            steps.append(int(part))
        else:
            steps.append(part)
    return tuple(steps)


def find(body: Any, steps: tuple[str | int, ...], default: Any = None) -> Any:
    """Follow ``steps`` into ``body``; ``default`` when any step is missing."""
    node = body
    for step in steps:
        if isinstance(step, int):
            if isinstance(node, list) and -len(node) <= step < len(node):
                node = node[step]
                continue
            if isinstance(node, dict) and str(step) in node:
                node = node[str(step)]
                continue
            return default
        if isinstance(node, dict):
            node = node.get(step, _MISSING)
            if node is _MISSING:
                return default
        else:
            return default
    return node


def has_path(body: Any, steps: tuple[str | int, ...]) -> bool:
    """True when every step of ``steps`` exists in ``body``."""
    return find(body, steps, _MISSING) is not _MISSING
