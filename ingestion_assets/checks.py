"""Asset checks on every table asset: row count, schema drift, contract, window, uniqueness.

Per endpoint, one check step (a ``multi_asset_check``) evaluates the partitions the run just
materialized, each on its own (a single-run backfill of 60 days gives 60 results per check):

* ``row_count`` — rows == raw records - dead letters; raw records == the API's declared
  total (when it declares one); not zero unless ``allow_empty``; not below
  ``min_fraction_of_median`` x the median of the last ``median_window`` partitions.
* ``schema_drift`` — the partition's columns against the previous materialization and the
  declared schema: added, removed (or emptied), type changed, nullability changed.
* ``contract`` — the records set aside as dead letters (missing required field, declared
  type that cannot be cast, model error) stay at or below ``max_dead_letters``.
* ``window`` (time-partitioned endpoints) — no record's partition timestamp fell outside the
  partition's ``[start, end)``: the count the window guard (normalize.py) wrote on the
  materialization, whatever ``window.out_of_window`` did with those records.
* ``uniqueness`` (partitioned endpoints) — no primary key of the partition is also stored in
  one of the ``partitions`` partitions on either side, compared through the key sketches
  stored beside each partition (never the data).

Everything a check needs is in the materialization metadata in the instance's event log
(row counts, column schema, dead-letter counts, the raw asset's record count and declared
total), so a check reads a handful of event-log records whatever the number of
partitions, and never the data; only the contract check reads a few rows of the
partition's own dead-letter file, as a sample.

Freshness is not a check step: ``freshness.max_lag_hours`` becomes the table asset's Dagster
freshness policy (`ingestion_assets.freshness.freshness_policy`), and every materialization carries
``newest_record_at`` and ``lag_hours`` (see the Parquet IO manager).
"""

import statistics
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg
import numpy as np

from ingestion_assets.check_events import Materialization, MaterializationLog
from ingestion_assets.dagster_shim import check_output_name
from ingestion_assets.factory import endpoint_specs
from ingestion_assets.http.redaction import redact_text
from ingestion_assets.io_managers.parquet import (
    PROVENANCE_COLUMNS,
    read_dead_letters,
    read_key_sketch,
)
from ingestion_assets.normalize import EXTRA_COLUMN, TIMESTAMP, parse_type
from ingestion_assets.partitions import partitions_def
from ingestion_assets.safe_metadata import redact_metadata, safe_cell, safe_json_text
from ingestion_assets.specs import Endpoint, Source
from ingestion_assets.translation import IngestionTranslator

ROW_COUNT = "row_count"
SCHEMA_DRIFT = "schema_drift"
CONTRACT = "contract"
WINDOW = "window"
UNIQUENESS = "uniqueness"

#: Built-in defaults, used when neither the check nor the endpoint's `checks:` sets one.
DEFAULT_SEVERITY = {ROW_COUNT: "error", CONTRACT: "error", WINDOW: "error", UNIQUENESS: "warn"}
DEFAULT_BLOCKING = {ROW_COUNT: True, SCHEMA_DRIFT: False, CONTRACT: True, WINDOW: True,
                    UNIQUENESS: False}
DEFAULT_DRIFT_SEVERITY = {
    "added": "warn",
    "removed": "error",
    "type_changed": "error",
    "nullability_changed": "warn",
}

_SEVERITY = {"warn": dg.AssetCheckSeverity.WARN, "error": dg.AssetCheckSeverity.ERROR}
_SAMPLE_ROWS = 5


# --------------------------------------------------------------------------- settings


def check_severity(endpoint: Endpoint, name: str) -> str:
    """The configured severity of a check: the check's, the endpoint's, else the default."""
    own = getattr(endpoint.checks, name).severity
    return own or endpoint.checks.severity or DEFAULT_SEVERITY.get(name, "error")


def check_blocking(endpoint: Endpoint, name: str) -> bool:
    own = getattr(endpoint.checks, name).blocking
    if own is not None:
        return own
    if endpoint.checks.blocking is not None:
        return endpoint.checks.blocking
    return DEFAULT_BLOCKING[name]


