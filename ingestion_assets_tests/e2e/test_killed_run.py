"""A run killed with ``kill -9`` does not block its API: its pool slot comes back.

Every raw asset of a source is in the pool ``api_<source>``. Run A of ``payments/charges`` takes
the pool's only slot and hangs on a slow API; run B of the same source waits for that slot.
Then run A's worker and every process it started are killed with SIGKILL (what an OOM kill
does): no step ends, nothing gives the slot back. With run monitoring as the instance configs
set it (``free_slots_after_run_end_seconds``), run B's step must start within 90 s of the kill.
Once under ``dagster dev`` with the local instance (SQLite), once with ``deploy/dagster.yaml``
on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest
import requests
import yaml

from ingestion_assets.demo_api import CONTROL_HEADERS
from ingestion_assets.specs import DEFAULT_SOURCES_DIR
from ingestion_assets_tests.deploy.services import fresh_pg_database, pg_env
from ingestion_assets_tests.e2e.harness import REPO_ROOT, running_project, wait_until

# Each test starts its own project: they may run in different workers.
pytestmark = [pytest.mark.slow, pytest.mark.spread, pytest.mark.timeout(900)]

POOL = "api_payments"
ASSETS = [["raw", "payments", "charges"], ["payments", "charges"]]
BUDGET_S = 90  # the bound: the next run of the source starts within this of the kill


def _descendants(pid: int) -> list[int]:
    """Every process started (directly or not) by ``pid``, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _events(instance: dg.DagsterInstance, run_id: str, kind: dg.DagsterEventType):
    return [e for e in instance.all_logs(run_id, of_type=kind)]


def _payments_without_schedules(tmp_path: Path) -> Path:
    """The demo payments source alone, its schedules removed: the demo's schedules fire at
    00:30 UTC and their runs of payments would take the freed slot before run B."""
    config = yaml.safe_load((DEFAULT_SOURCES_DIR / "payments" / "defs.yaml").read_text())
    for endpoint in config["attributes"]["endpoints"]:
        endpoint.pop("automation", None)
    sources = tmp_path / "sources"
    sources.mkdir()
    (sources / "payments.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return sources


def _kill_run_and_start_next(tmp_path: Path, monkeypatch, extra_env=None,
                             instance_yaml=None) -> float:
    """Returns the seconds from the kill to the start of the next run's API step."""
    days = [(dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=n)).date().isoformat()
            for n in (3, 4)]
    extra_env = {**(extra_env or {}),
                 "INGESTION_SOURCES": str(_payments_without_schedules(tmp_path))}
    with running_project(tmp_path, extra_env, instance_yaml) as project:
        log = tmp_path / "dagster_dev.log"
        for name, value in extra_env.items():  # the test's own instance: the same storage
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.from_config(str(project.dagster_home)) as instance:
            instance.event_log_storage.set_concurrency_slots(POOL, 1)
            # Run A hangs on a slow API while it holds the pool's one slot.
            requests.post(f"{project.api_url}/_control/faults", timeout=10, json={
                "kind": "slow", "source": "payments", "delay": 600, "count": -1},
                headers=CONTROL_HEADERS).raise_for_status()
            run_a = project.launch(ASSETS, days[0])
            start_a = wait_until("run A's API step starting", lambda: _events(
                instance, run_a, dg.DagsterEventType.STEP_START), 180, log)[0]
            # Run B of the same source waits for that slot (in the run queue, or started with
            # its step "blocked by limit for pool").
            run_b = project.launch(ASSETS, days[1])
            time.sleep(10)
            assert not _events(instance, run_b, dg.DagsterEventType.STEP_START)

            # kill -9 of run A: its worker (the RUN_START event's process) and everything
            # under it (the step processes).
            (run_start,) = _events(instance, run_a, dg.DagsterEventType.RUN_START)
            worker = run_start.dagster_event.pid
            victims = [worker, *_descendants(worker)]
            assert start_a.dagster_event.pid in victims
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            requests.delete(
                f"{project.api_url}/_control/faults", headers=CONTROL_HEADERS, timeout=10
            ).raise_for_status()

            wait_until("run B's API step starting", lambda: _events(
                instance, run_b, dg.DagsterEventType.STEP_START), BUDGET_S, log)
            waited = time.monotonic() - killed_at
            assert instance.get_run_by_id(run_a).status == dg.DagsterRunStatus.FAILURE
            assert project.wait_for_run(run_b)["status"] == "SUCCESS"
            print(f"next run's step started {waited:.1f} s after kill -9 of the run holding "
                  f"the slot ({len(victims)} processes killed)")
            return waited


def test_killed_run_frees_its_slot_under_dagster_dev(tmp_path, monkeypatch):
    _kill_run_and_start_next(tmp_path, monkeypatch)


def test_killed_run_frees_its_slot_with_the_deploy_instance_on_postgres(tmp_path, monkeypatch):
    with fresh_pg_database() as database:  # skips locally without PostgreSQL, fails in CI
        _kill_run_and_start_next(tmp_path, monkeypatch, extra_env=pg_env(database),
                                 instance_yaml=REPO_ROOT / "deploy" / "dagster.yaml")
