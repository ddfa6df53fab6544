"""From a demo API mutation to an events partition: sender -> receiver -> spool -> sensor -> run.

The demo API posts signed Stripe-style events for the charges it inserts and updates; the
receiver (its own process) spools them; the sensor, evaluated with ``build_sensor_context``,
requests the hour; ``dg.materialize`` runs the request through the real IO managers.
"""

from __future__ import annotations

import os
import time

import dagster as dg
import pytest

from ingestion_assets.definitions import build_definitions
from ingestion_assets.specs import DEFAULT_SOURCES_DIR
from ingestion_assets.webhooks.assets import (
    SPOOL_RESOURCE_KEY,
    WebhookSpoolResource,
    events_keys,
)
from ingestion_assets_tests.webhooks.support import Receiver

SENSOR = "payments_charges_webhook_events"
HOUR = "2025-03-01-00:00"  # the demo clock is frozen at 2025-03-01T00:00:00Z


@pytest.fixture
def pipeline(demo_api, demo_sources, tmp_path, monkeypatch):
    receiver = Receiver(tmp_path, sources=DEFAULT_SOURCES_DIR).start()
    monkeypatch.setenv("INGESTION_WEBHOOK_SPOOL", str(receiver.spool))
    demo_api.webhooks.configure(url=receiver.url)
    defs = build_definitions([demo_sources["payments"]], str(tmp_path / "data"))
    try:
        with dg.instance_for_test() as instance:
            yield demo_api, defs, instance, demo_sources["payments"]
    finally:
        receiver.stop()


def _tick(defs: dg.Definitions, instance, cursor: str | None):
    sensor = defs.get_repository_def().get_sensor_def(SENSOR)
    spool = WebhookSpoolResource(path=os.environ["INGESTION_WEBHOOK_SPOOL"])
    with dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                 resources={SPOOL_RESOURCE_KEY: spool}) as ctx:
        return sensor.evaluate_tick(ctx)


def _run(defs: dg.Definitions, instance, request: dg.RunRequest) -> None:
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(request.asset_selection)
    )
    result = job.execute_in_process(instance=instance, partition_key=request.partition_key)
    assert result.success


def _table(defs: dg.Definitions, instance):
    """The stored events partition, read back through the Parquet IO manager."""
    return defs.load_asset_value(
        ["payments", "charges_events"], partition_key=HOUR, instance=instance
    )


def test_mutations_become_an_events_partition(pipeline):
    api, defs, instance, payments = pipeline
    changed = api.mutate("payments", "charges", insert=3, update=2)
    assert api.webhooks.flush(30)
    assert api.webhooks.status()["delivered"] == 5

    tick = _tick(defs, instance, None)
    assert [r.partition_key for r in tick.run_requests] == [HOUR]
    _run(defs, instance, tick.run_requests[0])

    table = _table(defs, instance)
    ids = sorted(changed["inserted"] + changed["updated"])
    assert sorted(table["object_id"].tolist()) == ids
    types = sorted(table["event_type"].tolist())
    assert types == ["charge.created"] * 3 + ["charge.updated"] * 2
    charges = next(e for e in payments.endpoints if e.name == "charges")
    event = instance.get_latest_materialization_event(events_keys(payments, charges)[1])
    meta = event.asset_materialization.metadata
    assert meta["dagster/row_count"].value == 5
    assert meta["webhooks/backlog"].value == 0
    assert meta["webhooks/lag_seconds"].value >= 0

    # Nothing new: the next tick skips. Duplicated, reordered and badly signed deliveries
    # of two new charges: the hour is requested again and replaced whole, not doubled.
    quiet = _tick(defs, instance, tick.cursor)
    assert not quiet.run_requests
    api.webhooks.configure(duplicates=True, out_of_order=True, bad_signatures=1)
    more = api.mutate("payments", "charges", insert=2)
    assert api.webhooks.flush(30)
    statuses = [d["status"] for d in api.webhooks.log if d["bad_signature"]]
    assert statuses == [401]
    again = _tick(defs, instance, quiet.cursor or tick.cursor)
    assert [r.partition_key for r in again.run_requests] == [HOUR]
    _run(defs, instance, again.run_requests[0])
    table = _table(defs, instance)
    assert sorted(table["object_id"].tolist()) == sorted(ids + more["inserted"])
    assert len(table) == len(set(table["event_id"].tolist())) == 7



def test_an_event_can_request_the_pull_partition_it_touches(
    demo_api, demo_sources, tmp_path, monkeypatch
):
    payments = demo_sources["payments"]
    charges = next(e for e in payments.endpoints if e.name == "charges")
    hooked = charges.model_copy(update={"webhook": charges.webhook.model_copy(
        update={"request_pull_partition": True})})
    source = payments.model_copy(update={"endpoints": [hooked]})
    receiver = Receiver(tmp_path, sources=DEFAULT_SOURCES_DIR).start()
    try:
        monkeypatch.setenv("INGESTION_WEBHOOK_SPOOL", str(receiver.spool))
        demo_api.webhooks.configure(url=receiver.url)
        changed = demo_api.mutate("payments", "charges", insert=1,
                                  update=2, window=["2025-01-10", "2025-01-12"])
        assert demo_api.webhooks.flush(30)
        defs = build_definitions([source], str(tmp_path / "data"))
        with dg.instance_for_test() as instance:
            tick = _tick(defs, instance, None)
    finally:
        receiver.stop()
    ids = set(changed["inserted"] + changed["updated"])
    truth = [r for r in demo_api.records("payments", "charges", field="updated",
                                         start="2025-03-01T00:00:00Z") if r["id"] in ids]
    expected_days = {time.strftime("%Y-%m-%d", time.gmtime(r["created"])) for r in truth}
    assert len(truth) == 3 and len(expected_days) >= 2
    pulls = [r for r in tick.run_requests
             if ["payments", "charges"] in [k.path for k in r.asset_selection]]
    assert {r.partition_key for r in pulls} == expected_days
    events = [r for r in tick.run_requests if r not in pulls]
    assert [r.partition_key for r in events] == [HOUR]
