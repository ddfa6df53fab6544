"""The ``backfill`` variant of ``bench/run.py``: a 30-day single-run backfill against a slow API.

The demo API answers every request 200 ms late (``--latency-ms 200``) and limits the
payments source to 100 requests per second (``--rate-limit-scale 4``: 4 x its 25/s). The
source (written as YAML, as a user writes it) fetches its cursor-paginated
``/v1/charges`` (pages of 100; about 8 pages per day) with ``rate_limit: 100/s`` and
``max_concurrency: 8``. A range of 30 daily partitions is materialized in one run, in
process, with the endpoint's checks (as the UI's backfill runs them), on an ephemeral
instance like the ``ours`` variant (``dg.materialize``'s default: the event log in memory).
On a SQLite instance on disk (``dagster dev``) every event is also a write to disk: a
30-day run stores about 230 events (a materialization per partition and asset, a result
per partition and check, the run's own).

The floor is what the API allows: ``requests / min(rate limit, max_concurrency / latency)``
(240 requests at min(100, 8 / 0.2 = 40) per second: 6 s). ``backfill_vs_floor`` is the run's
wall time over that floor.

    python bench/run.py --variants backfill        # this variant alone
    python bench/backfill.py                       # the same, without the other variants
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

LATENCY_MS = 200.0
RATE_LIMIT = 100.0  # requests per second, on the server and in the source's YAML
MAX_CONCURRENCY = 8
DAYS = 30
LAST_DAY = "2025-02-28"  # the demo clock stops at 2025-03-01T00:00Z
SERVER_ARGS = ["--latency-ms", str(LATENCY_MS), "--rate-limit-scale", str(RATE_LIMIT / 25)]

BACKFILL_YAML = """\
sources:
  - name: payments
    base_url: {base}
    auth: {{type: bearer, token: {{env: DEMO_PAYMENTS_KEY}}}}
    rate_limit: {{requests_per_second: {rate}, burst: {rate}}}
    max_concurrency: {concurrency}
    endpoints:
      - name: charges
        path: /v1/charges
        records_path: data
        primary_key: id
        params: {{limit: 100}}
        pagination: {{type: cursor, cursor_param: starting_after, cursor_field: id, has_more_path: has_more}}
        partitioning: {{type: daily, start: "2025-01-01"}}
        window: {{start_param: "created[gte]", end_param: "created[lt]", format: unix}}
        timestamp_fields: [created]
"""


def _days(count: int) -> list[str]:
    import datetime as dt

    last = dt.date.fromisoformat(LAST_DAY)
    return [(last - dt.timedelta(days=count - 1 - i)).isoformat() for i in range(count)]


def _stats(url: str, reset: bool = False) -> dict[str, Any]:
    from ingestion_assets.demo_api import CONTROL_HEADERS

    if reset:
        response = requests.post(f"{url}/_control/stats/reset", headers=CONTROL_HEADERS,
                                 timeout=10)
    else:
        response = requests.get(f"{url}/_control/stats", headers=CONTROL_HEADERS, timeout=10)
    response.raise_for_status()
    return response.json()


def _step_seconds(instance: Any, run_id: str) -> dict[str, float]:
    steps = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is not None and event.is_step_success:
            steps[event.step_key] = round(event.event_specific_data.duration_ms / 1000, 3)
    return steps


def variant_backfill(url: str, workdir: Path, days: int = DAYS) -> dict[str, Any]:
    """Materialize ``days`` daily partitions in one run; wall time, requests, the floor."""
    import dagster as dg

    from ingestion_assets.definitions import build_definitions
    from ingestion_assets.demo_api.credentials import ENV_VARS
    from ingestion_assets.specs import load_sources

    os.environ.update(ENV_VARS)
    yaml_path = workdir / "sources" / "backfill.yaml"
    yaml_path.parent.mkdir(parents=True, exist_ok=True)
    yaml_path.write_text(BACKFILL_YAML.format(base=url + "/payments", rate=RATE_LIMIT,
                                              concurrency=MAX_CONCURRENCY))
    sources = load_sources(str(yaml_path.parent))
    defs = build_definitions(sources, str(workdir / "data"))
    keys = _days(days)
    with dg.DagsterInstance.ephemeral() as instance:
        _stats(url, reset=True)
        started = time.perf_counter()
        result = dg.materialize(
            [*defs.assets, *defs.asset_checks], resources=defs.resources, instance=instance,
            tags={"dagster/asset_partition_range_start": keys[0],
                  "dagster/asset_partition_range_end": keys[-1]},
            raise_on_error=False,
        )
        seconds = time.perf_counter() - started
        if not result.success:
            raise RuntimeError("the backfill run failed")
        steps = _step_seconds(instance, result.run_id)
        events = result.get_asset_materialization_events()
        partitions = {e.partition for e in events}
        rows = sum(  # the table's rows (the raw asset's events carry no row count)
            int(e.materialization.metadata["dagster/row_count"].value) for e in events
            if "dagster/row_count" in e.materialization.metadata
        )
    server = _stats(url)["sources"]["payments"]
    if len(partitions) != days:
        raise RuntimeError(f"{len(partitions)} partitions materialized, expected {days}")
    rate = min(RATE_LIMIT, MAX_CONCURRENCY / (LATENCY_MS / 1000))
    floor = server["requests"] / rate
    return {
        "seconds": round(seconds, 3), "partitions": len(partitions), "records": rows,
        "requests": server["requests"], "peak_in_flight": server["peak_in_flight"],
        "floor_s": round(floor, 3), "backfill_vs_floor": round(seconds / floor, 2),
        "steps_s": steps, "latency_ms": LATENCY_MS, "rate_limit": RATE_LIMIT,
        "max_concurrency": MAX_CONCURRENCY,
    }


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import DemoServer

    with DemoServer(None, extra=SERVER_ARGS) as server:
        with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp:
            print(json.dumps(variant_backfill(server.url, Path(tmp))))


if __name__ == "__main__":
    main()
