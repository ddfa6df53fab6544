"""End to end: the Dagster daemon keeps a table current with no one pressing a button.

The demo API and ``dagster-daemon run`` start on a temporary DAGSTER_HOME with the demo
commerce config (its incremental sensor turned on in the YAML, polling every 2 s through
``INGESTION_POLL_SECONDS``). Once the sensor has taken its first look, the demo API changes
orders of a past day through ``POST /_control/mutations``; the test then only waits: the sensor
requests that day's partition, the daemon launches the run, and the changed orders land in
Parquet with their new ``updated_at``.

The demo API's clock is frozen at the wall-clock time of the start, so the generated records'
own (pending) updates do not change during the test; only the mutation does.
"""

import datetime as dt
import os
import sys
import time

import dagster as dg
import pyarrow.dataset as ds
import pytest
import requests

from ingestion_assets.demo_api import CONTROL_HEADERS
from ingestion_assets.io_managers.parquet import current_parquet_files
from ingestion_assets_tests.e2e.harness import (
    REPO_ROOT,
    VENV_BIN,
    demo_env,
    free_port,
    started,
    wait_for_http,
    wait_until,
)

pytestmark = pytest.mark.slow  # the daemon and its code server

UTC = dt.timezone.utc
SENSOR = "commerce__orders_changes"
TIMEOUT = 180


def _finished_ticks(instance: dg.DagsterInstance) -> list:
    """The sensor's ticks that have finished (a tick is stored as STARTED while it runs)."""
    for state in instance.all_instigator_state():
        if state.name == SENSOR:
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=5)
            return [t for t in ticks if t.status.value != "STARTED"]
    return []


def test_sensor_requested_run_lands_changed_orders_in_parquet(tmp_path, monkeypatch):
    started_at = time.monotonic()
    home, data = tmp_path / "dagster_home", tmp_path / "data"
    home.mkdir()
    data.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "instance" / "dagster.yaml").read_text())
    frozen = dt.datetime.now(UTC).replace(microsecond=0)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "INGESTION_SOURCES"},
        **demo_env(),
        "DAGSTER_HOME": str(home),
        "INGESTION_DATA_DIR": str(data),
        "DEMO_API_URL": f"http://127.0.0.1:{port}",
        "INGESTION_SOURCES": str(REPO_ROOT / "ingestion_assets/defs/commerce/defs.yaml"),
        "INGESTION_POLL_SECONDS": "2",
    }
    api_cmd = [sys.executable, "-m", "ingestion_assets.demo_api", "--port", str(port),
               "--now", frozen.isoformat()]
    daemon_cmd = [str(VENV_BIN / "dagster-daemon"), "run", "-m", "ingestion_assets.definitions"]
    log = tmp_path / "daemon.log"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance, started(api_cmd, env, tmp_path / "demo_api.log") as api:
        # Create the SQLite storages before the daemon and its code server race to do it.
        instance.get_runs(limit=1)
        instance.all_instigator_state()
        instance.get_latest_materialization_event(dg.AssetKey("none"))
        wait_for_http(f"http://127.0.0.1:{port}/", 30, api)
        with started(daemon_cmd, env, log) as daemon:
            # 1. The sensor's first tick sets its watermark (and requests nothing).
            first = wait_until(
                "the sensor's first tick", lambda: _finished_ticks(instance), TIMEOUT, log
            )
            assert daemon.poll() is None
            assert first[-1].status.value in ("SKIPPED", "SUCCESS"), first[-1].error

            # 2. Orders created three days ago change at the source.
            day = (frozen - dt.timedelta(days=3)).date()
            window = [f"{day}T00:00:00Z", f"{day + dt.timedelta(days=1)}T00:00:00Z"]
            resp = requests.post(
                f"http://127.0.0.1:{port}/_control/mutations",
                json={"source": "commerce", "endpoint": "orders", "update": 3, "window": window},
                headers=CONTROL_HEADERS, timeout=10,
            )
            resp.raise_for_status()
            changed = resp.json()["updated"]
            assert len(changed) == 3

            # 3. No manual step: the daemon's sensor requests that day and the run succeeds.
            def finished_run():
                runs = instance.get_runs(dg.RunsFilter(tags={
                    "dagster/sensor_name": SENSOR, "dagster/partition": day.isoformat(),
                }))
                for run in runs:
                    if run.status == dg.DagsterRunStatus.FAILURE:
                        raise AssertionError(f"sensor-requested run {run.run_id} failed")
                    if run.status == dg.DagsterRunStatus.SUCCESS:
                        return run
                return None

            run = wait_until(f"a successful sensor run for {day}", finished_run, TIMEOUT, log)
            assert run.tags["ingestion/trigger"] == "changes"
            assert run.tags["ingestion/changed_records"] == "3"

    # 4. The changed orders are in the day's Parquet partition with their new update time.
    table = ds.dataset(current_parquet_files(data / "commerce" / "orders" / f"date={day}"),
                       format="parquet").to_table(
        columns=["id", "updated_at"]
    )
    updated = {
        row["id"]: row["updated_at"] for row in table.to_pylist() if row["id"] in set(changed)
    }
    assert set(updated) == set(changed)
    for value in updated.values():
        assert value.astimezone(UTC) == frozen  # the mutation's time, not the original
    print(f"daemon e2e: {time.monotonic() - started_at:.1f} s")
