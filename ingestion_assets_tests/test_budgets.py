"""Hostile servers end a real Dagster run within budget, with a clear error.

Each scenario runs ``dg.materialize`` in a process of its own (``budget_run``), so its
peak memory is that run's alone; the hostile server runs here, on loopback. The figures
(peak memory, wall time) are printed (``pytest -s``) for the record; only memory is
asserted, against the 600 MB the project allows a run facing a gzip bomb.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ingestion_assets_tests.hostile import HostileServer, Reply, trickle
from ingestion_assets_tests.http.test_budgets import gzip_bomb

PEAK_MB = 600


def _yaml(server: HostileServer, endpoint: str, limits: str = "{}") -> str:
    return f"""
sources:
  - name: hostile
    base_url: {server.url}
    retry: {{max_attempts: 2, op_retries: 0, backoff_base_seconds: 0.01}}
    limits: {limits}
    endpoints:
      - name: {endpoint}
        path: /{endpoint}
        primary_key: id
"""


def _run(tmp_path: Path, yaml_text: str) -> dict:
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml_text)
    done = subprocess.run(
        [sys.executable, "-m", "ingestion_assets_tests.budget_run", str(sources),
         str(tmp_path / "data")],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\n{yaml_text.strip().splitlines()[-3].strip()}: {report}")
    return report


@pytest.fixture(scope="module")
def bomb() -> bytes:
    return gzip_bomb(1024)


def test_gzip_bomb_run_fails_at_the_default_body_budget(tmp_path, bomb):
    with HostileServer() as server:
        server.routes["/bomb"] = lambda seen: Reply(200, bomb, [("Content-Encoding", "gzip")])
        report = _run(tmp_path, _yaml(server, "bomb"))  # the default budget: 256 MiB
        assert not report["success"]
        (message,) = report["failures"]
        assert "larger than 256 MiB once decoded" in message and "not retried" in message
        assert len(server.seen) == 1
    assert report["peak_rss_mb"] < PEAK_MB


def test_huge_rate_limit_reset_fails_the_run_with_the_servers_value(tmp_path):
    with HostileServer() as server:
        def items(seen):
            page = int(seen.query.get("page", ["1"])[0])
            return Reply.json(
                [{"id": page}],
                headers=[("X-RateLimit-Remaining", "0"), ("X-RateLimit-Reset", "999999999")],
            )

        server.routes["/items"] = items
        text = _yaml(server, "items", "{max_wait_seconds: 30}").replace(
            "primary_key: id", "primary_key: id\n        pagination: {type: page_number, page_size: 1}"
        )
        report = _run(tmp_path, text)
        assert not report["success"]
        (message,) = report["failures"]
        assert "X-RateLimit-Reset: '999999999'" in message and "30 s cap" in message
        assert len(server.seen) == 1
    assert report["peak_rss_mb"] < PEAK_MB


def test_trickling_server_fails_the_run_at_the_request_deadline(tmp_path):
    body = b'[{"id": 1}]' + b" " * 600
    with HostileServer() as server:
        server.routes["/slow"] = lambda seen: Reply(200, trickle(body, 1.0), length=len(body))
        report = _run(tmp_path, _yaml(server, "slow", "{request_deadline_seconds: 2}"))
        assert not report["success"]
        (message,) = report["failures"]
        assert "request deadline of 2 s" in message and "gave up after 2 attempts" in message
        assert len(server.seen) == 2
    assert report["peak_rss_mb"] < PEAK_MB
