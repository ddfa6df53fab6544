"""Materializing demo sources with their checks, as the UI's Materialize does."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ingestion_assets.definitions import build_definitions
from ingestion_assets.specs import Source


def run(source: Source, data: Path, instance, partition=None, extra=(), **kwargs):
    """Materialize the source's assets with their checks, as the UI does.

    Webhook events assets (hourly, fed by the receiver) are left out: the UI runs them apart.
    """
    source = source.model_copy(update={"endpoints": [
        e.model_copy(update={"webhook": None}) for e in source.endpoints]})
    defs = build_definitions([source], str(data))
    return dg.materialize(
        [*defs.assets, *defs.asset_checks, *extra],
        resources=defs.resources,
        instance=instance,
        partition_key=partition,
        raise_on_error=False,
        **kwargs,
    )
