"""Rate limits: the client limiter keeps a run under the API's limit; 429s are honoured
with their own budget, and ``Retry-After: 0`` cannot burn every attempt at once."""

from __future__ import annotations

import threading

import pytest
import requests

from ingestion_assets.http import RateLimiter, RetryPolicy, errors

from .conftest import (
    FEB1,
    SIX_HOURS,
    assert_exactly_once,
    charges_truth,
    fetch_charges,
    payments_client,
)


def published_rate(api, source: str) -> float:
    listing = requests.get(api.url + "/", timeout=5).json()
    (entry,) = [s for s in listing["sources"] if s["name"] == source]
    return entry["rate_limit"]["requests_per_second"]


def test_limiter_at_the_published_limit_sees_no_429(demo_api):
    rate = published_rate(demo_api, "payments")
    client = payments_client(demo_api, rate_limiter=RateLimiter(rate, burst=int(rate)))
    stream = fetch_charges(client, limit=3)  # 60 requests: more than two seconds' allowance
    assert_exactly_once(stream.iter_records(), charges_truth(demo_api))
    assert stream.stats.requests >= 2.4 * rate
    assert stream.stats.rate_limited == 0, stream.stats.to_dict()
    assert stream.stats.rate_limit_wait_s > 0  # it did hold requests back


def test_without_a_limiter_the_api_pushes_back_and_retry_after_recovers(demo_api):
    client = payments_client(demo_api, rate_limiter=RateLimiter(None, remaining_header=None))
    stream = fetch_charges(client, limit=3)
    assert_exactly_once(stream.iter_records(), charges_truth(demo_api))
    assert stream.stats.rate_limited > 0  # the contrast that makes the test above meaningful


def test_retry_after_zero_does_not_exhaust_the_retries(demo_api):
    # Five 429s with "Retry-After: 0" in a row: a client that sleeps 0 would burn a
    # budget of 6 in microseconds; the floor spaces the attempts so the fault clears.
    demo_api.add_fault(source="payments", kind="rate_limit", retry_after="0", count=5)
    policy = RetryPolicy(
        rate_limit_attempts=6, retry_after_floor=0.02, backoff_max=0.1, jitter=False
    )
    client = payments_client(demo_api, retry=policy)
    stream = fetch_charges(client)
    assert_exactly_once(stream.iter_records(), charges_truth(demo_api))
    assert stream.stats.rate_limited == 5
    assert stream.stats.retries == {"rate_limited": 5}
    # 0.02 + 0.04 + 0.08 + 0.1 + 0.1 waited, although the server said 0 every time.
    assert stream.stats.rate_limit_wait_s >= 0.3


def test_429_budget_is_separate_from_the_error_budget(demo_api):
    demo_api.add_fault(source="payments", kind="server_error", count=2)
    demo_api.add_fault(source="payments", kind="rate_limit", retry_after="0", count=4, after=2)
    policy = RetryPolicy(
        max_attempts=3, rate_limit_attempts=4, backoff_base=0.01, retry_after_floor=0.01
    )
    stream = fetch_charges(payments_client(demo_api, retry=policy))
    assert_exactly_once(stream.iter_records(), charges_truth(demo_api))
    assert stream.stats.retries == {"server_error": 2, "rate_limited": 4}


def test_rate_limited_forever_fails_with_rate_limit_error(demo_api):
    demo_api.add_fault(source="payments", kind="rate_limit", retry_after="0", count=-1)
    policy = RetryPolicy(rate_limit_attempts=3, retry_after_floor=0.01)
    with pytest.raises(errors.RateLimitError, match="still rate limited after 3 retries") as info:
        list(fetch_charges(payments_client(demo_api, retry=policy)))
    assert info.value.status == 429 and info.value.transient


def test_one_limiter_shared_by_threads_keeps_the_source_under_its_limit(demo_api):
    # Four threads fetch different windows through one client (one limiter, one pool).
    rate = published_rate(demo_api, "payments")
    client = payments_client(demo_api, rate_limiter=RateLimiter(rate, burst=int(rate)))
    windows = [(FEB1 + i * SIX_HOURS, FEB1 + (i + 1) * SIX_HOURS) for i in range(4)]
    streams = [fetch_charges(client, start, end, limit=12) for start, end in windows]
    results: dict[int, list] = {}

    def run(i: int) -> None:
        results[i] = list(streams[i].iter_records())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (start, end) in enumerate(windows):
        assert_exactly_once(results[i], charges_truth(demo_api, start, end))
    assert sum(s.stats.requests for s in streams) > 2 * rate
    assert sum(s.stats.rate_limited for s in streams) == 0


def test_header_feedback_alone_slows_down_before_the_429(demo_api):
    # No client-side rate: only X-RateLimit-Remaining/Reset steer the pace.
    client = payments_client(demo_api, rate_limiter=RateLimiter(None))
    stream = fetch_charges(client, limit=4)
    assert_exactly_once(stream.iter_records(), charges_truth(demo_api))
    assert stream.stats.rate_limit_wait_s > 0
    assert stream.stats.rate_limited <= 1, stream.stats.to_dict()
