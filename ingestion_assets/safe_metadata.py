"""The one metadata redactor: every metadata value the project emits passes through here.

Materialization metadata (previews, schema samples, request statistics, errors) and check
metadata are stored in the Dagster event log, shown in the UI and kept forever. An API that
echoes request headers or parameters in its records (debugging endpoints, audit logs) would
put credentials there. :func:`redact_metadata` masks, in every kind of metadata value:

* every secret registered by the HTTP core (tokens, keys, passwords, in any encoding);
* values of record fields and table columns named like credentials (``Authorization``,
  ``api_key``, ``client_secret``...), also inside JSON and struct values.

The raw pages and the Parquet table keep what the API sent (an endpoint's ``mask_columns``
masks named columns in the table too); see docs/security.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
import orjson

from ingestion_assets.endpoint_io import mask_columns  # noqa: F401 - public here too
from ingestion_assets.http.redaction import (
    MASK,
    is_sensitive_column,
    redact_record,
    redact_text,
    redact_url,
)


def redact_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a metadata mapping with every secret masked (keys are kept)."""
    return {key: redact_metadata_value(value) for key, value in metadata.items()}


def redact_metadata_value(value: Any) -> Any:
    """One metadata value with every secret masked; other values are returned unchanged."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dg.MarkdownMetadataValue):
        return dg.MetadataValue.md(redact_text(value.md_str or ""))
    if isinstance(value, dg.TextMetadataValue):
        return dg.MetadataValue.text(redact_text(value.text or ""))
    if isinstance(value, dg.JsonMetadataValue):
        return dg.MetadataValue.json(redact_record(value.data))
    if isinstance(value, dg.UrlMetadataValue):
        return dg.MetadataValue.url(redact_url(value.url or ""))
    if isinstance(value, dg.PathMetadataValue):
        return dg.MetadataValue.path(redact_text(str(value.path)))
    if isinstance(value, dg.TableMetadataValue):
        return dg.MetadataValue.table(
            records=[dg.TableRecord(redact_record(dict(r.data))) for r in value.records],
            schema=value.schema,
        )
    if isinstance(value, dict | list) or type(value) is tuple:  # Dagster records are tuples
        return redact_record(value)
    return value


def safe_cell(column: str, value: Any) -> Any:
    """A table cell as it may be shown (previews, samples): masked when the column is named
    like a credential, redacted otherwise."""
    if value is None:
        return None
    if is_sensitive_column(column):
        return MASK
    return redact_record(value)


def safe_json_text(text: Any) -> Any:
    """A JSON document given as text (a dead letter's ``_record``), redacted as a record."""
    if not isinstance(text, str):
        return safe_cell("", text)
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return redact_text(text)
    return orjson.dumps(redact_record(parsed)).decode()
