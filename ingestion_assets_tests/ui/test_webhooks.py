"""As a user sees it: ``dagster dev`` with the receiver; the demo API mutates records, and
the sensor (run by the daemon) materializes the events partition, shown over GraphQL.

The project is the one ``test_browser.py`` and ``test_graphql.py`` use (ui/conftest.py). The
receiver writes where the code location reads without being told: the default spool in the
project's data folder. Only this test mutates records or materializes an events asset.
"""

from __future__ import annotations

import time

import pytest
import requests

from ingestion_assets.demo_api import CONTROL_HEADERS
from ingestion_assets.specs import DEFAULT_SOURCES_DIR
from ingestion_assets.webhooks.spool import SPOOL_ENV_VAR, default_spool_path
from ingestion_assets_tests.e2e.harness import MATERIALIZATIONS, demo_env
from ingestion_assets_tests.ui.support import UI_PROJECT
from ingestion_assets_tests.webhooks.support import Receiver

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(UI_PROJECT)]


def _materializations(project) -> list[dict]:
    found = project.graphql(MATERIALIZATIONS, {"path": ["payments", "charges_events"],
                                               "partitions": None})
    return found["assetOrError"].get("assetMaterializations") or []


def test_demo_mutation_shows_as_an_events_partition_in_the_ui(project, tmp_path, monkeypatch):
    # The spool the code location reads: its environment names no spool, only the data folder.
    assert SPOOL_ENV_VAR not in project.env
    monkeypatch.delenv(SPOOL_ENV_VAR, raising=False)
    monkeypatch.setenv("INGESTION_DATA_DIR", project.env["INGESTION_DATA_DIR"])
    spool = default_spool_path()
    spool.parent.mkdir(parents=True, exist_ok=True)
    receiver = Receiver(tmp_path, sources=DEFAULT_SOURCES_DIR, env=demo_env(), spool=spool)
    receiver.start()
    control = project.api_url + "/_control"
    try:
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
