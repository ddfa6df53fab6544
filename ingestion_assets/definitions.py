"""The code location: every endpoint of every configured source, as Dagster definitions.

Sources come from the YAML files named by ``$INGESTION_SOURCES`` (files or folders, separated
by ``os.pathsep``), or the bundled demo sources. Data lands under ``$INGESTION_DATA_DIR``
(default ``./data``): a local folder or any fsspec URL such as ``s3://bucket/prefix``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

from ingestion_assets.components import source_definitions
from ingestion_assets.executors import executor_from_env
from ingestion_assets.factory import PARQUET_IO_MANAGER_KEY, RAW_IO_MANAGER_KEY
from ingestion_assets.io_managers.parquet import ParquetIOManager
from ingestion_assets.io_managers.raw import RawResponseIOManager
from ingestion_assets.specs import SOURCES_ENV_VAR, Source, load_sources
from ingestion_assets.translation import IngestionTranslator
from ingestion_assets.webhooks.assets import SPOOL_RESOURCE_KEY, default_spool_resource


def data_dir() -> str:
    return os.environ.get("INGESTION_DATA_DIR") or os.path.abspath("data")


def location_definitions(data_path: str | None = None) -> dg.Definitions:
    """What a code location has once, whatever its sources: the IO managers, the webhook
    spool and the executor."""
    base = (data_path or data_dir()).rstrip("/")
    return dg.Definitions(
        resources={
            RAW_IO_MANAGER_KEY: RawResponseIOManager(base_path=base),
            PARQUET_IO_MANAGER_KEY: ParquetIOManager(base_path=base),
            SPOOL_RESOURCE_KEY: default_spool_resource(),
        },
        # $INGESTION_EXECUTOR: Dagster's default, or e.g. celery (see executors.py).
        executor=executor_from_env(),
    )


def build_definitions(
    sources: list[Source], data_path: str | None = None,
    translator: IngestionTranslator | None = None,
) -> dg.Definitions:
    """Definitions for the given sources; the Python API for people who prefer code."""
    return dg.Definitions.merge(
        source_definitions(sources, translator), location_definitions(data_path)
    )


def load_definitions() -> dg.Definitions:
    """The code location: the component instances of the defs folder (``ingestion_assets/defs``,
    one ``defs.yaml`` per source), or the YAML named by ``$INGESTION_SOURCES`` instead."""
    if os.environ.get(SOURCES_ENV_VAR):
        return build_definitions(load_sources())
    return dg.Definitions.merge(defs_folder_definitions(), location_definitions())


def defs_folder_definitions() -> dg.Definitions:
    """The defs folder's component instances: through the dg project's config in a checkout
    (or editable install); an installed package has no pyproject.toml, so there the defs
    module is loaded directly (the same folder, the same components)."""
    package = Path(__file__).parent
    if (package.parent / "pyproject.toml").is_file():
        return dg.load_from_defs_folder(path_within_project=package)
    import ingestion_assets.defs

    return dg.ComponentTree.from_module(
        defs_module=ingestion_assets.defs, project_root=package.parent
    ).build_defs()


defs = load_definitions()
