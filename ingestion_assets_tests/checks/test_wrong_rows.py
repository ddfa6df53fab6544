"""APIs that hand over the wrong rows, through Dagster over real HTTP (issue 14, cases 1, 5, 7).

Each test provokes, with the demo API, something that used to end in a green run with wrong
data (or a bare Arrow error), and reads what a user sees: the run's failure, the check
results with their counts, and the stored table.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import orjson
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from ingestion_assets.checks import CONTRACT, SCHEMA_DRIFT, UNIQUENESS, WINDOW
from ingestion_assets.demo_api import demo_env
from ingestion_assets.io_managers import storage
from ingestion_assets.io_managers.parquet import MARKER, read_dead_letters, read_stored_schema
from ingestion_assets.specs import Endpoint, Source, load_sources
from ingestion_assets_tests.materialize import run

UTC = dt.timezone.utc
ORDERS = dg.AssetKey(["commerce", "orders"])
CHARGES = dg.AssetKey(["payments", "charges"])
DAYS = ("2025-01-02", "2025-01-03", "2025-01-04")
#: A shop whose orders endpoint holds 250 orders over nine days.
SHOP_RECORDS = 250


@pytest.fixture
def shop(demo_api_factory, monkeypatch):
    """A demo API with 250 records per endpoint (2025-01-01 .. 2025-01-10) and its sources."""
    api = demo_api_factory(records=SHOP_RECORDS, now="2025-01-10T00:00:00Z")
    for name, value in demo_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DEMO_API_URL", api.url)
    return api, {s.name: s for s in load_sources()}


@pytest.fixture
def sources(demo_sources):
    """The demo sources against the ``demo_api`` fixture (conftest's ``demo_sources``)."""
    return demo_sources


def only(source: Source, endpoint: str, **changes) -> Source:
    """The source with one endpoint, changed as its YAML would be."""
    ep = next(e for e in source.endpoints if e.name == endpoint)
    if changes:
        ep = Endpoint.model_validate({**ep.model_dump(by_alias=True), **changes})
    return source.model_copy(update={"endpoints": [ep]})


def range_tags(first: str, last: str) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last}


def evaluations(result, name: str) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.partition: e for e in result.get_asset_check_evaluations() if e.check_name == name}


def window_of(day: str) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.fromisoformat(day).replace(tzinfo=UTC)
    return start, start + dt.timedelta(days=1)


def ignore_window_filter(api) -> None:
    """The shop stops honouring created_at_min/max (an unsupported or misspelled filter)."""
    api.add_fault(kind="ignore_params", source="commerce", path="/orders.json",
                  params=["created_at_min", "created_at_max"])


def stored_files(folder: Path) -> list[Path]:
    """The Parquet files of one stored partition, as its marker lists them."""
    resolved = storage.resolve_partition(storage.UPath(folder), MARKER)
    assert resolved is not None, f"nothing stored at {folder}"
    marker = orjson.loads((resolved / MARKER).read_bytes())
    return [Path(storage.fs_path(resolved / name)) for name in marker["files"]]


def stored_table(folder: Path) -> pa.Table:
    """The partition as a reader sees it: its files under the schema its marker records."""
    return ds.dataset([str(f) for f in stored_files(folder)],
                      schema=read_stored_schema(folder)).to_table()


# --------------------------------------------------------------------------- case 1: window


def test_api_ignoring_its_window_filter_fails_the_range_run(shop, tmp_path):
    api, sources = shop
    ignore_window_filter(api)
    source = only(sources["commerce"], "orders")
    result = run(source, tmp_path, dg.DagsterInstance.ephemeral(),
                 tags=range_tags(DAYS[0], DAYS[-1]))

    # Before: 750 rows (250 distinct) in 3 partitions and every check green. Now: the table
    # step fails, saying how many records were outside which window, with an example.
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = failure.step_failure_data.error.to_string()
    truth = len(api.records("commerce", "orders", *window_of(DAYS[0])))
    assert 0 < truth < SHOP_RECORDS
    assert (f"{SHOP_RECORDS - truth} of {SHOP_RECORDS} record(s) have created_at outside the "
            "partition window [2025-01-02T00:00:00+00:00, 2025-01-03T00:00:00+00:00)") in message
    assert "e.g. id=" in message and "created_at='20" in message
    assert api.credentials("commerce")["access_token"] not in message
    # Nothing landed: a partition either lands whole and right, or not at all.
    for day in DAYS:
        folder = tmp_path / "commerce" / "orders" / f"date={day}"
        assert storage.resolve_partition(storage.UPath(folder), MARKER) is None


