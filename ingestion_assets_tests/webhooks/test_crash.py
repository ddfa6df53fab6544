"""Nothing lost, nothing doubled: 10,000 events from 8 senders while the receiver is killed
with SIGKILL and restarted mid-way; then the events table holds exactly those 10,000."""

from __future__ import annotations

import threading
import time

import dagster as dg
import pytest

from ingestion_assets.io_managers.parquet import ParquetIOManager
from ingestion_assets.io_managers.raw import RawResponseIOManager
from ingestion_assets.specs import load_sources
from ingestion_assets.webhooks.assets import (
    SPOOL_RESOURCE_KEY,
    WebhookSpoolResource,
    build_webhook_assets,
)
from ingestion_assets.webhooks.spool import Spool
from ingestion_assets_tests.webhooks.support import (
    SECRETS,
    Receiver,
    send_concurrently,
    stripe_events,
)

pytestmark = pytest.mark.slow

EVENTS = 10_000
START = 1_740_823_200  # 2025-03-01T10:00:00Z: the events span three hours
HOURS = ["2025-03-01-10:00", "2025-03-01-11:00", "2025-03-01-12:00"]


def test_kill_9_mid_stream_loses_and_doubles_nothing(tmp_path):
    receiver = Receiver(tmp_path).start()
    events = stripe_events(EVENTS, START, 3 * 3600)
    result: dict[str, int] = {}
    url = f"{receiver.url}/webhooks/hooks/stripe"
    sender = threading.Thread(target=lambda: result.update(
        send_concurrently(url, events, 8, SECRETS["HOOK_STRIPE_SECRET"], deadline_seconds=240)
    ))
    try:
        sender.start()
        spool = Spool(receiver.spool)
        for _ in range(2400):  # up to 120 s
            if spool.count() >= EVENTS // 3:
                break
            time.sleep(0.05)
        stored_at_kill = spool.count()
        receiver.kill9()
        time.sleep(0.5)  # the senders get connection errors and retry
        receiver.start()
        sender.join(300)
        assert not sender.is_alive()
    finally:
        receiver.stop()

    assert EVENTS // 3 <= stored_at_kill < EVENTS  # the kill did land mid-way
    assert result["unsent"] == 0
    assert result["accepted"] == EVENTS
    assert result["retries"] > 0  # the restart was felt
    assert spool.count("hooks", "stripe") == EVENTS

    # The events become partitions; three hours hold the 10,000 events exactly once.
    (source,) = load_sources(tmp_path / "hooks.yaml")
    assets = build_webhook_assets([source])
    resources = {
        "raw_io_manager": RawResponseIOManager(base_path=str(tmp_path / "data")),
        "parquet_io_manager": ParquetIOManager(base_path=str(tmp_path / "data")),
        SPOOL_RESOURCE_KEY: WebhookSpoolResource(path=str(receiver.spool)),
    }
    stripe_assets = [a for a in assets if a.key.path[-1] == "stripe_events"]
    ids: list[str] = []
    with dg.instance_for_test() as instance:
        for hour in HOURS:
            done = dg.materialize(stripe_assets, partition_key=hour, resources=resources,
                                  instance=instance)
            assert done.success
        defs = dg.Definitions(assets=stripe_assets, resources=resources)
        for hour in HOURS:
            table = defs.load_asset_value(["hooks", "stripe_events"], partition_key=hour,
                                          instance=instance)
            ids += table["event_id"].tolist()
    assert len(ids) == EVENTS
    assert set(ids) == {event_id for event_id, _ in events}
