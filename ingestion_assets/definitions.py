"""The code location: every endpoint of every configured source, as Dagster definitions.

Sources come from the YAML files named by ``$INGESTION_SOURCES`` (files or folders, separated
by ``os.pathsep``), or the bundled demo sources. Data lands under ``$INGESTION_DATA_DIR``
(default ``./data``): a local folder or any fsspec URL such as ``s3://bucket/prefix``.
"""

from __future__ import annotations

import os

import dagster as dg

from ingestion_assets.automation import build_schedules, build_sensors
from ingestion_assets.checks import build_checks
from ingestion_assets.executors import executor_from_env
from ingestion_assets.factory import (
    PARQUET_IO_MANAGER_KEY,
    RAW_IO_MANAGER_KEY,
    api_resource_key,
    build_assets,
)
from ingestion_assets.io_managers.parquet import ParquetIOManager
from ingestion_assets.io_managers.raw import RawResponseIOManager
from ingestion_assets.resources import ApiResource
from ingestion_assets.specs import Source, load_sources
from ingestion_assets.webhooks.assets import (
    SPOOL_RESOURCE_KEY,
    build_webhook_assets,
    build_webhook_sensors,
    default_spool_resource,
)


def data_dir() -> str:
    return os.environ.get("INGESTION_DATA_DIR") or os.path.abspath("data")


def build_definitions(sources: list[Source], data_path: str | None = None) -> dg.Definitions:
    """Definitions for the given sources; the Python API for people who prefer code."""
    base = (data_path or data_dir()).rstrip("/")
    return dg.Definitions(
        # Endpoints declaring `webhook:` also get events assets fed by the receiver's spool.
        assets=[*build_assets(sources), *build_webhook_assets(sources)],
        # Row count, schema drift, contract, window and uniqueness checks (checks.py).
        asset_checks=build_checks(sources),
        # Per-endpoint schedules and sensors from the YAML's `automation:` (automation.py).
        schedules=build_schedules(sources),
        sensors=[*build_sensors(sources), *build_webhook_sensors(sources)],
        resources={
            **{api_resource_key(s): ApiResource.from_source(s) for s in sources},
            RAW_IO_MANAGER_KEY: RawResponseIOManager(base_path=base),
            PARQUET_IO_MANAGER_KEY: ParquetIOManager(base_path=base),
            SPOOL_RESOURCE_KEY: default_spool_resource(),
        },
        # $INGESTION_EXECUTOR: Dagster's default, or e.g. celery (see executors.py).
        executor=executor_from_env(),
    )


defs = build_definitions(load_sources())