def test_window_guard_can_set_the_strays_aside_and_the_checks_count_them(shop, tmp_path):
    api, sources = shop
    ignore_window_filter(api)
    orders = next(e for e in sources["commerce"].endpoints if e.name == "orders")
    source = only(sources["commerce"], "orders",
                  window={**orders.window.model_dump(), "out_of_window": "dead_letter"})
    result = run(source, tmp_path, dg.DagsterInstance.ephemeral(),
                 tags=range_tags(DAYS[0], DAYS[-1]))

    windows, contracts = evaluations(result, WINDOW), evaluations(result, CONTRACT)
    assert sorted(windows) == list(DAYS)
    for day in DAYS:
        truth = api.records("commerce", "orders", *window_of(day))
        stray = SHOP_RECORDS - len(truth)
        # The table holds exactly the API's records for the day ...
        table = stored_table(tmp_path / "commerce" / "orders" / f"date={day}")
        assert sorted(table.column("id").to_pylist()) == sorted(r["id"] for r in truth)
        # ... the others are dead letters with the reason ...
        dead = read_dead_letters(tmp_path / "commerce" / "orders" / f"date={day}")
        assert dead.num_rows == stray
        assert set(dead.column("_rule").to_pylist()) == {"out_of_window"}
        assert "outside the partition window" in dead.column("_reason")[0].as_py()
        # ... and the window check shows the count on every partition.
        check = windows[day]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        assert check.metadata["out_of_window"].value == stray
        assert check.metadata["checked"].value == SHOP_RECORDS
        assert check.metadata["field"].value == "created_at"
        assert f"{stray} of {SHOP_RECORDS} record(s)" in check.description
        assert not contracts[day].passed
    # Blocking checks failed: the run is not green.
    assert not result.success


def test_kept_strays_are_counted_and_the_uniqueness_check_names_the_partitions(shop, tmp_path):
    api, sources = shop
    ignore_window_filter(api)
    orders = next(e for e in sources["commerce"].endpoints if e.name == "orders")
    source = only(sources["commerce"], "orders",
                  window={**orders.window.model_dump(), "out_of_window": "keep"},
                  checks={"window": {"blocking": False}})
    result = run(source, tmp_path, dg.DagsterInstance.ephemeral(),
                 tags=range_tags(DAYS[0], DAYS[-1]))
    assert result.success  # nothing blocking: the user chose to keep them

    windows, unique = evaluations(result, WINDOW), evaluations(result, UNIQUENESS)
    for day in DAYS:
        truth = len(api.records("commerce", "orders", *window_of(day)))
        assert windows[day].metadata["out_of_window"].value == SHOP_RECORDS - truth
        assert not windows[day].passed
        # Every key of the day is also stored in the other two days.
        check = unique[day]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        others = [d for d in DAYS if d != day]
        shared = {r.data["partition"]: r.data["shared_keys"]
                  for r in check.metadata["partitions"].value.records}
        assert shared == {d: SHOP_RECORDS for d in others}
        assert check.metadata["repeated_keys"].value == 2 * SHOP_RECORDS
        assert all(d in check.description for d in others)


def test_an_honest_api_passes_the_window_and_uniqueness_checks(shop, tmp_path):
    api, sources = shop
    source = only(sources["commerce"], "orders")
    result = run(source, tmp_path, dg.DagsterInstance.ephemeral(),
                 tags=range_tags(DAYS[0], DAYS[-1]))
    assert result.success
    for day in DAYS:
        truth = len(api.records("commerce", "orders", *window_of(day)))
        check = evaluations(result, WINDOW)[day]
        assert check.passed and check.metadata["out_of_window"].value == 0
        assert check.metadata["checked"].value == truth
        unique = evaluations(result, UNIQUENESS)[day]
        assert unique.passed and unique.metadata["repeated_keys"].value == 0
        assert unique.metadata["keys"].value == truth
        assert unique.metadata["partitions_compared"].value == 2


def test_uniqueness_reads_key_sketches_not_the_data_of_other_partitions(shop, tmp_path):
    api, sources = shop
    source = only(sources["commerce"], "orders")
    instance = dg.DagsterInstance.ephemeral()
    assert run(source, tmp_path, instance, tags=range_tags(DAYS[0], DAYS[-1])).success
    # The neighbours' rows are gone; their key sketches (and markers) are enough.
    for day in (DAYS[0], DAYS[2]):
        for part in stored_files(tmp_path / "commerce" / "orders" / f"date={day}"):
            part.unlink()
    ignore_window_filter(api)
    orders = next(e for e in sources["commerce"].endpoints if e.name == "orders")
    keep = only(sources["commerce"], "orders",
                window={**orders.window.model_dump(), "out_of_window": "keep"})
    result = run(keep, tmp_path, instance, DAYS[1])
    check = evaluations(result, UNIQUENESS)[DAYS[1]]
    shared = {r.data["partition"]: r.data["shared_keys"]
              for r in check.metadata["partitions"].value.records}
    assert shared == {
        day: len(api.records("commerce", "orders", *window_of(day))) for day in (DAYS[0], DAYS[2])
    }


