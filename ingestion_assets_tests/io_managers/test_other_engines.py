"""Other engines read a table's current versions only: the recipes of ``docs/storage.md``.

A table partition replaced while its previous version is still kept (the grace period) holds
two versions on disk; DuckDB, given the current files (from Python, or from the ``_CURRENT``
pointers in plain SQL), returns exactly the rows of the current versions.
"""

import dagster as dg
import duckdb
import pyarrow as pa

from ingestion_assets.io_managers import ParquetIOManager
from ingestion_assets.io_managers.parquet import current_parquet_files
from ingestion_assets_tests.io_managers._helpers import materialize

DAILY = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_date="2025-02-01")
META = {"ingestion/partition_dimension": "date"}

# The plain-SQL recipe of docs/storage.md: the part files every _CURRENT pointer lists.
SQL_RECIPE = """
SET VARIABLE files = (
  SELECT list(parse_dirpath(filename) || '/v=' || version || '/' || f.name)
  FROM read_json('{table}/**/_CURRENT', filename = true), unnest(files) AS u(f)
  WHERE f.name LIKE 'part-%'
);
"""


def _asset(tag: str, rows: int):
    @dg.asset(key=["shop", "orders"], partitions_def=DAILY, metadata=META)
    def orders(context: dg.AssetExecutionContext) -> pa.Table:
        day = context.partition_key
        return pa.table({"id": [f"{day}-{i}" for i in range(rows)], "tag": [tag] * rows})

    return orders


def _rows(relation) -> list[tuple[str, str]]:
    return sorted(relation.fetchall())


def test_duckdb_reads_exactly_the_current_rows(tmp_path):
    resources = {"io_manager": ParquetIOManager(base_path=str(tmp_path))}
    instance = dg.DagsterInstance.ephemeral()
    assert materialize([_asset("old", 5)], resources, "2025-01-05", instance=instance).success
    assert materialize([_asset("new", 3)], resources, "2025-01-05", instance=instance).success
    assert materialize([_asset("other", 2)], resources, "2025-01-06", instance=instance).success
    table = tmp_path / "shop" / "orders"
    assert len(list((table / "date=2025-01-05").glob("v=*"))) == 2  # the old one is kept
    expected = sorted([(f"2025-01-05-{i}", "new") for i in range(3)]
                      + [(f"2025-01-06-{i}", "other") for i in range(2)])

    # From Python: the file list.
    files = current_parquet_files(table)
    assert _rows(duckdb.read_parquet(files).select("id, tag")) == expected

    # Plain SQL: the pointers.
    con = duckdb.connect()
    con.execute(SQL_RECIPE.format(table=table))
    assert _rows(con.sql("SELECT id, tag FROM read_parquet(getvariable('files'))")) == expected
