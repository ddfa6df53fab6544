"""Peak memory of materializing a large NDJSON export (issue 15): bounded by a piece, not the body.

Starts the demo API here, writes a one-endpoint source for its ``/v1/bulk.ndjson`` export
(``--rows`` rows of about ``--pad`` bytes: 1,000,000 x 1,000 is about 1 GB) and runs
``ingestion_assets_tests.budget_run`` in a process of its own, whose ``VmHWM`` is the run's
peak resident memory. Prints that process's JSON report with the body size added::

    .venv/bin/python -m bench.stream_memory --rows 1000000 --pad 1000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ingestion_assets.demo_api import DemoApi, DemoConfig, demo_env

_SOURCE = """
sources:
  - name: exports
    base_url: {url}/exports-api
    auth: {{type: api_key, name: X-Api-Key, location: header, key: {{env: DEMO_EXPORTS_KEY}}}}
    retry: {{op_retries: 0}}
    endpoints:
      - name: bulk
        path: /v1/bulk.ndjson
        format: {fmt}
        params: {{rows: {rows}, pad: {pad}}}
        primary_key: id
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pad", type=int, default=1000)
    args = parser.parse_args()
    with DemoApi(DemoConfig(seed=7, now="2025-03-01T00:00:00Z", rate_limit=False)).serve() as api, \
            tempfile.TemporaryDirectory(prefix="stream-memory-") as folder:
        sources = Path(folder) / "sources.yaml"
        sources.write_text(_SOURCE.format(url=api.url, fmt="ndjson", rows=args.rows, pad=args.pad))
        done = subprocess.run(
            [sys.executable, "-m", "ingestion_assets_tests.budget_run", str(sources),
             str(Path(folder) / "data")],
            capture_output=True, text=True, check=False, env={**os.environ, **demo_env()},
        )
        if done.returncode != 0:
            sys.exit(done.stderr[-3000:])
        report = json.loads(done.stdout.strip().splitlines()[-1])
        manifests = [json.loads(p.read_bytes())["totals"]
                     for p in (Path(folder) / "data").rglob("manifest.json")]
        report.update(rows=args.rows, pad=args.pad,
                      body_mb=round(sum(t["bytes"] for t in manifests) / 1e6, 1),
                      pages=sum(t["pages"] for t in manifests),
                      raw_archive_compressed_mb=round(
                          sum(t["compressed_bytes"] for t in manifests) / 1e6, 1))
        print(json.dumps(report))


if __name__ == "__main__":
    main()