# --------------------------------------------------------------------------- case 5: empty


def test_empty_partition_has_every_column_of_the_table(sources, tmp_path):
    source = only(sources["payments"], "charges", schema=None, required=[],
                  checks={"row_count": {"allow_empty": True}})
    charges = tmp_path / "payments" / "charges"
    instance = dg.DagsterInstance.ephemeral()

    # A first, empty partition (after the API's data ends): declared columns and the key.
    assert run(source, tmp_path, instance, "2025-06-01").success
    [first] = stored_files(charges / "date=2025-06-01")
    assert {"id", "created"} <= set(pq.read_schema(first).names)

    # With data stored, an empty partition carries the table's full schema.
    assert run(source, tmp_path, instance, "2025-02-03").success
    assert run(source, tmp_path, instance, "2025-06-02").success
    full = {f.name: f.type for f in pq.read_schema(stored_files(charges / "date=2025-02-03")[0])}
    [empty_file] = stored_files(charges / "date=2025-06-02")
    empty = {f.name: f.type for f in pq.read_schema(empty_file)}
    assert len(full) > 8 and empty == full
    assert pq.read_metadata(empty_file).num_rows == 0


# --------------------------------------------------------------------------- case 7: types


def test_field_changing_type_between_pages_is_kept_as_text_and_flagged(demo_api, sources,
                                                                       tmp_path):
    # From noon on, the API sends `amount` as a string: the day's pages disagree. This used to
    # fail the table step with an Arrow merge error.
    source = only(sources["payments"], "charges", schema=None, required=[])
    demo_api.add_fault(kind="schema_change", source="payments", change="retype",
                       field="amount", type="string", since="2025-02-03T12:00:00Z")
    result = run(source, tmp_path, dg.DagsterInstance.ephemeral(), "2025-02-03")
    truth = demo_api.records("payments", "charges", *window_of("2025-02-03"))
    kinds = {type(r["amount"]) for r in truth}
    assert kinds == {int, str}, kinds

    table = stored_table(tmp_path / "payments" / "charges" / "date=2025-02-03")
    stored = dict(zip(table.column("id").to_pylist(), table.column("amount").cast(pa.string())
                      .to_pylist(), strict=True))
    assert stored == {r["id"]: str(r["amount"]) for r in truth}  # every value, as text

    drift = evaluations(result, SCHEMA_DRIFT)["2025-02-03"]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.ERROR
    rows = [r.data for r in drift.metadata["differences"].records]
    [row] = [r for r in rows if r["against"] == "earlier pages of this partition"]
    assert row["column"] == "amount" and row["change"] == "type_changed"
    assert "page" in row["before"] and "stored as string" in row["now"]
    materialization = next(e for e in result.get_asset_materialization_events()
                           if e.asset_key == CHARGES)
    [conflict] = materialization.materialization.metadata["type_conflicts"].value
    assert conflict["field"] == "amount" and conflict["stored_as"] == "string"


def test_int_then_string_between_pages_no_longer_fails_the_step(shop, tmp_path):
    # Oldest first, five orders a page: the first pages hold order_number as an int, the
    # pages after noon as a string. This failed the table step ("values of mixed types").
    api, sources = shop
    api.add_fault(kind="schema_change", source="commerce", change="retype",
                  field="order_number", type="string", since="2025-01-03T12:00:00Z")
    source = only(sources["commerce"], "orders", params={"limit": 5, "status": "any"})
    result = run(source, tmp_path, dg.DagsterInstance.ephemeral(), "2025-01-03")
    truth = api.records("commerce", "orders", *window_of("2025-01-03"))
    assert {type(r["order_number"]) for r in truth} == {int, str}

    folder = tmp_path / "commerce" / "orders" / "date=2025-01-03"
    # The int pages went to one file before the column became text: the partition's
    # recorded schema (text) is what readers get.
    assert len(stored_files(folder)) >= 2
    table = stored_table(folder)
    assert table.schema.field("order_number").type == pa.string()
    assert dict(zip(table.column("id").to_pylist(), table.column("order_number").to_pylist(),
                    strict=True)) == {r["id"]: str(r["order_number"]) for r in truth}
    drift = evaluations(result, SCHEMA_DRIFT)["2025-01-03"]
    assert not drift.passed
    [row] = [r.data for r in drift.metadata["differences"].records
             if r.data["against"] == "earlier pages of this partition"]
    assert row["column"] == "order_number" and row["before"].startswith("int64 (page 0)")
    # The table step itself succeeded; the drift check (an error, not blocking) is the alarm.
    assert result.success
