"""Concurrent page fetching where the pagination allows random access: pages come in
order, memory stays bounded, and the completeness guarantee holds (also under faults and
under records inserted while paginating)."""

from __future__ import annotations

import logging
import threading

import pytest

from ingestion_assets.http import errors, paginators

from .conftest import assert_exactly_once, emails_truth, fetch_emails, source_client


@pytest.mark.parametrize("workers", [2, 8])
def test_pages_in_order_and_in_flight_bounded(api, workers):
    api.add_fault(kind="latency", source="crm", path="/marketing", ms=5)
    client = source_client(api, "crm")
    stream = fetch_emails(client, workers, limit=5)
    got = []
    for page in stream:
        # Never more than the page being handed out plus 2x workers requested ahead.
        assert stream.stats.requests <= page.index + 1 + 2 * workers
        assert page.index == len(got)
        got.append(page)
    records = [r for p in got for r in p.records]
    assert_exactly_once(records, emails_truth(api))
    # Order is the API's order (created desc), as a sequential fetch would give.
    sequential = [r["id"] for r in fetch_emails(client, 1, limit=5).iter_records()]
    assert [r["id"] for r in records] == sequential


def test_faults_on_worker_threads_are_retried(api):
    for fault in (
        {"kind": "server_error", "after": 2, "count": 3},
        {"kind": "drop_connection", "mode": "mid_body", "after": 5},
        {"kind": "truncated_json", "after": 7},
        {"kind": "rate_limit", "retry_after": "0", "after": 9, "count": 2},
    ):
        api.add_fault(source="crm", path="/marketing", **fault)
    stream = fetch_emails(source_client(api, "crm"), workers=4, limit=5)
    assert_exactly_once(stream.iter_records(), emails_truth(api))
    assert stream.stats.retries_total >= 7


def test_a_page_that_keeps_failing_fails_the_fetch(api):
    api.add_fault(source="crm", path="/marketing", kind="server_error", after=3, count=-1)
    with pytest.raises(errors.ServerError):
        list(fetch_emails(source_client(api, "crm"), workers=4, limit=5))


@pytest.mark.parametrize("workers", [1, 4])
def test_records_inserted_while_paginating_by_offset_fail_loudly(api, workers):
    # New records at the head shift every offset: pages overlap (duplicates) while the
    # count still looks plausible. The declared total moved, so the fetch must fail.
    api.add_fault(
        source="crm", path="/marketing", kind="insert_during_pagination", after=1, records=3
    )
    stream = fetch_emails(source_client(api, "crm"), workers, limit=5)
    with pytest.raises(errors.IncompleteFetchError, match="total changed") as info:
        list(stream)
    assert info.value.transient  # a re-run fixes it


def test_total_mismatch_can_be_downgraded_to_a_warning(api, caplog):
    api.add_fault(
        source="crm", path="/marketing", kind="insert_during_pagination", after=1, records=3
    )
    stream = fetch_emails(source_client(api, "crm"), workers=1, limit=5, on_total_mismatch="warn")
    with caplog.at_level(logging.WARNING, logger="ingestion_assets.http"):
        records = list(stream.iter_records())
    assert "declared total changed" in caplog.text
    ids = [r["id"] for r in records]
    assert len(ids) > len(set(ids))  # the overlap is visible to the caller (deduped downstream)


def test_abandoning_a_concurrent_stream_stops_its_workers(api):
    client = source_client(api, "crm")
    api.add_fault(kind="latency", source="crm", path="/marketing", ms=20)
    stream = fetch_emails(client, workers=4, limit=5)
    iterator = iter(stream)
    next(iterator)
    next(iterator)
    iterator.close()
    assert not [
        t for t in threading.enumerate() if t.name.startswith("fetch-emails") and t.is_alive()
    ]
    assert stream.stats.requests <= 2 + 2 * 4


def test_page_numbers_with_a_last_link_are_fetched_concurrently(api):
    # GitHub declares the page count in Link rel="last": random access without a total.
    client = source_client(api, "devhub")
    repo = api.records("devhub", "repos", org="demo-org")[0]["full_name"]
    stream = client.fetch_pages(
        f"/repos/{repo}/issues",
        params={"state": "all"},
        paginator=paginators.PageNumberPaginator(page_size=30, last_page_from_link=True),
        workers=4,
    )
    pages = list(stream)
    truth = api.records("devhub", "issues", repo=repo)
    assert_exactly_once([r for p in pages for r in p.records], truth)
    assert stream.stats.workers == 4  # it did go concurrent
    assert len(pages) == -(-len(truth) // 30)  # and stopped at the last page
