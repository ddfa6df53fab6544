"""Reading the YAML sources with Spark: a month from the API, and the tables Dagster wrote.

Run it from the checkout, with the demo API running (``scripts/dev.sh`` starts it on
127.0.0.1:8765, or ``.venv/bin/python -m ingestion_assets.demo_api``) and the spark extra
installed (``.venv/bin/pip install -e ".[spark]"``; Java 17)::

    eval "$(.venv/bin/python -m ingestion_assets.demo_api --print-env)"   # or export the keys
    .venv/bin/python examples/spark_read.py --start 2026-10-01 --end 2026-11-01

Cell by cell, as in a notebook: a local Spark session, the ``ingestion_assets`` data source,
a month of ``payments / charges`` read from the API in parallel (one input partition per day),
then, when Dagster has materialized days of that month (``data/payments/charges``), the same
days read from the Hive Parquet table through its ``_CURRENT`` pointers, and the two compared.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# %% arguments
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--start", default="2025-01-01", help="first day (UTC)")
parser.add_argument("--end", default="2025-02-01", help="day after the last (UTC)")
parser.add_argument("--sources", default=str(ROOT / "ingestion_assets" / "defs"))
parser.add_argument("--data", default=str(ROOT / "data"), help="where Dagster wrote the tables")
args = parser.parse_args()

# %% a local Spark session (driver on loopback, no UI), the data source registered
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
from pyspark.sql import SparkSession  # noqa: E402

from ingestion_assets.spark import register  # noqa: E402

spark = (SparkSession.builder.master("local[4]").appName("ingestion_assets example")
         .config("spark.driver.host", "127.0.0.1")
         .config("spark.driver.bindAddress", "127.0.0.1")
         .config("spark.ui.enabled", "false")
         .config("spark.sql.session.timeZone", "UTC").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
register(spark)

# %% a month of charges from the API: one input partition per day, 4 tasks sharing the rate
charges = (spark.read.format("ingestion_assets").option("sources", args.sources)
           .option("source", "payments").option("endpoint", "charges")
           .option("start", args.start).option("end", args.end)
           .option("concurrency", "4").load())
print(f"{charges.rdd.getNumPartitions()} input partitions")
charges.printSchema()
from_api = charges.cache()
from_api.groupBy("status").count().orderBy("status").show()

# %% the same days from the Parquet table Dagster wrote (current versions only)
from ingestion_assets.io_managers.parquet import current_parquet_files  # noqa: E402

table = Path(args.data) / "payments" / "charges"
files = current_parquet_files(str(table)) if table.exists() else []
if not files:
    print(f"no table at {table}: materialize payments/charges in Dagster to compare")
else:
    stored = spark.read.parquet(*files)
    window = (stored.created >= args.start) & (stored.created < args.end)
    stored = stored.where(window).select(*from_api.columns)
    days = [r[0] for r in stored.selectExpr("to_date(created)").distinct().collect()]
    api_days = from_api.where(from_api.created.cast("date").isin(days))
    print(f"{len(days)} day(s) stored by Dagster; rows: table {stored.count()}, "
          f"API {api_days.count()}; differing rows: "
          f"{api_days.exceptAll(stored).count() + stored.exceptAll(api_days).count()}")

spark.stop()
