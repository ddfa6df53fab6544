"""Normalization of JSON pages into Arrow batches (plain data: a parser unit test)."""

from datetime import date, datetime, timezone

import orjson
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestion_assets.normalize import (
    TIMESTAMP,
    DeadLetters,
    NormalizationError,
    Normalizer,
    RecordBatchStream,
    parse_type,
    to_utc_timestamp,
)

UTC = timezone.utc


def _table(normalizer: Normalizer, pages) -> pa.Table:
    """All batches, cast to the final schema (what a reader of the partition sees)."""
    batches = list(normalizer.batches(pages))
    schema = normalizer.schema
    return pa.Table.from_batches([_conform(b, schema) for b in batches], schema=schema)


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    arrays = [
        batch.column(f.name).cast(f.type)
        if f.name in batch.schema.names
        else pa.nulls(batch.num_rows, f.type)
        for f in schema
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def test_timestamps_from_offsets_z_seconds_and_millis_become_utc():
    n = Normalizer(timestamp_fields=["at"])
    [batch] = n.batches(
        [
            [
                {"at": "2025-01-05T10:00:00-05:00"},
                {"at": "2025-01-05T15:00:00Z"},
                {"at": "2025-01-05T20:30:00+05:30"},
                {"at": "2025-01-05T15:00:00.000001+00:00"},
                {"at": "2025-01-05T15:00:00"},  # no offset: read as UTC
                {"at": None},
            ]
        ]
    )
    assert batch.schema.field("at").type == TIMESTAMP
    expected = datetime(2025, 1, 5, 15, tzinfo=UTC)
    values = batch.column("at").to_pylist()
    assert values[:3] == [expected] * 3
    assert values[3] == expected.replace(microsecond=1)
    assert values[4] == expected
    assert values[5] is None

    seconds = int(expected.timestamp())
    [batch] = n.batches([[{"at": seconds}, {"at": seconds * 1000}, {"at": seconds + 0.5}]])
    assert batch.column("at").to_pylist() == [
        expected,
        expected,
        expected.replace(microsecond=500_000),
    ]


def test_timestamps_mixing_numbers_and_strings_in_one_page():
    n = Normalizer(timestamp_fields=["at"])
    [batch] = n.batches([[{"at": 1736089200}, {"at": "2025-01-05T15:00:00Z"}]])
    assert batch.column("at").to_pylist() == [datetime(2025, 1, 5, 15, tzinfo=UTC)] * 2


def test_unparseable_timestamp_names_field_page_and_value():
    n = Normalizer(timestamp_fields=["at"])
    with pytest.raises(NormalizationError, match=r"field 'at', page 1: .*'yesterday'") as info:
        list(n.batches([[{"at": "2025-01-05T00:00:00Z"}], [{"at": "yesterday"}]]))
    assert info.value.field == "at" and info.value.page == 1


def test_nested_objects_as_structs_and_lists_as_list_columns():
    n = Normalizer()
    [batch] = n.batches(
        [[{"id": 1, "address": {"country": "US", "geo": {"lat": 1.5}}, "tags": ["a", "b"]}]]
    )
    address = batch.schema.field("address").type
    assert pa.types.is_struct(address)
    assert pa.types.is_struct(address.field("geo").type)
    assert batch.schema.field("tags").type == pa.list_(pa.string())
    assert batch.to_pylist()[0]["address"]["geo"] == {"lat": 1.5}


def test_flatten_mode_joins_names_with_the_separator():
    n = Normalizer(nested="flatten", timestamp_fields=["props__createdAt"])
    [batch] = n.batches(
        [
            [
                {"id": "1", "props": {"createdAt": "2025-01-05T10:00:00+02:00", "x": {"y": 1}}},
                {"id": "2", "props": None},
            ]
        ]
    )
    assert set(batch.schema.names) == {"id", "props__createdAt", "props__x__y"}
    rows = batch.to_pylist()
    assert rows[0]["props__createdAt"] == datetime(2025, 1, 5, 8, tzinfo=UTC)
    assert rows[0]["props__x__y"] == 1
    assert rows[1]["props__x__y"] is None

    dotted = Normalizer(nested="flatten", separator=".")
    [batch] = dotted.batches([[{"a": {"b": 1}}]])
    assert batch.schema.names == ["a.b"]


def test_declared_types_are_enforced_and_come_first():
    n = Normalizer(
        schema={
            "id": "string",
            "amount": "float64",
            "paid": "bool",
            "day": "date",
            "count": "int64",
            "tags": "list<string>",
            "metadata": "json",
            "absent": "string",
        }
    )
    [batch] = n.batches(
        [
            [
                {
                    "extra": 1,
                    "id": 42,
                    "amount": 5,
                    "paid": "true",
                    "day": "2025-01-05",
                    "count": "7",
                    "tags": ["x"],
                    "metadata": {"k": [1, "two"]},
                }
            ]
        ]
    )
    assert batch.schema.names[:8] == [
        "id",
        "amount",
        "paid",
        "day",
        "count",
        "tags",
        "metadata",
        "absent",
    ]
    row = batch.to_pylist()[0]
    assert row["id"] == "42"
    assert row["amount"] == 5.0 and batch.schema.field("amount").type == pa.float64()
    assert row["paid"] is True
    assert row["day"] == date(2025, 1, 5)
    assert row["count"] == 7
    assert orjson.loads(row["metadata"]) == {"k": [1, "two"]}
    assert row["absent"] is None  # declared columns are always present
    assert row["extra"] == 1  # unknown fields are kept as new columns


def test_json_column_accepts_values_of_any_shape():
    n = Normalizer(schema={"payload": "json"})
    [batch] = n.batches([[{"payload": 1}, {"payload": "x"}, {"payload": {"a": [1]}}, {}]])
    assert batch.column("payload").to_pylist() == ["1", '"x"', '{"a":[1]}', None]


def test_declared_type_that_cannot_hold_a_value_fails_loudly():
    n = Normalizer(schema={"count": "int64"})
    with pytest.raises(NormalizationError, match=r"field 'count', page 0"):
        list(n.batches([[{"count": "seven"}]]))


def test_schema_is_stable_across_pages_and_widens_only():
    n = Normalizer()
    pages = [
        [{"id": 1, "score": None, "meta": {}, "tags": []}],
        [{"id": 2, "score": 3, "meta": {"a": 1}, "tags": [1]}],
        [{"id": 3, "score": 2.5, "meta": {"b": "x"}, "tags": [], "new": "col"}],
        [{"id": 4}],
    ]
    batches = list(n.batches(pages))
    assert [b.schema.names for b in batches][-1] == ["id", "score", "meta", "tags", "new"]
    final = n.schema
    assert final.field("score").type == pa.float64()
    assert final.field("meta").type == pa.struct([("a", pa.int64()), ("b", pa.string())])
    assert final.field("tags").type == pa.list_(pa.int64())
    # Every earlier batch is a safe subset of the final schema (what Parquet readers need).
    table = pa.Table.from_batches([_conform(b, final) for b in batches])
    assert table.column("score").to_pylist() == [None, 3.0, 2.5, None]
    assert table.column("new").to_pylist() == [None, None, "col", None]
    # A later page with narrower values is cast to the established type.
    assert batches[3].schema.field("score").type == pa.float64()


def test_scalar_type_conflict_between_pages_widens_to_text_and_is_reported():
    # Case 7 of issue 14: an int on one page, a string on another, in an undeclared column.
    n = Normalizer()
    batches = list(n.batches([[{"amount": 1}], [], [{"amount": "lots"}], [{"amount": 3}]]))
    assert n.schema.field("amount").type == pa.string()
    table = pa.Table.from_batches([_conform(b, n.schema) for b in batches])
    assert table.column("amount").to_pylist() == ["1", "lots", "3"]
    assert n.report()["type_conflicts"] == [
        {"field": "amount", "before": "int64", "now": "string", "stored_as": "string",
         "first_page": 0, "conflicting_page": 2}
    ]


def test_nested_type_conflict_sets_the_later_records_aside_naming_field_and_pages():
    n = Normalizer(dead_letters=DeadLetters())
    batches = list(n.batches([[{"id": 1, "meta": {"a": 1}}],
                              [{"id": 2, "meta": 5}, {"id": 3, "meta": None}]]))
    assert [r["id"] for b in batches for r in b.to_pylist()] == [1, 3]
    [dead] = n.dead_letters.held().to_pylist()
    assert (dead["_rule"], dead["_field"], dead["_page"], dead["_index"]) == (
        "type_conflict", "meta", 1, 0)
    assert "page 1" in dead["_reason"] and "since page 0" in dead["_reason"]
    assert orjson.loads(dead["_record"]) == {"id": 2, "meta": 5}
    # Without a dead-letter sink the page fails, naming the field and the page.
    with pytest.raises(NormalizationError, match=r"field 'meta', page 1"):
        list(Normalizer().batches([[{"meta": {"a": 1}}], [{"meta": 5}]]))


def test_numbers_in_an_established_text_column_are_kept_as_text():
    n = Normalizer()
    batches = list(n.batches([[{"code": "A1"}], [{"code": 7}]]))
    assert batches[1].column("code").to_pylist() == ["7"]
    assert n.report()["type_conflicts"][0]["conflicting_page"] == 1


def test_mixed_types_in_one_page_are_kept_as_text_and_reported():
    n = Normalizer()
    [batch] = n.batches([[{"v": 1}, {"v": "x"}]])
    assert batch.column("v").to_pylist() == ["1", "x"]
    assert n.report()["type_conflicts"][0]["field"] == "v"
    # Declaring the column as text accepts them without a conflict.
    declared = Normalizer(schema={"v": "string"})
    [batch] = declared.batches([[{"v": 1}, {"v": "x"}]])
    assert batch.column("v").to_pylist() == ["1", "x"]
    assert "type_conflicts" not in declared.report()


def test_empty_pages_produce_no_batch_and_declared_schema_stands():
    n = Normalizer(schema={"id": "int64"}, timestamp_fields=["at"])
    assert list(n.batches([[], []])) == []
    assert n.schema.names == ["id", "at"]
    assert n.schema.field("at").type == TIMESTAMP


def test_parse_type_specs():
    assert parse_type("int") == pa.int64()
    assert parse_type("list<timestamp>") == pa.list_(TIMESTAMP)
    assert parse_type({"struct": {"a": "string", "b": {"list": "float64"}}}) == pa.struct(
        [("a", pa.string()), ("b", pa.list_(pa.float64()))]
    )
    assert parse_type(pa.int32()) == pa.int32()
    with pytest.raises(ValueError, match="unknown type spec"):
        parse_type("decimal-ish")


def test_to_utc_timestamp_from_other_zones_and_units():
    aware = pa.array(
        [datetime(2025, 1, 5, 15, tzinfo=UTC)], pa.timestamp("s", tz="America/New_York")
    )
    assert to_utc_timestamp(aware).to_pylist() == [datetime(2025, 1, 5, 15, tzinfo=UTC)]
    nanos = pa.array(["2025-01-05T15:00:00.123456789Z"])
    assert to_utc_timestamp(nanos).to_pylist() == [
        datetime(2025, 1, 5, 15, 0, 0, 123456, tzinfo=UTC)
    ]


def test_record_batch_stream_is_lazy_single_use_and_reports_the_final_schema():
    pulled = []

    def pages():
        for i in range(3):
            pulled.append(i)
            yield [{"id": i}] if i < 2 else [{"id": i, "late": True}]

    stream = RecordBatchStream.from_pages(pages(), source="crm", endpoint="contacts")
    assert pulled == []  # nothing fetched or normalized until the writer pulls
    it = iter(stream)
    next(it)
    assert pulled == [0]
    list(it)
    assert stream.schema.names == ["id", "late"]
    assert (stream.source, stream.endpoint) == ("crm", "contacts")
    with pytest.raises(RuntimeError, match="only once"):
        list(stream)


# -- property: how records are split into pages never changes the result ---------------

_record = st.fixed_dictionaries(
    {"id": st.integers(0, 10**9)},
    optional={
        "amount": st.one_of(st.none(), st.integers(-1000, 1000), st.floats(-1e6, 1e6)),
        "created": st.one_of(
            st.integers(1_600_000_000, 1_800_000_000),
            st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
                lambda d: d.isoformat() + "Z"
            ),
        ),
        # Non-empty objects: a page whose objects are all {} stores them as null (Parquet
        # has no empty struct), while {} next to {"email": ..} becomes {"email": null}.
        "customer": st.fixed_dictionaries(
            {"n": st.integers(0, 9)}, optional={"email": st.text(max_size=5)}
        ),
        "tags": st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
    },
)


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(_record, min_size=1, max_size=30),
    cuts=st.lists(st.integers(0, 30), max_size=6),
)
def test_page_boundaries_do_not_change_the_table(records, cuts):
    bounds = sorted({0, len(records), *(c for c in cuts if c <= len(records))})
    pages = [records[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    whole = _table(Normalizer(timestamp_fields=["created"]), [records])
    paged = _table(Normalizer(timestamp_fields=["created"]), pages)
    assert paged.schema == whole.schema
    assert paged.to_pylist() == whole.to_pylist()
    assert paged.num_rows == len(records)


def test_arrow_uses_the_system_allocator_unless_the_user_chose_one():
    """The tables' allocator (docs/performance.md): set by importing the package first."""
    import os
    import subprocess
    import sys

    code = ("import ingestion_assets, pyarrow as pa\n"
            "print(pa.default_memory_pool().backend_name)\n")
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    for chosen, expected in ((None, "system"), ("jemalloc", "jemalloc")):
        run_env = env if chosen is None else {**env, "ARROW_DEFAULT_MEMORY_POOL": chosen}
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=run_env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected


def test_normalizing_does_not_import_pandas_and_pandas_still_works_after():
    """pyarrow's first list conversion would import pandas (~30 MB) only to probe the list;
    a process that never uses pandas does not pay for it, one that does still can."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from ingestion_assets.normalize import Normalizer\n"
        "batch = Normalizer().normalize_page([{'id': 1, 'name': 'a'}, {'id': 2, 'name': None}])\n"
        "assert batch.num_rows == 2\n"
        "print('pandas' in sys.modules)\n"
        "import pyarrow as pa\n"
        "frame = pa.Table.from_batches([batch]).to_pandas()\n"
        "print(list(frame['id']), pa.Table.from_pandas(frame).num_rows)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["False", "[1, 2] 2"]


# -- property: a page read from its bytes gives what its records give --------------------

_loose_record = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.none(), st.integers(0, 50), st.text(max_size=3)),
        "value": st.one_of(
            # JSON numbers as the HTTP client parses them (orjson: 64-bit integers)
            st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(max_size=4),
        ),
        "at": st.one_of(st.none(), st.sampled_from(
            ["2025-01-05T10:00:00Z", "2025-01-06", "2025-01-04T23:00:00+02:00", "later"]
        ), st.integers(1_736_000_000, 1_736_200_000)),
        "nested": st.one_of(st.none(), st.integers(0, 3), st.fixed_dictionaries(
            {}, optional={"a": st.integers(0, 3), "b": st.text(max_size=2)})),
        "tags": st.lists(st.one_of(st.integers(0, 3), st.text(max_size=2)), max_size=2),
    },
)


def _bytes_normalizer() -> Normalizer:
    from ingestion_assets.normalize import WindowGuard

    return Normalizer(
        schema={"at": "timestamp"}, required=["id"], dead_letters=DeadLetters(),
        window=WindowGuard(start=datetime(2025, 1, 5, tzinfo=UTC),
                           end=datetime(2025, 1, 6, tzinfo=UTC), field="at",
                           policy="dead_letter"),
    )


def _outcome(normalizer: Normalizer, pages) -> dict:
    try:
        batches = [b for b in (normalizer.normalize_page(p) for p in pages) if b is not None]
        normalizer.finish()
    except NormalizationError as exc:
        return {"error": str(exc)}
    return {
        "batches": [(b.schema, b.to_pylist()) for b in batches],
        "schema": normalizer.schema,
        "dead_letters": normalizer.dead_letters.held().to_pylist(),
        "report": normalizer.report(),
    }


@settings(max_examples=150, deadline=None)
@given(pages=st.lists(st.lists(_loose_record, max_size=6), min_size=1, max_size=6))
def test_a_page_read_from_its_bytes_gives_what_its_records_give(pages):
    from ingestion_assets.normalize import JsonPage

    def json_page(records):
        body = orjson.dumps({"total": 99, "page": {"results": records}})
        return JsonPage(body, ("page", "results"), len(records),
                        lambda: orjson.loads(body)["page"]["results"])

    from_records = _outcome(_bytes_normalizer(), pages)
    from_bytes = _outcome(_bytes_normalizer(), [json_page(records) for records in pages])
    assert from_bytes == from_records


def test_a_page_read_from_its_bytes_needs_no_records_when_nothing_changed():
    from ingestion_assets.normalize import JsonPage

    records = [{"id": i, "at": "2025-01-05T10:00:00Z", "n": {"x": i}} for i in range(5)]
    body = orjson.dumps({"results": records})
    asked = []

    def page() -> JsonPage:
        return JsonPage(body, ("results",), 5, lambda: asked.append(1) or records)

    normalizer = _bytes_normalizer()
    batches = [normalizer.normalize_page(page()) for _ in range(3)]
    assert asked == [1]  # the first page sets the types; the others are read from the bytes
    assert [b.to_pylist() for b in batches[1:]] == [batches[0].to_pylist()] * 2


def test_an_integer_beyond_a_doubles_precision_fails_as_its_records_would():
    # A float column, then 2**53 + 1: the records' cast refuses it; read from the bytes with
    # the float type it would become 2**53, a different number stored without a word.
    from ingestion_assets.normalize import JsonPage

    pages = [[{"id": 1, "v": 1.5}], [{"id": 2, "v": 2**53 + 1}]]

    def as_json_page(records):
        body = orjson.dumps({"results": records})
        return JsonPage(body, ("results",), len(records),
                        lambda: orjson.loads(body)["results"])

    for make in (list, as_json_page):
        normalizer = Normalizer()
        normalizer.normalize_page(make(pages[0]))
        with pytest.raises(NormalizationError, match="9007199254740993"):
            normalizer.normalize_page(make(pages[1]))