def drift_severity(endpoint: Endpoint, kind: str) -> str:
    """Severity of one kind of schema change (added, removed, type/nullability changed)."""
    drift = endpoint.checks.schema_drift
    return (
        getattr(drift, kind)
        or drift.severity
        or endpoint.checks.severity
        or DEFAULT_DRIFT_SEVERITY[kind]
    )


# --------------------------------------------------------------------------- event log


def recent_partition_row_counts(
    log: MaterializationLog,
    key: dg.AssetKey,
    before: int,
    exclude: str | None,
    window: int,
) -> list[tuple[str | None, int]]:
    """Row counts of the last ``window`` distinct partitions materialized before a storage id.

    Reads the event log newest first (pages shared by every partition of the step) and
    stops as soon as it has ``window`` partitions: the cost does not grow with the asset's
    size.
    """
    seen: dict[str | None, int] = {}
    for mat in log.history(key, before):
        if mat.partition == exclude or mat.partition in seen:
            continue
        rows = mat.value("dagster/row_count")
        if isinstance(rows, int):
            seen[mat.partition] = rows
        if len(seen) >= window:
            break
    return list(seen.items())


# --------------------------------------------------------------------------- row count


def evaluate_row_count(
    log: MaterializationLog, endpoint: Endpoint, raw_key: dg.AssetKey,
    table_key: dg.AssetKey, table: Materialization,
) -> tuple[bool, dict[str, Any], str]:
    cfg = endpoint.checks.row_count
    rows = int(table.value("dagster/row_count", 0))
    dead = int(table.value("dead_letters", 0) or 0)
    meta: dict[str, Any] = {"rows": rows, "dead_letters": dead}
    failures: list[str] = []

    raw = log.latest(raw_key, table.partition, before=table.storage_id)
    if raw is not None:
        received = int(raw.value("records", 0))
        meta["raw_records"] = received
        if rows != received - dead:
            failures.append(
                f"{rows} rows but the raw pages hold {received} records and {dead} went to "
                f"dead letters ({received - dead - rows} unaccounted for)"
            )
        declared = raw.value("api/declared_total")
        if declared is None:
            declared = (raw.value("request_stats") or {}).get("declared_total")
        if declared is not None:
            meta["declared_total"] = int(declared)
            if cfg.match_declared_total and received != int(declared):
                failures.append(f"the API declared {declared} records, {received} were received")

    if rows == 0 and not cfg.allow_empty:
        failures.append(
            "the partition is empty"
            + (f" (all {dead} records went to dead letters)" if dead else "")
            + "; set checks.row_count.allow_empty if that is normal"
        )

    if cfg.min_fraction_of_median > 0:
        history = recent_partition_row_counts(
            log, table_key, table.storage_id, table.partition, cfg.median_window
        )
        meta["median_partitions"] = len(history)
        if len(history) >= cfg.median_min_partitions:
            median = statistics.median(count for _, count in history)
            minimum = cfg.min_fraction_of_median * median
            meta["median_of_last_partitions"] = float(median)
            meta["min_expected_rows"] = float(minimum)
            if rows < minimum:
                failures.append(
                    f"{rows} rows is below {cfg.min_fraction_of_median:g} x the median "
                    f"({median:g}) of the last {len(history)} partitions"
                )
        else:
            meta["median_rule"] = (
                f"not applied: {len(history)} earlier partition(s), "
                f"{cfg.median_min_partitions} needed"
            )
    description = "; ".join(failures) if failures else f"{rows} rows, as expected"
    return not failures, meta, description


# --------------------------------------------------------------------------- schema drift


def _columns(table_schema: Any) -> dict[str, tuple[str, bool]]:
    """``{column: (type, nullable)}`` from a ``dagster/column_schema`` value."""
    out: dict[str, tuple[str, bool]] = {}
    for column in getattr(table_schema, "columns", None) or []:
        if column.name in PROVENANCE_COLUMNS:
            continue
        constraints = column.constraints
        nullable = True if constraints is None else bool(constraints.nullable)
        out[column.name] = (str(column.type), nullable)
    return out


