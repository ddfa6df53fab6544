"""A run over several endpoints with ``celery_executor``: Redis broker, a real Celery worker.

The worker is started by the test as a user starts one (``dagster-celery worker start`` with
``deploy/celery.yaml``) in its own process group, with the same ``deploy/dagster.yaml`` on
PostgreSQL; the run is launched with the Dagster CLI from another process, the executor chosen
by ``INGESTION_EXECUTOR=celery``. The test then reads, through the instance, that every step
ran in the worker's processes (its name on the worker's engine events, the pid of every step
event inside the worker's process group) and compares the landed Parquet with the demo API.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pyarrow.dataset as ds
import pytest

from ingestion_assets.io_managers.parquet import current_parquet_files
from ingestion_assets_tests.deploy.services import DEPLOY, REPO_ROOT, redis_url
from ingestion_assets_tests.e2e.harness import stop_group

UTC = dt.timezone.utc
VENV_BIN = Path(sys.executable).parent
DAY = "2025-02-05"
# Two sources, three endpoints (six asset steps, plus their checks), one daily partitioning.
ENDPOINTS = [("payments", "charges"), ("payments", "customers"), ("commerce", "orders")]


def _group_pids(pgid: int) -> set[int]:
    """Live processes of a process group (the worker and its pool children)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    pids.add(int(entry))
            except ProcessLookupError:
                continue
    return pids


pytestmark = pytest.mark.slow  # a Celery worker and `dagster asset materialize`


def _wait_for_log(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    raise AssertionError(f"worker not ready ({text!r} not logged):\n{log.read_text()[-3000:]}")


@pytest.fixture
def celery_env(pg_home, demo_credentials, tmp_path):
    """What the worker, the code location and the run share: instance, broker, data, API."""
    return {
        **os.environ,  # includes DAGSTER_HOME, DAGSTER_PG_*, the demo credentials and URL
        "INGESTION_EXECUTOR": "celery",
        "INGESTION_CELERY_BROKER": redis_url(),
        "INGESTION_DATA_DIR": str(tmp_path / "data"),
        "INGESTION_SOURCES": os.pathsep.join(
            str(REPO_ROOT / "ingestion_assets" / "defs" / s / "defs.yaml")
            for s in ("payments", "commerce")
        ),
        "PYTHONUNBUFFERED": "1",
        # dagster-celery runs `celery` from PATH, as in an activated virtualenv.
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }


# Two Dagster processes and a worker start here; on a busy 2-core machine that can take
# minutes. The inner timeouts stay below this one so the worker group is always stopped.
@pytest.mark.timeout(600)
def test_steps_run_in_the_celery_worker_and_the_data_lands(
    celery_env, demo_api, pg_home, tmp_path
):
    worker_name = f"ingestion-test-{uuid.uuid4().hex[:6]}"
    worker_log = tmp_path / "worker.log"
    with worker_log.open("wb") as out:
        worker = subprocess.Popen(
            [str(VENV_BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
             "-y", str(DEPLOY / "celery.yaml"), "-n", worker_name, "--", "--concurrency=2"],
            cwd=tmp_path, env=celery_env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_log(worker_log, "ready.", worker, timeout=120)
        select = ",".join(f"raw/{s}/{e},{s}/{e}" for s, e in ENDPOINTS)
        launched = subprocess.run(
            [str(VENV_BIN / "dagster"), "asset", "materialize", "-m",
             "ingestion_assets.definitions", "--select", select, "--partition", DAY],
            cwd=tmp_path, env=celery_env, capture_output=True, text=True, timeout=360,
        )
        assert launched.returncode == 0, launched.stdout[-3000:] + launched.stderr[-3000:]
        worker_pids = _group_pids(worker.pid)  # while the worker is still running
    finally:
        stop_group(worker)

    with dg.DagsterInstance.from_config(str(pg_home)) as instance:
        [run] = instance.get_runs(
            dg.RunsFilter(tags={"dagster/partition": DAY}, statuses=[dg.DagsterRunStatus.SUCCESS])
        )
        events = [e.dagster_event for e in instance.all_logs(run.run_id) if e.dagster_event]

    step_keys = {f"{s}__{e}" for s, e in ENDPOINTS}  # one step per endpoint: raw + table
    hostname = socket.gethostname()
    in_worker = {
        e.step_key: e.event_specific_data.metadata["Celery worker"].value
        for e in events
        if e.event_type == dg.DagsterEventType.ENGINE_EVENT
        and "in celery worker" in (e.message or "")
    }
    started = {e.step_key for e in events if e.event_type_value == "STEP_START"}
    assert step_keys <= started  # (the endpoints' asset checks run as steps too)
    assert set(in_worker) == started
    assert set(in_worker.values()) == {f"{worker_name}@{hostname}"}

    successes = {e.step_key: e.pid for e in events if e.event_type_value == "STEP_SUCCESS"}
    assert set(successes) == started
    assert set(successes.values()) <= worker_pids, (successes, worker_pids)
    assert worker.pid not in successes.values()  # the pool's children ran them, not the parent

    materialized = {
        e.asset_key.to_user_string() for e in events if e.event_type_value == "ASSET_MATERIALIZATION"
    }
    assert materialized == {f"{p}{s}/{e}" for s, e in ENDPOINTS for p in ("", "raw/")}

    start = dt.datetime.fromisoformat(DAY).replace(tzinfo=UTC)
    for source, endpoint in ENDPOINTS:
        truth = demo_api.records(source, endpoint, start, start + dt.timedelta(days=1))
        table = ds.dataset(current_parquet_files(
            tmp_path / "data" / source / endpoint / f"date={DAY}"), format="parquet"
        ).to_table()
        assert sorted(map(str, table.column("id").to_pylist())) == sorted(
            str(r["id"]) for r in truth
        ), (source, endpoint)
        assert len(truth) > 0
