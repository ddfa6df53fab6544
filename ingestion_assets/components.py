"""`RestApiSource`: one REST API source as a Dagster Component (one ``defs.yaml`` each).

``dg scaffold defs ingestion_assets.components.RestApiSource my_api`` writes a commented
``defs/my_api/defs.yaml``. Its ``attributes`` are one source, in the same schema as a
``sources:`` entry, validated by the models of `ingestion_assets.specs` (errors name the file
and line). Secrets are ``{{ env.NAME }}`` or ``{env: NAME}``: both stay references to the
variable, read when a request needs it. ``translation:`` changes the specs of every asset
(key, key_prefix, group_name, owners, tags, automation_condition, ...), rendered per asset
with ``source``, ``endpoint``, ``role`` (``raw`` or ``table``) and ``spec`` in scope; a
subclass may override `RestApiSource.get_asset_spec` instead.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, create_model

from ingestion_assets.automation import build_schedules, build_sensors
from ingestion_assets.checks import build_checks
from ingestion_assets.dagster_shim import TranslatorResolvingInfo
from ingestion_assets.factory import api_resource_key, build_assets
from ingestion_assets.resources import ApiResource
from ingestion_assets.specs import Source, SpecError, load_component_file
from ingestion_assets.translation import EndpointSpecData, IngestionTranslator
from ingestion_assets.webhooks.assets import build_webhook_assets, build_webhook_sensors


def source_definitions(
    sources: list[Source], translator: IngestionTranslator | None = None
) -> dg.Definitions:
    """The assets, checks, schedules, sensors and API resources of the given sources (the
    location-wide IO managers and executor are added by `ingestion_assets.definitions`)."""
    return dg.Definitions(
        # Endpoints declaring `webhook:` also get events assets fed by the receiver's spool
        # (translated too: roles `events_raw` and `events_table`).
        assets=[*build_assets(sources, translator), *build_webhook_assets(sources, translator)],
        # Row count, schema drift, contract, window and uniqueness checks (checks.py).
        asset_checks=build_checks(sources, translator),
        # Per-endpoint schedules and sensors from the YAML's `automation:` (automation.py).
        schedules=build_schedules(sources, translator),
        sensors=[*build_sensors(sources, translator),
                 *build_webhook_sensors(sources, translator)],
        resources={api_resource_key(s): ApiResource.from_source(s) for s in sources},
    )


@functools.cache
def _attributes_model() -> type[dg.Model]:
    """The attribute model Dagster checks ``defs.yaml`` against: every field of `Source` (by
    name; the values are validated by `Source` itself in `RestApiSource.load`, after the
    ``${NAME}`` and ``{{ env.NAME }}`` references are read), plus ``translation``."""
    fields: dict[str, Any] = {
        (info.alias or name): (
            Any, Field(default=... if info.is_required() else None, description=info.description)
        )
        for name, info in Source.model_fields.items()
    }
    fields["translation"] = (
        dg.AssetAttributesModel | str | None,
        Field(default=None, description="Changes each asset's spec (templated per asset with "
              "source, endpoint, role and spec in scope)."),
    )
    return create_model("RestApiSourceAttributes", __base__=dg.Model, **fields)


_SCAFFOLD = """\
# A REST API source: its endpoints become partitioned assets (raw pages + a Parquet table).
# The attributes use the same schema as a `sources:` entry (docs/configuration.md); they are
# validated when the definitions load (`dg check defs`), with the file and line of a mistake.
type: {type_name}
attributes:
  name: {name}
  description: What this API serves.
  # ${{NAME:-default}} reads a plain setting from the environment.
  base_url: ${{{env}_URL:-https://api.example.com/v1}}
  # Secrets: "{{{{ env.NAME }}}}" or {{env: NAME}}, read only when a request needs them.
  auth: {{type: bearer, token: "{{{{ env.{env}_TOKEN }}}}"}}
  # auth: {{type: api_key, name: X-Api-Key, key: {{env: {env}_KEY}}}}   # or basic, oauth2_client_credentials
  rate_limit: {{requests_per_second: 5, burst: 5}}
  owners: []
  tags: {{}}
  endpoints:
    - name: items
      path: /items
      description: Items by creation day.
      records_path: data            # where the records are in each page (dotted path)
      primary_key: id
      params: {{limit: 100}}
      # offset, page_number, cursor, header_cursor, keyset, link, single or custom
      pagination: {{type: cursor, cursor_param: starting_after, cursor_field: id, has_more_path: has_more}}
      partitioning: {{type: daily, start: "2025-01-01"}}    # or hourly, weekly, monthly, static, none
      window: {{start_param: created_gte, end_param: created_lt, format: iso_z}}
      timestamp_fields: [created]
      # automation:
      #   schedule: {{running: true, delay_minutes: 30, lookback: 1}}
# translation:                      # change every asset's spec (role is raw or table)
#   key_prefix: warehouse
#   group_name: "{{{{ source.name }}}}_{{{{ role }}}}"
#   owners: [team:data]
#   automation_condition: "{{{{ automation_condition.on_cron('0 2 * * *') }}}}"
"""


class RestApiSourceScaffolder(dg.Scaffolder):
    """Writes a commented ``defs.yaml`` for a new source named after its folder."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        name = re.sub(r"\W", "_", request.target_path.name)
        if not re.match(r"^[A-Za-z]", name):
            name = f"api_{name}"
        request.target_path.mkdir(parents=True, exist_ok=True)
        (request.target_path / "defs.yaml").write_text(
            _SCAFFOLD.format(type_name=request.type_name, name=name, env=name.upper()),
            encoding="utf-8",
        )


@dg.scaffold_with(RestApiSourceScaffolder)
class RestApiSource(dg.Component):
    """A REST API source: its endpoints as partitioned raw + table assets, with checks,
    schedules and sensors. Subclass and override `get_asset_spec` to translate specs."""

    def __init__(self, source: Source, translation: TranslatorResolvingInfo | None = None):
        self.source = source
        self.translation = translation

    @classmethod
    def get_model_cls(cls) -> type[dg.Model]:
        return _attributes_model()

    @classmethod
    def load(cls, attributes: Any, context: dg.ComponentLoadContext) -> RestApiSource:
        path = Path(context.path)
        path = path / "defs.yaml" if path.is_dir() else path
        name = getattr(attributes, "name", None)
        sources, problems = load_component_file(path, only=name, any_type=True)
        if problems:
            raise SpecError(problems)
        if len(sources) != 1:
            raise SpecError([f"{path}: expected one source named {name!r}"])
        translation = getattr(attributes, "translation", None)
        info = (
            TranslatorResolvingInfo(
                asset_attributes=translation,
                resolution_context=context.resolution_context.at_path("attributes"),
                model_key="translation",
            )
            if translation is not None
            else None
        )
        return cls(sources[0], info)

    def get_asset_spec(self, data: EndpointSpecData) -> dg.AssetSpec:
        """The spec of one asset of an endpoint: the factory's, changed by ``translation:``."""
        if self.translation is None:
            return data.spec
        return self.translation.get_asset_spec(data.spec, {
            "source": data.source, "endpoint": data.endpoint, "role": data.role,
            "spec": data.spec,
        })

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return source_definitions([self.source], translator=self)