def declared_columns(endpoint: Endpoint) -> dict[str, tuple[str, bool]]:
    """The columns the endpoint's YAML promises: ``{column: (arrow type, nullable)}``."""
    required = set(endpoint.required) | set(endpoint.primary_key)
    declared: dict[str, tuple[str, bool]] = {}
    for name, spec in (endpoint.schema_ or {}).items():
        type_ = parse_type(spec)
        declared[name] = ("string" if type_ == "json" else str(type_), name not in required)
    for name in endpoint.timestamp_fields:
        declared.setdefault(name, (str(TIMESTAMP), name not in required))
    if endpoint.extra_fields == "json" and declared:
        declared[EXTRA_COLUMN] = ("string", True)
    return declared


def schema_changes(
    current: dict[str, tuple[str, bool]],
    previous: dict[str, tuple[str, bool]] | None,
    declared: dict[str, tuple[str, bool]],
    emptied: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Differences as rows: column, change, before, now, against."""
    changes: list[dict[str, Any]] = []

    def add(column: str, change: str, before: Any, now: Any, against: str) -> None:
        changes.append(
            {"column": column, "change": change, "before": str(before), "now": str(now),
             "against": against}
        )

    if previous is not None:
        for name, (type_, nullable) in current.items():
            if name not in previous:
                add(name, "added", "-", type_, "previous materialization")
                continue
            before_type, before_nullable = previous[name]
            if before_type != type_ and "null" not in (before_type, type_):
                add(name, "type_changed", before_type, type_, "previous materialization")
            if before_nullable != nullable:
                add(name, "nullability_changed",
                    "nullable" if before_nullable else "not null",
                    "nullable" if nullable else "not null", "previous materialization")
        for name, (type_, _) in previous.items():
            if name not in current:
                add(name, "removed", type_, "-", "previous materialization")
        for name in emptied:
            if name in current and name not in PROVENANCE_COLUMNS:
                add(name, "removed", "had values", "no values in this partition",
                    "previous materialization")
    for name, (type_, nullable) in declared.items():
        if name not in current:
            add(name, "removed", type_, "-", "declared schema")
            continue
        now_type, now_nullable = current[name]
        if now_type != type_:
            add(name, "type_changed", type_, now_type, "declared schema")
        if not nullable and now_nullable:
            add(name, "nullability_changed", "not null", "nullable", "declared schema")
    return changes


def evaluate_schema_drift(
    log: MaterializationLog, endpoint: Endpoint, table_key: dg.AssetKey,
    table: Materialization,
) -> tuple[bool, dict[str, Any], str, str]:
    current = _columns(table.value("dagster/column_schema"))
    previous_mat = log.latest(table_key, before=table.storage_id)
    previous = _columns(previous_mat.value("dagster/column_schema")) if previous_mat else None
    if previous is not None and not table.value("dagster/row_count", 0):
        # An empty partition has only its declared columns (nothing to infer the others
        # from): compare those, and leave emptiness to the row_count check.
        previous = {n: c for n, c in previous.items() if n in current}
    emptied: list[str] = []
    if previous_mat is not None and table.value("dagster/row_count", 0):
        now_empty = set(table.value("null_columns") or [])
        before_empty = set(previous_mat.value("null_columns") or [])
        if previous_mat.value("dagster/row_count", 0):
            emptied = sorted(now_empty - before_empty)
    changes = schema_changes(current, previous, declared_columns(endpoint), emptied)
    for conflict in table.value("type_conflicts") or []:
        # Pages of this partition disagreed on an undeclared column: stored as text.
        changes.append({
            "column": conflict["field"], "change": "type_changed",
            "before": f"{conflict['before']} (page {conflict['first_page']})",
            "now": f"{conflict['now']} (page {conflict['conflicting_page']}), stored as "
                   f"{conflict['stored_as']}",
            "against": "earlier pages of this partition",
        })
    for row in changes:
        row["severity"] = drift_severity(endpoint, row["change"])
    meta: dict[str, Any] = {
        "changes": len(changes),
        "columns": len(current),
        "compared_with_partition": (
            "(none)" if previous_mat is None
            else "(snapshot)" if previous_mat.partition is None
            else str(previous_mat.partition)
        ),
    }
    if changes:
        meta["differences"] = dg.MetadataValue.table(
            records=[dg.TableRecord(row) for row in changes],
            schema=dg.TableSchema(
                columns=[dg.TableColumn(name, "string") for name in
                         ("column", "change", "before", "now", "against", "severity")]
            ),
        )
    severity = "error" if any(r["severity"] == "error" for r in changes) else "warn"
    if not changes:
        return True, meta, "no schema changes", severity
    description = "; ".join(
        f"{r['change'].replace('_', ' ')}: {r['column']} ({r['before']} -> {r['now']}, "
        f"vs {r['against']})" for r in changes[:10]
    )
    return False, meta, description, severity


# --------------------------------------------------------------------------- contract


def evaluate_contract(
    endpoint: Endpoint, table: Materialization
) -> tuple[bool, dict[str, Any], str]:
    cfg = endpoint.checks.contract
    dead = int(table.value("dead_letters", 0) or 0)
    rows = int(table.value("dagster/row_count", 0))
    meta: dict[str, Any] = {
        "dead_letters": dead,
        "rows": rows,
        "max_dead_letters": cfg.max_dead_letters,
    }
    if dead:
        reasons = table.value("dead_letter_reasons") or []
        meta["reasons"] = dg.MetadataValue.table(
            records=[dg.TableRecord({"rule": r["rule"], "field": r["field"] or "",
                                     "count": r["count"]}) for r in reasons],
            schema=dg.TableSchema(columns=[dg.TableColumn("rule", "string"),
                                           dg.TableColumn("field", "string"),
                                           dg.TableColumn("count", "int")]),
        )
        uri = table.metadata.get("dead_letters_uri")
        if uri is not None:
            meta["dead_letters_uri"] = uri
        folder = table.value("dagster/uri")
        if folder:
            sample = read_dead_letters(folder, limit=_SAMPLE_ROWS)
            meta["sample"] = dg.MetadataValue.md(_sample_markdown(sample.to_pylist()))
    passed = dead <= cfg.max_dead_letters
    if dead == 0:
        description = "every record met the contract"
    else:
        top = ", ".join(
            f"{r['rule']}{' ' + r['field'] if r['field'] else ''}: {r['count']}"
            for r in (table.value("dead_letter_reasons") or [])[:3]
        )
        description = (
            f"{dead} record(s) went to dead letters ({top}); "
            + ("above" if not passed else "within")
            + f" the threshold of {cfg.max_dead_letters}"
        )
    return passed, meta, description


# --------------------------------------------------------------------------- window


def evaluate_window(
    endpoint: Endpoint, table: Materialization
) -> tuple[bool, dict[str, Any], str, str]:
    outside = table.value("window/out_of_window")
    if outside is None:
        field = endpoint.window_field
        text = (
            "the window guard did not run: no record field gives the partition time; set "
            "window.field (or timestamp_fields)" if field is None
            else "the window guard did not run on this materialization"
        )
        return False, {"out_of_window": 0}, text, "warn"
    outside = int(outside)
    checked = int(table.value("window/checked", 0) or 0)
    field, window = table.value("window/field"), table.value("window/window")
    policy = table.value("window/policy")
    meta: dict[str, Any] = {
        "out_of_window": outside,
        "checked": checked,
        "field": str(field),
        "window": str(window),
        "policy": str(policy),
        "tolerance_seconds": float(table.value("window/tolerance_seconds", 0) or 0),
    }
    example = table.value("window/example")
    if example:
        meta["example"] = dg.MetadataValue.json(example)
    severity = check_severity(endpoint, WINDOW)
    if not outside:
        return True, meta, f"all {checked} record(s) have {field} in {window}", severity
    done = {"dead_letter": "set aside as dead letters", "keep": "kept in the table",
            "fail": "the step failed"}.get(str(policy), str(policy))
    return False, meta, (
        f"{outside} of {checked} record(s) have {field} outside {window} ({done}); the API "
        "may ignore its window filter"
    ), severity


# --------------------------------------------------------------------------- uniqueness


def neighbour_partitions(
    instance: dg.DagsterInstance, pdef: dg.PartitionsDefinition, partition: str, count: int
) -> list[str]:
    """Up to ``count`` partition keys on each side of ``partition``, nearest first."""
    return neighbours_of(instance, pdef, [partition], count)[partition]


def neighbours_of(
    instance: dg.DagsterInstance, pdef: dg.PartitionsDefinition, partitions: list[str],
    count: int,
) -> dict[str, list[str]]:
    """:func:`neighbour_partitions` of several partitions, from one listing of the keys."""
    if not partitions:
        return {}
    if isinstance(pdef, dg.TimeWindowPartitionsDefinition):
        first = min(partitions, key=pdef.time_window_for_partition_key)
        last = max(partitions, key=pdef.time_window_for_partition_key)
        keys = _nearby_time_keys(pdef, first, count, last)
    else:
        with dg.partition_loading_context(dynamic_partitions_store=instance):
            keys = pdef.get_partition_keys()
    index = {key: i for i, key in enumerate(keys)}
    found: dict[str, list[str]] = {}
    for partition in partitions:
        i = index.get(partition)
        if i is None:
            found[partition] = []
            continue
        before = keys[max(0, i - count):i][::-1]
        after = keys[i + 1:i + 1 + count]
        found[partition] = [k[n] for n in range(count) for k in (before, after) if n < len(k)]
    return found


def _nearby_time_keys(
    pdef: dg.TimeWindowPartitionsDefinition, partition: str, count: int,
    last: str | None = None,
) -> list[str]:
    """The keys from ``count`` windows before ``partition`` to ``count`` after ``last``."""
    # Walks `count` windows each way instead of listing every key since the start (17,000
    # hourly keys take 0.2 s to list).
    start = pdef.time_window_for_partition_key(partition).start
    end = pdef.time_window_for_partition_key(last or partition).end
    for _ in range(count):
        window = pdef.get_prev_partition_window(start)
        if window is None:
            break
        start = window.start
    for _ in range(count):
        window = pdef.get_next_partition_window(end)
        if window is None:
            break
        end = window.end
    return list(pdef.get_partition_keys_in_time_window(dg.TimeWindow(start, end)))


def evaluate_uniqueness(
    log: MaterializationLog, endpoint: Endpoint, table_key: dg.AssetKey,
    pdef: dg.PartitionsDefinition | None, table: Materialization,
    sketches: dict[str, Any],
) -> tuple[bool, dict[str, Any], str, str]:
    cfg = endpoint.checks.uniqueness
    severity = check_severity(endpoint, UNIQUENESS)
    folder = table.value("dagster/uri")
    mine = read_key_sketch(folder) if folder else None
    if mine is None or pdef is None or table.partition is None:
        return False, {"repeated_keys": 0}, (
            "no key sketch stored with this partition (written before the check existed?); "
            "re-materialize it"
        ), "warn"
    found: list[dict[str, Any]] = []
    compared = 0
    nearby = log.neighbours.get(table.partition)
    if nearby is None:
        nearby = neighbour_partitions(log.instance, pdef, table.partition, cfg.partitions)
    for other in nearby:
        if other not in sketches:
            mat = log.latest(table_key, other)
            uri = mat.value("dagster/uri") if mat is not None else None
            sketches[other] = read_key_sketch(uri) if uri else None
        theirs = sketches[other]
        if theirs is None:
            continue
        compared += 1
        shared = int(np.intersect1d(mine, theirs, assume_unique=True).size)
        if shared:
            found.append({"partition": other, "shared_keys": shared})
    repeated = sum(r["shared_keys"] for r in found)
    meta: dict[str, Any] = {
        "repeated_keys": repeated,
        "keys": int(mine.size),
        "partitions_compared": compared,
        "primary_key": ",".join(endpoint.primary_key),
    }
    if found:
        found.sort(key=lambda r: r["partition"])
        meta["partitions"] = dg.MetadataValue.table(
            records=[dg.TableRecord(r) for r in found],
            schema=dg.TableSchema(columns=[dg.TableColumn("partition", "string"),
                                           dg.TableColumn("shared_keys", "int")]),
        )
        named = ", ".join(f"{r['partition']} ({r['shared_keys']})" for r in found[:10])
        return False, meta, (
            f"{repeated} primary key(s) of this partition are also in other partitions: {named}"
        ), severity
    return True, meta, (
        f"{int(mine.size)} key(s), none in the {compared} stored partition(s) within "
        f"{cfg.partitions} on either side"
    ), severity


def _sample_markdown(rows: list[dict[str, Any]]) -> str:
    def cell(value: Any) -> str:
        text = "" if value is None else str(value)
        text = text.replace("|", "\\|").replace("\n", " ")
        return text if len(text) <= 160 else text[:157] + "..."

    lines = ["| rule | field | reason | page | index | record |", "|---|---|---|---|---|---|"]
    lines += [
        "| " + " | ".join(
            cell(safe_json_text(r.get(k)) if k == "_record" else safe_cell(k, r.get(k)))
            for k in ("_rule", "_field", "_reason", "_page", "_index", "_record")
        ) + " |"
        for r in rows
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- definitions


def _evaluation(
    table_key: dg.AssetKey, name: str, passed: bool, severity: str, blocking: bool,
    meta: dict[str, Any], description: str, partition: str | None,
    table: Materialization | None,
) -> dg.AssetCheckEvaluation:
    # An evaluation per partition (AssetCheckResult can only name the step's one partition,
    # and a single-run backfill covers many).
    return dg.AssetCheckEvaluation(
        asset_key=table_key,
        check_name=name,
        passed=passed,
        metadata=redact_metadata(meta),
        severity=_SEVERITY[severity],
        description=redact_text(description),
        blocking=blocking,
        partition=partition,
        target_materialization_data=table.target if table is not None else None,
    )


def evaluate_partition(
    instance: dg.DagsterInstance | None,
    source: Source,
    endpoint: Endpoint,
    partition: str | None,
    names: Sequence[str],
    sketches: dict[str, Any] | None = None,
    translator: IngestionTranslator | None = None,
    log: MaterializationLog | None = None,
) -> Iterator[dg.AssetCheckEvaluation]:
    """Every selected check on the latest materialization of one partition.

    ``sketches`` caches the key sketches read by ``uniqueness`` across the partitions of one
    check step (a backfill's partitions are each other's neighbours); ``log`` the event-log
    records (see :func:`preloaded_log`).
    """
    raw_key, table_key = (s.key for s in endpoint_specs(source, endpoint, translator))
    log = log or MaterializationLog(instance)
    table = log.latest(table_key, partition)
    sketches = {} if sketches is None else sketches
    pdef = partitions_def(source, endpoint) if UNIQUENESS in names else None
    for name in names:
        blocking = check_blocking(endpoint, name)
        if table is None:
            yield _evaluation(
                table_key, name, False, "warn", blocking, {},
                f"no materialization of {partition or 'the asset'} to check", partition, None,
            )
            continue
        if name == ROW_COUNT:
            passed, meta, text = evaluate_row_count(log, endpoint, raw_key, table_key, table)
            severity = check_severity(endpoint, name)
        elif name == SCHEMA_DRIFT:
            passed, meta, text, severity = evaluate_schema_drift(log, endpoint, table_key, table)
        elif name == WINDOW:
            passed, meta, text, severity = evaluate_window(endpoint, table)
        elif name == UNIQUENESS:
            passed, meta, text, severity = evaluate_uniqueness(
                log, endpoint, table_key, pdef, table, sketches
            )
        else:
            passed, meta, text = evaluate_contract(endpoint, table)
            severity = check_severity(endpoint, name)
        yield _evaluation(table_key, name, passed, severity, blocking, meta, text, partition,
                          table)


def preloaded_log(
    instance: dg.DagsterInstance, source: Source, endpoint: Endpoint,
    partitions: list[str | None], names: Sequence[str],
    translator: IngestionTranslator | None = None,
) -> MaterializationLog:
    """The event-log records the checks of these partitions read, loaded in a few queries:
    each partition's table and raw materializations, and its neighbours' for uniqueness."""
    raw_key, table_key = (s.key for s in endpoint_specs(source, endpoint, translator))
    log = MaterializationLog(instance)
    log.preload(table_key, partitions)
    if ROW_COUNT in names:
        log.preload(raw_key, partitions)
    pdef = partitions_def(source, endpoint)
    if UNIQUENESS in names and pdef is not None:
        log.neighbours = neighbours_of(instance, pdef, [p for p in partitions if p is not None],
                                       endpoint.checks.uniqueness.partitions)
        log.preload(table_key, [k for nearby in log.neighbours.values() for k in nearby])
    return log


_DESCRIPTIONS = {
    ROW_COUNT: "Rows = raw records - dead letters; = the API's declared total; not empty; "
    "not far below the median of the last partitions.",
    SCHEMA_DRIFT: "Columns added, removed, retyped or changing nullability, against the "
    "previous materialization and the declared schema.",
    CONTRACT: "Records failing the declared schema/model (kept as dead letters beside the "
    "partition) stay within the threshold.",
    WINDOW: "Every record's partition timestamp falls in the partition's [start, end) (an API "
    "ignoring its window filter fails it); shows the count outside.",
    UNIQUENESS: "No primary key of the partition is also in a nearby partition of the table "
    "(compared through the key sketches stored with each partition).",
}


def applicable_checks(endpoint: Endpoint) -> list[str]:
    """The checks an endpoint gets: window needs a time partition, uniqueness a partition."""
    cfg = endpoint.checks
    names = [n for n in (ROW_COUNT, SCHEMA_DRIFT, CONTRACT) if getattr(cfg, n).enabled]
    if cfg.window.enabled and endpoint.time_partitioning is not None and endpoint.window:
        names.append(WINDOW)
    if (cfg.uniqueness.enabled and endpoint.primary_key
            and endpoint.partitioning.type != "none"):
        names.append(UNIQUENESS)
    return names


def table_checks(
    source: Source, endpoint: Endpoint, translator: IngestionTranslator | None = None
) -> dg.AssetChecksDefinition | None:
    """The checks of one endpoint's table asset, as one check step (None if all disabled)."""
    raw_key, table_key = (s.key for s in endpoint_specs(source, endpoint, translator))
    names = applicable_checks(endpoint)
    if not names:
        return None
    pdef = partitions_def(source, endpoint)
    specs = [
        dg.AssetCheckSpec(
            name,
            asset=table_key,
            description=_DESCRIPTIONS[name],
            blocking=check_blocking(endpoint, name),
            additional_deps=[raw_key] if name == ROW_COUNT else None,
            partitions_def=pdef,
        )
        for name in names
    ]

    @dg.multi_asset_check(
        specs=specs,
        name=f"{source.name}__{endpoint.name}__checks",
        description=f"Checks of {table_key.to_user_string()}",
        can_subset=True,
    )
    def checks(context: dg.AssetCheckExecutionContext):
        op = context.op_execution_context
        partitions = (
            list(op.partition_keys)
            if op.has_partition_key or op.has_partition_key_range
            else [None]
        )
        selected = [n for n in names
                    if dg.AssetCheckKey(table_key, n) in context.selected_asset_check_keys]
        sketches: dict[str, Any] = {}
        log = preloaded_log(context.instance, source, endpoint, partitions, selected, translator)
        for partition in partitions:
            yield from evaluate_partition(context.instance, source, endpoint, partition,
                                          selected, sketches, translator, log)
        # Outputs last: they are what blocking gates downstream steps on.
        for spec in specs:
            if spec.name in selected:
                yield dg.Output(None, output_name=check_output_name(spec))

    return checks


def build_checks(
    sources: list[Source], translator: IngestionTranslator | None = None
) -> list[dg.AssetChecksDefinition]:
    """The check steps of every endpoint of every source."""
    with warnings.catch_warnings():
        # partitions_def on AssetCheckSpec is a preview feature; it gives per-partition
        # check status in the UI, which is what these checks are for.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        warnings.simplefilter("ignore", dg.BetaWarning)
        built = (table_checks(s, e, translator) for s in sources for e in s.endpoints)
        return [c for c in built if c is not None]
