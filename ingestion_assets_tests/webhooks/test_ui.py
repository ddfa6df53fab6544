"""As a user sees it: ``dagster dev`` with the receiver; the demo API mutates records, and
the sensor (run by the daemon) materializes the events partition, shown over GraphQL."""

from __future__ import annotations

import time

import pytest
import requests

from ingestion_assets.demo_api import CONTROL_HEADERS
from ingestion_assets.specs import DEFAULT_SOURCES_DIR
from ingestion_assets_tests.e2e.harness import MATERIALIZATIONS, demo_env, running_project
from ingestion_assets_tests.webhooks.support import Receiver

pytestmark = pytest.mark.slow


def _materializations(project) -> list[dict]:
    found = project.graphql(MATERIALIZATIONS, {"path": ["payments", "charges_events"],
                                               "partitions": None})
    return found["assetOrError"].get("assetMaterializations") or []


def test_demo_mutation_shows_as_an_events_partition_in_the_ui(tmp_path):
    spool = tmp_path / "spool.sqlite3"
    receiver = Receiver(tmp_path, sources=DEFAULT_SOURCES_DIR, env=demo_env(), spool=spool)
    receiver.start()
    try:
        # Steps in the run's own process (the subject is the events partition in the UI).
        env = {"INGESTION_WEBHOOK_SPOOL": str(spool), "INGESTION_EXECUTOR": "in_process"}
        with running_project(tmp_path, env) as project:
            control = project.api_url + "/_control"
            r = requests.post(control + "/webhooks", json={"url": receiver.url},
                              headers=CONTROL_HEADERS, timeout=10)
            assert r.status_code == 200, r.text
            changed = requests.post(
                control + "/mutations", headers=CONTROL_HEADERS, timeout=10,
                json={"source": "payments", "endpoint": "charges", "insert": 2, "update": 1},
            ).json()
            hour = time.strftime("%Y-%m-%d-%H:00", time.gmtime())
            materialized: list[dict] = []
            for _ in range(120):  # the sensor ticks every 30 s; up to 4 minutes
                materialized = _materializations(project)
                if materialized:
                    break
                time.sleep(2)
    finally:
        receiver.stop()
    assert materialized, "the events sensor materialized nothing; see dagster_dev.log"
    latest = materialized[0]
    assert latest["partition"] in (hour, time.strftime("%Y-%m-%d-%H:00", time.gmtime()))
    meta = {m["label"]: m for m in latest["metadataEntries"]}
    assert meta["dagster/row_count"]["intValue"] == len(changed["inserted"]) + len(
        changed["updated"]
    )
    assert meta["webhooks/backlog"]["intValue"] == 0
    assert "webhooks/lag_seconds" in meta
