"""The benchmark runs end to end (tiny sizes); no timing is asserted, only that it completes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the benchmark, with its own servers and processes

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"ours_vs_ceiling", "ours_vs_dlt", "peak_rss_mb", "rss_growth_100k_to_1m", "workers8_vs_1"}


def test_bench_quick_prints_the_summary_json_last():
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1])
    assert KEYS <= set(summary)
    # Every variant stored every record (each variant checks its count, or the run fails).
    assert set(summary["records_per_s"]) == {"ceiling", "ours", "dlt"}
    assert all(value is not None for key, value in summary.items() if key in KEYS)
    assert "same server" in done.stdout  # the fairness note is printed
