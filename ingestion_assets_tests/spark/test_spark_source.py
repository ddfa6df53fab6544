"""The ``ingestion_assets`` Spark data source against the demo API, in local Spark.

One session-scoped ``local[2]`` SparkSession (conftest.py); every test starts its own demo
API on a free loopback port and writes its source YAML pointing at it.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from ingestion_assets_tests.spark.conftest import (
    BAD_KEY,
    BAD_KEY_VAR,
    endpoint_of,
    write_sources,
)

# The first test also starts the JVM, which takes minutes on a loaded 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

UTC = dt.timezone.utc


def _read(spark, sources, source, endpoint, **options):
    reader = (spark.read.format("ingestion_assets").option("sources", str(sources))
              .option("source", source).option("endpoint", endpoint))
    for name, value in options.items():
        reader = reader.option(name, str(value))
    return reader.load()


def _as_api(value):
    """A Spark value as the API rendered it (timestamps as unix seconds, structs as dicts)."""
    if isinstance(value, dt.datetime):
        return int(value.replace(tzinfo=value.tzinfo or UTC).timestamp())
    if hasattr(value, "asDict"):
        return {k: _as_api(v) for k, v in value.asDict().items()}
    if isinstance(value, list):
        return [_as_api(v) for v in value]
    return value


def _same_fields(api_value, spark_value) -> bool:
    """Every field the API sent has the same value in Spark (a struct may hold more keys,
    all null: fields other records have)."""
    if isinstance(api_value, dict):
        return isinstance(spark_value, dict) and all(
            _same_fields(v, spark_value.get(k)) for k, v in api_value.items()
        ) and all(v is None for k, v in spark_value.items() if k not in api_value)
    return api_value == spark_value


def test_thirty_days_of_a_cursor_endpoint_equal_the_api_row_for_row(
    spark, demo_api_factory, tmp_path
):
    api = demo_api_factory(records=3000)
    sources = write_sources(tmp_path, api, "payments")
    df = _read(spark, sources, "payments", "charges", start="2025-01-01", end="2025-01-31",
               concurrency=2)
    assert df.rdd.getNumPartitions() == 30
    assert dict(df.dtypes)["created"] == "timestamp"
    assert dict(df.dtypes)["amount"] == "bigint"
    assert dict(df.dtypes)["billing_details"].startswith("struct<")
    rows = {row["id"]: {k: _as_api(v) for k, v in row.asDict().items()} for row in df.collect()}
    truth = api.records("payments", "charges", "2025-01-01", "2025-01-31")
    assert len(truth) > 30 and len(rows) == len(truth)
    for record in truth:
        assert _same_fields(record, rows[record["id"]]), record["id"]


def test_an_offset_endpoint_with_a_total_is_read_in_page_ranges(spark, demo_api, tmp_path):
    def unpartitioned_emails(attributes):
        emails = endpoint_of(attributes, "emails")
        for key in ("partitioning", "window", "automation", "workers"):
            emails.pop(key, None)

    sources = write_sources(tmp_path, demo_api, "crm", unpartitioned_emails)
    df = _read(spark, sources, "crm", "emails", pages_per_partition=3)
    truth = demo_api.records("crm", "emails")
    pages = -(-len(truth) // 100)  # limit 100
    assert pages >= 4
    assert df.rdd.getNumPartitions() == -(-pages // 3)
    ids = [row["id"] for row in df.select("id").collect()]
    assert sorted(ids) == sorted(r["id"] for r in truth)


def test_rate_limit_is_shared_by_the_tasks_no_429(spark, demo_api_factory, tmp_path):
    # The source declares 4 requests per second; each of the 4 tasks gets 1/s (burst 1), so
    # the tasks together never send faster than declared. The API allows 5/s: the tasks are
    # independent processes, and a request that reaches the server late (a busy core) lands
    # in the same second as its successor, so a limit equal to the declared rate would
    # refuse on arrival jitter, not on the sending rate. Undivided, the 4 tasks would send
    # 16 at once and be refused at the fifth.
    api = demo_api_factory(records=3000, rate_limits={"payments": 5})
    refused = []
    payments = api.sources["payments"]
    original = payments.rate_limited

    def counting(info, retry_after):
        refused.append(info)
        return original(info, retry_after)

    payments.rate_limited = counting

    def slow(attributes):
        attributes["rate_limit"] = {"requests_per_second": 4, "burst": 4}

    sources = write_sources(tmp_path, api, "payments", slow)
    df = _read(spark, sources, "payments", "charges", start="2025-01-01", end="2025-01-09",
               concurrency=4)
    assert df.rdd.getNumPartitions() == 8
    assert df.count() == len(api.records("payments", "charges", "2025-01-01", "2025-01-09"))
    assert refused == []


def test_a_bad_credential_fails_the_read_with_the_core_message_and_no_secret(
    spark, spark_log, demo_api, tmp_path
):
    def wrong_key(attributes):
        attributes["auth"] = {"type": "bearer", "token": {"env": BAD_KEY_VAR}}

    sources = write_sources(tmp_path, demo_api, "payments", wrong_key)
    schema = "id string, amount bigint, created timestamp"
    before = spark_log.stat().st_size
    with pytest.raises(Exception) as failure:
        (spark.read.format("ingestion_assets").schema(schema).option("sources", str(sources))
         .option("source", "payments").option("endpoint", "charges")
         .option("start", "2025-01-01").option("end", "2025-01-03").load().collect())
    message = str(failure.value)
    assert "credentials rejected (401)" in message
    assert "payments" in message and "charges" in message
    assert BAD_KEY not in message
    with open(spark_log, "rb") as log:
        log.seek(before)
        logged = log.read().decode("utf-8", "replace")
    assert "credentials rejected (401)" in logged  # the executor's failure is in the log
    assert BAD_KEY not in logged


def test_change_stream_delivers_exactly_the_changed_records_and_resumes(
    spark, demo_api_factory, tmp_path
):
    api = demo_api_factory(now=None, records=200)  # a live clock: changes happen "now"
    sources = write_sources(tmp_path, api, "commerce")
    checkpoint = tmp_path / "checkpoint"
    # Whole seconds before the first change (the API stamps changes in whole seconds).
    since = (dt.datetime.now(UTC) - dt.timedelta(seconds=2)).replace(microsecond=0)
    batches: list[list[str]] = []

    def run_once():
        def collect(df, _batch_id):
            batches.append(sorted(str(r["id"]) for r in df.select("id").collect()))

        query = (spark.readStream.format("ingestion_assets").option("sources", str(sources))
                 .option("source", "commerce").option("endpoint", "orders")
                 .option("since", since.isoformat()).load()
                 .writeStream.foreachBatch(collect)
                 .option("checkpointLocation", str(checkpoint)).start())
        try:
            query.processAllAvailable()
        finally:
            query.stop()
        return [b for b in batches if b]

    def mutate(**change):
        time.sleep(1.1)  # a new second: a record changed again gets a new update time
        found = api.mutate("commerce", "orders", **change)
        return sorted(str(i) for i in found["updated"] + found["inserted"])

    first = mutate(update=2)
    assert run_once() == [first]
    second = mutate(update=[first[0]], insert=1)  # one changed again, one new
    assert run_once() == [first, second]  # a restarted query, from its checkpoint
    assert run_once() == [first, second]  # nothing changed since: no batch with records


def test_change_stream_offsets_deliver_each_change_once(demo_api_factory, tmp_path, monkeypatch):
    """The stream reader's offsets and reads driven directly, as Spark drives them (offsets
    round-tripped through JSON like a checkpoint), without a JVM."""
    import json

    from pyspark.sql.streaming.datasource import ReadAllAvailable

    from ingestion_assets.demo_api import demo_env
    from ingestion_assets.spark import IngestionDataSource

    for name, value in demo_env().items():
        monkeypatch.setenv(name, value)
    api = demo_api_factory(now=None, records=200)
    sources = write_sources(tmp_path, api, "commerce")
    since = (dt.datetime.now(UTC) - dt.timedelta(seconds=2)).replace(microsecond=0)
    source = IngestionDataSource({"sources": str(sources), "source": "commerce",
                                  "endpoint": "orders", "since": since.isoformat()})
    reader = source.streamReader(source.schema())

    def batch(start, end):
        ids = []
        for part in reader.partitions(start, end):
            for records in reader.read(part):
                ids += [str(i) for i in records.column("id").to_pylist()]
        return sorted(ids)

    def latest(start):
        return json.loads(json.dumps(reader.latestOffset(start, ReadAllAvailable())))

    def mutate(**change):
        time.sleep(1.1)
        found = api.mutate("commerce", "orders", **change)
        return sorted(str(i) for i in found["updated"] + found["inserted"])

    start = json.loads(json.dumps(reader.initialOffset()))
    first = mutate(update=2)
    end = latest(start)
    assert batch(start, end) == first
    assert latest(end) == end  # nothing changed since: no new offset, no batch
    second = mutate(update=[first[0]], insert=1)
    after = latest(end)
    assert batch(end, after) == second
