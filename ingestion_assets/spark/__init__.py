"""The YAML sources in Spark: a PySpark (4.x) Python Data Source named ``ingestion_assets``.

Install the extra (``pip install "ingestion_assets[spark]"``), register the source once per
session, then read an endpoint as a DataFrame::

    from ingestion_assets.spark import register

    register(spark)
    df = (spark.read.format("ingestion_assets")
          .option("sources", "ingestion_assets/defs").option("source", "payments")
          .option("endpoint", "charges")
          .option("start", "2025-01-01").option("end", "2025-02-01").load())

Each input partition is one of the endpoint's partitions (or a range of pages), fetched by an
executor through the project's HTTP core; credentials come from the executor's environment.
See docs/spark.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["IngestionDataSource", "register"]


def register(spark: Any) -> None:
    """Make ``format("ingestion_assets")`` known to this Spark session."""
    from ingestion_assets.spark.source import IngestionDataSource

    spark.dataSource.register(IngestionDataSource)


def __getattr__(name: str) -> Any:
    # Imported on use: the planning modules (plan.py) work without pyspark installed.
    if name == "IngestionDataSource":
        from ingestion_assets.spark.source import IngestionDataSource

        return IngestionDataSource
    raise AttributeError(name)
