"""IO managers: raw pages (zstd + manifest) and Parquet tables, atomic per partition."""

from ingestion_assets.io_managers.parquet import ParquetIOManager
from ingestion_assets.io_managers.raw import (
    RawPartition,
    RawPartitionCorrupted,
    RawPartitionSet,
    RawResponseIOManager,
)

__all__ = [
    "ParquetIOManager",
    "RawPartition",
    "RawPartitionCorrupted",
    "RawPartitionSet",
    "RawResponseIOManager",
]
