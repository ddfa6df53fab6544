"""An endpoint's ``freshness:`` as Dagster sees it, and the columns that date its records.

Freshness is not a check step (see `ingestion_assets.checks`): ``freshness.max_lag_hours``
becomes the table asset's Dagster freshness policy, and every materialization carries
``newest_record_at`` and ``lag_hours``, computed from :func:`time_columns` (see the
Parquet IO manager).
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from ingestion_assets.specs import Endpoint


def freshness_policy(endpoint: Endpoint) -> dg.FreshnessPolicy | None:
    """The endpoint's ``freshness`` as a Dagster freshness policy (None when not set)."""
    spec = endpoint.freshness
    if spec is None:
        return None
    return dg.FreshnessPolicy.time_window(
        fail_window=timedelta(hours=spec.max_lag_hours),
        warn_window=timedelta(hours=spec.warn_lag_hours) if spec.warn_lag_hours else None,
    )


def time_columns(endpoint: Endpoint) -> list[str]:
    """Columns whose newest value is the 'newest record' of a partition (for the lag)."""
    if endpoint.freshness and endpoint.freshness.timestamp_field:
        return [endpoint.freshness.timestamp_field]
    return endpoint.record_time_fields
