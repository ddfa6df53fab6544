"""Planning a Spark read without Spark: the same windows as Dagster, options named in errors."""

from __future__ import annotations

import datetime as dt

import pytest

from ingestion_assets.endpoint_io import time_windows
from ingestion_assets.partitions import time_partitions_def
from ingestion_assets.spark.plan import (
    SparkReadError,
    open_client,
    parse_options,
    partition_requests,
)
from ingestion_assets.specs import TimePartitioning

UTC = dt.timezone.utc

CASES = {
    "daily": TimePartitioning(type="daily", start="2025-01-01"),
    "hourly_offset": TimePartitioning(type="hourly", start="2025-03-29", minute_offset=15),
    "daily_berlin_dst": TimePartitioning(type="daily", start="2025-03-01",
                                         timezone="Europe/Berlin", hour_offset=2),
    "weekly_monday": TimePartitioning(type="weekly", start="2025-01-06", day_offset=1),
    "monthly_15th": TimePartitioning(type="monthly", start="2024-11-15", day_offset=15),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_time_windows_are_dagsters_partitions(name):
    spec = CASES[name]
    start, end = dt.datetime(2025, 3, 20, 7, tzinfo=UTC), dt.datetime(2025, 4, 12, tzinfo=UTC)
    if spec.type == "hourly":
        end = dt.datetime(2025, 3, 31, 3, tzinfo=UTC)
    if spec.type == "monthly":
        end = dt.datetime(2025, 7, 1, tzinfo=UTC)
    pdef = time_partitions_def(spec)
    expected = []
    for key in pdef.get_partition_keys():
        window = pdef.time_window_for_partition_key(key)
        if window.start >= start and window.end <= end:
            expected.append((key, window.start.astimezone(UTC), window.end.astimezone(UTC)))
    found = time_windows(spec, start, end)
    assert found == expected and found


def test_a_daily_read_has_one_request_per_day_with_the_window_params(demo_sources, tmp_path):
    options = {"source": "payments", "endpoint": "charges", "start": "2025-01-01",
               "end": "2025-01-31"}
    parts = partition_requests(parse_options(options))
    assert len(parts) == 30
    assert parts[0].params["created[gte]"] == 1735689600
    assert parts[0].params["created[lt]"] == 1735689600 + 86400
    assert parts[-1].key == "2025-01-30"


def test_each_task_gets_its_share_of_the_rate_and_starts_with_an_empty_bucket(demo_sources):
    # Tasks of a read end and start together; the task before this one in the same slot may
    # have just sent a request, so a task's first request waits for its share's next token.
    # (CI once saw a 429 when each one-page task started with a full bucket.)
    options = {"source": "payments", "endpoint": "charges", "start": "2025-01-01",
               "end": "2025-01-31"}
    source = parse_options(options).source
    declared = source.rate_limit.requests_per_second
    with open_client(source, tasks=4) as client:
        limiter = client.rate_limiter
        assert limiter.rate == declared / 4
        assert limiter.burst == max(1, source.rate_limit.burst // 4)
        waited = [limiter.acquire() for _ in range(2)]
        limiter.release()
        limiter.release()
    assert all(w > 0 for w in waited)


@pytest.mark.parametrize("options, message", [
    ({"endpoint": "charges"}, 'option "source" is required'),
    ({"source": "payments", "endpoint": "nope"}, "has no endpoint 'nope'"),
    ({"source": "payments", "endpoint": "charges"}, "options start and end are required"),
    ({"source": "payments", "endpoint": "charges", "start": "01/02/2025", "end": "x"},
     "option start='01/02/2025' is not an ISO date"),
    ({"source": "payments", "endpoint": "charges", "start": "2025-01-01", "end": "2025-01-02",
      "concurrency": "0"}, "option concurrency='0' must be a whole number"),
    ({"source": "exports", "endpoint": "events", "start": "2025-01-01", "end": "2025-01-02"},
     "endpoint 'events' of source 'exports' has `format: ndjson`: the Spark reader reads JSON"),
    ({"source": "exports", "endpoint": "sales", "start": "2025-01-01", "end": "2025-01-02"},
     "endpoint 'sales' of source 'exports' has `format: csv`: the Spark reader reads JSON"),
])
def test_bad_options_are_named(demo_sources, options, message):
    with pytest.raises(SparkReadError, match=message.replace("(", r"\(")):
        partition_requests(parse_options(options))
