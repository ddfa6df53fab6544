"""Fixtures of the webhook tests: a receiver process per module, spooling to a temp folder."""

from __future__ import annotations

import pytest

from ingestion_assets_tests.webhooks.support import Receiver


@pytest.fixture(scope="module")
def receiver(tmp_path_factory):
    """A receiver serving the test source ``hooks`` (one endpoint per signature style)."""
    # A short body deadline, so the trickling-body test need not wait long.
    rec = Receiver(tmp_path_factory.mktemp("receiver"), args=["--read-timeout", "1"]).start()
    yield rec
    rec.stop()
