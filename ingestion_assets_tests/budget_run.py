"""Materialize every asset of a source file in this process and report how it ended.

``python -m ingestion_assets_tests.budget_run SOURCES.yaml DATA_DIR`` prints one JSON line:
whether the run succeeded, the step failure messages, the wall time and this process's
peak resident memory (the kernel's ``VmHWM``), so a test can run a hostile scenario in a
process of its own and measure what it cost.

``getrusage(RUSAGE_SELF).ru_maxrss`` would not do: Linux carries it over a fork and an
exec, so a child of a large pytest process reports the parent's peak. ``VmHWM`` belongs to
the address space, which the exec makes anew.
"""

from __future__ import annotations

import json
import sys
import time


def main(sources_file: str, data_dir: str) -> dict:
    started = time.monotonic()
    import dagster as dg

    from ingestion_assets.definitions import build_definitions
    from ingestion_assets.factory import build_assets
    from ingestion_assets.specs import load_sources

    sources = load_sources([sources_file])
    defs = build_definitions(sources, data_dir)
    result = dg.materialize(
        build_assets(sources),
        resources=defs.resources,
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    failures = [
        _messages(event.event_specific_data.error)
        for event in result.all_events
        if event.is_step_failure
    ]
    return {
        "success": result.success,
        "failures": failures,
        "seconds": round(time.monotonic() - started, 2),
        "peak_rss_mb": _peak_rss_mb(),
    }


def _peak_rss_mb() -> float:
    """This process's own peak resident memory, in MB (``VmHWM`` is in kB)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("/proc/self/status has no VmHWM line")


def _messages(error) -> str:
    """The error's message and its causes' (Dagster wraps an IO manager's error)."""
    parts = []
    while error is not None:
        parts.append(error.message.strip())
        error = error.cause
    return " <- ".join(parts)


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
