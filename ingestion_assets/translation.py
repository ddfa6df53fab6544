"""The translator: how one endpoint's asset specs are named, grouped, owned and automated.

The factory builds a default `dg.AssetSpec` for each asset of an endpoint (``raw`` pages and
the ``table``; for an endpoint declaring ``webhook:`` also ``events_raw`` and
``events_table``, its webhook events assets) and hands it to
``translator.get_asset_spec(data)``; whatever comes back is what Dagster, the checks, the
schedules and the sensors use. Change keys, groups, owners, tags or
automation conditions without forking the factory, either in a component's ``defs.yaml``
(``translation:``, see `ingestion_assets.components`) or by subclassing in Python::

    class Warehouse(IngestionTranslator):
        def get_asset_spec(self, data: EndpointSpecData) -> dg.AssetSpec:
            spec = super().get_asset_spec(data)
            return spec.replace_attributes(key=spec.key.with_prefix("warehouse"))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import dagster as dg

from ingestion_assets.specs import Endpoint, Source

Role = Literal["raw", "table", "events_raw", "events_table"]


@dataclass(frozen=True)
class EndpointSpecData:
    """What a translator sees for one asset: its source, endpoint, role and default spec."""

    source: Source
    endpoint: Endpoint
    role: Role
    spec: dg.AssetSpec


class IngestionTranslator:
    """The default translator keeps the factory's specs as they are."""

    def get_asset_spec(self, data: EndpointSpecData) -> dg.AssetSpec:
        return data.spec


DEFAULT_TRANSLATOR = IngestionTranslator()
