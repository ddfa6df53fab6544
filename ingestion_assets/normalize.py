"""Turn pages of JSON records into Arrow record batches with one stable schema.

A partition is processed page by page: each page becomes one ``pyarrow.RecordBatch``, so
memory is bounded by a page whatever the size of the partition. The schema of a partition
is built as the pages arrive:

* declared columns (``schema=``) come first, in the declared order, always present, and
  every page is cast to the declared type (a value that cannot be cast fails loudly);
* configured ``timestamp_fields`` are parsed to ``timestamp[us, tz=UTC]`` from ISO 8601
  strings with any offset (or none: read as UTC), ``Z``, or unix seconds / ms / us / ns;
* undeclared columns are inferred by Arrow and kept (a new field becomes a new column,
  appended at the end). Between pages a type may only *widen*: null -> any type,
  int64 -> float64, a struct gains fields, ``list<null>`` -> ``list<T>``. A page whose values
  are narrower than the established type is cast up. A conflict between scalar types (an
  int column that suddenly holds strings, or the reverse) widens the column to string:
  every value is kept as its text, and the conflict is reported (field, types, pages) in
  :meth:`Normalizer.report` so the ``schema_drift`` check flags it. A conflict involving a
  nested type (an object on one page, a number on another) cannot be widened: the records
  of the later page holding the other kind go to the dead letters (rule ``type_conflict``,
  naming the field and both pages). Declare the column's type to coerce instead.

The window guard (:class:`WindowGuard`): for a time partition, every record's partition
timestamp must fall in the partition's ``[start, end)`` (plus a tolerance). Records outside
are counted and, by policy, fail the partition, go to the dead letters, or are kept.

An empty object ``{}`` on a page where that object never has keys is stored as null
(Parquet cannot store a struct without fields); next to objects with keys it becomes a
struct of nulls. Declare the column as ``json`` where that difference matters.

Each emitted batch conforms to :attr:`Normalizer.schema` *as it was when the batch was
emitted*; the final ``schema`` is a superset every earlier batch can be cast to safely
(only added nullable columns and widened types). Writers that need a fixed schema per
file (Parquet) start a new file when the batch schema changes.

This module imports nothing from Dagster.
"""

from __future__ import annotations

import importlib.abc
import itertools
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from pydantic import TypeAdapter, ValidationError

__all__ = [
    "DEAD_LETTER_SCHEMA",
    "EXTRA_COLUMN",
    "TIMESTAMP",
    "DeadLetters",
    "JsonPage",
    "NormalizationError",
    "Normalizer",
    "OutOfWindowError",
    "RecordBatchStream",
    "WindowGuard",
    "parse_type",
]

#: The one timestamp type of the project: microseconds, UTC.
TIMESTAMP = pa.timestamp("us", tz="UTC")

# Marker for columns stored as JSON text (the value serialized as-is).
_JSON = "json"

_SCALAR_TYPES: dict[str, pa.DataType | str] = {
    "string": pa.string(),
    "str": pa.string(),
    "int64": pa.int64(),
    "int": pa.int64(),
    "integer": pa.int64(),
    "float64": pa.float64(),
    "float": pa.float64(),
    "double": pa.float64(),
    "number": pa.float64(),
    "bool": pa.bool_(),
    "boolean": pa.bool_(),
    "timestamp": TIMESTAMP,
    "datetime": TIMESTAMP,
    "date": pa.date32(),
    "json": _JSON,
}

#: The JSON column holding undeclared fields when ``extra_fields="json"``.
EXTRA_COLUMN = "_extra"

#: The columns of a dead-letter file (the Parquet IO manager adds the provenance columns).
DEAD_LETTER_SCHEMA = pa.schema(
    [
        # not_an_object | model | uncastable | missing_required | out_of_window | type_conflict
        ("_rule", pa.string()),
        ("_field", pa.string()),  # the field at fault, when one is
        ("_reason", pa.string()),  # the message, as a person reads it
        ("_page", pa.int64()),  # the page within the partition's stored raw pages
        ("_index", pa.int64()),  # the record's position on that page
        ("_record", pa.string()),  # the record exactly as parsed from the page, as JSON
    ]
)

# A time followed by an offset: ...T10:00Z, +hh, +hhmm or +hh:mm (not the day of a date).
_OFFSET_RE = r"[T ]\d.*([Zz]|[+-]\d\d(:?\d\d)?)$"


class NormalizationError(ValueError):
    """A page could not be turned into the partition's schema.

    Attributes:
        field: the column at fault (None when the whole page is at fault).
        page: the 0-based index of the page within the stream.
    """

    def __init__(self, message: str, *, field: str | None = None, page: int | None = None):
        where = []
        if field is not None:
            where.append(f"field {field!r}")
        if page is not None:
            where.append(f"page {page}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.field = field
        self.page = page


class OutOfWindowError(NormalizationError):
    """Records of a partition carry a partition timestamp outside the partition's window."""


_POLICIES = ("fail", "dead_letter", "keep")


@dataclass
class WindowGuard:
    """Every record of a time partition must fall in the partition's window.

    An API that ignores its window filter (a misspelled parameter, an unsupported filter)
    answers every partition with the same records; without this guard each partition would
    store them all. The record's time is read from ``field`` (a timestamp column, or any
    value :func:`to_utc_timestamp` reads); a record without one is outside too.

    Args:
        start: the window's start (inclusive, UTC).
        end: the window's end (exclusive, UTC).
        field: the record field giving the record's partition time.
        tolerance: accept records this far before ``start`` or at/after ``end``.
        policy: ``fail`` (the partition fails once every page is read, with the count and an
            example), ``dead_letter`` (set aside with the reason) or ``keep`` (only counted).
        key_fields: the primary key, named in the example of a failure.
    """

    start: datetime
    end: datetime
    field: str
    tolerance: timedelta = timedelta(0)
    policy: str = "fail"
    key_fields: Sequence[str] = ()
    checked: int = 0
    outside: int = 0
    example: dict[str, Any] | None = None
    _lo: Any = field(default=None, repr=False)
    _hi: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.policy not in _POLICIES:
            raise ValueError(f"out_of_window must be one of {_POLICIES}, not {self.policy!r}")
        self._lo = pa.scalar(self.start - self.tolerance, TIMESTAMP)
        self._hi = pa.scalar(self.end + self.tolerance, TIMESTAMP)

    @property
    def window_text(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"

    def outside_mask(self, columns: Mapping[str, pa.Array], num_rows: int, page: int) -> pa.Array:
        """True for the rows whose time is missing or outside the window."""
        values = columns.get(self.field)
        if values is None:
            return pa.array([True] * num_rows, pa.bool_())
        if values.type != TIMESTAMP:
            values = to_utc_timestamp(values, field=self.field, page=page)
        outside = pc.or_(pc.less(values, self._lo), pc.greater_equal(values, self._hi))
        return pc.fill_null(outside, True)

    def note(self, columns: Mapping[str, pa.Array], num_rows: int, mask: pa.Array,
             page: int, positions: Sequence[int]) -> int:
        """Count the rows outside; keep the first one as the example (key and time only)."""
        self.checked += num_rows
        count = pc.sum(mask.cast(pa.int64())).as_py() or 0
        if count and self.example is None:
            row = pc.indices_nonzero(mask)[0].as_py()
            example = {"page": page, "index": positions[row]}
            for name in [*self.key_fields, self.field]:
                column = columns.get(name)
                value = None if column is None else column[row].as_py()
                example[name] = value.isoformat() if isinstance(value, datetime) else value
            self.example = example
        self.outside += count
        return count

    def reason(self, value: Any) -> str:
        shown = value.isoformat() if isinstance(value, datetime) else value
        return (f"{self.field} {'is missing' if value is None else f'= {shown}'}: outside the "
                f"partition window {self.window_text}")

    def failure(self) -> OutOfWindowError:
        ex = self.example or {}
        key = ", ".join(f"{k}={ex.get(k)!r}" for k in self.key_fields)
        return OutOfWindowError(
            f"{self.outside} of {self.checked} record(s) have {self.field} outside the "
            f"partition window {self.window_text} (the API may ignore its window filter); "
            f"e.g. {key + ', ' if key else ''}{self.field}={ex.get(self.field)!r} "
            f"(page {ex.get('page')}, record {ex.get('index')}). Set window.out_of_window to "
            "dead_letter or keep, or window.tolerance_seconds for an inclusive end, to accept "
            "them",
            field=self.field,
        )

    def report(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "window/out_of_window": self.outside,
            "window/checked": self.checked,
            "window/field": self.field,
            "window/window": self.window_text,
            "window/policy": self.policy,
            "window/tolerance_seconds": self.tolerance.total_seconds(),
        }
        if self.example is not None:
            meta["window/example"] = self.example
        return meta


class DeadLetters:
    """Records that failed the contract, each with the reason and the raw record.

    Never dropped: rows are held until a sink is attached (the Parquet IO manager attaches
    one that writes them beside the partition), then handed over in chunks, so memory stays
    bounded by a chunk. ``count`` and :meth:`summary` say how many and why.
    """

    def __init__(self, chunk_rows: int = 1000):
        self.count = 0
        self.chunk_rows = chunk_rows
        self._by_reason: dict[tuple[str, str | None], int] = {}
        self._rows: list[dict[str, Any]] = []
        self._sink: Callable[[pa.RecordBatch], None] | None = None

    def add(
        self, rule: str, field: str | None, reason: str, page: int, index: int, record: Any
    ) -> None:
        self.count += 1
        key = (rule, field)
        self._by_reason[key] = self._by_reason.get(key, 0) + 1
        try:
            text = orjson.dumps(record).decode()
        except TypeError:
            text = orjson.dumps(record, default=str).decode()
        self._rows.append(
            {"_rule": rule, "_field": field, "_reason": reason, "_page": page, "_index": index,
             "_record": text}
        )
        if self._sink is not None and len(self._rows) >= self.chunk_rows:
            self.flush()

    def attach(self, sink: Callable[[pa.RecordBatch], None]) -> None:
        """Send every dead letter (those held so far, then new ones) to ``sink``."""
        self._sink = sink
        self.flush()

    def flush(self) -> None:
        if self._sink is not None and self._rows:
            rows, self._rows = self._rows, []
            self._sink(pa.RecordBatch.from_pylist(rows, schema=DEAD_LETTER_SCHEMA))

    def held(self) -> pa.Table:
        """Dead letters not yet handed to a sink (all of them when none is attached)."""
        return pa.Table.from_pylist(self._rows, schema=DEAD_LETTER_SCHEMA)

    def summary(self) -> list[dict[str, Any]]:
        """``[{"rule", "field", "count"}, ...]``, most frequent first."""
        items = sorted(self._by_reason.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1] or ""))
        return [{"rule": r, "field": f, "count": n} for (r, f), n in items]


class _HoldBackPandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError("pandas is not needed to build Arrow batches", name=name)
        return None


_pandas_probe = threading.Lock()
_pandas_probed = False


def arrow_without_pandas() -> None:
    """Keep ``pa.array`` from importing pandas (about 30 MB) in a process that does not use it.

    On its first conversion of a Python list, pyarrow imports pandas only to ask whether
    the list is a pandas object. That first probe is answered here with "no pandas", once
    per process, while pandas is not imported yet; everything of pyarrow that really needs
    pandas (``to_pandas``, ``from_pandas``) imports it as usual when called, and a process
    that has imported pandas already is left alone.
    """
    global _pandas_probed
    with _pandas_probe:
        if _pandas_probed or "pandas" in sys.modules:
            return
        _pandas_probed = True
        finder = _HoldBackPandas()
        sys.meta_path.insert(0, finder)
        try:
            pa.array([None])
        finally:
            sys.meta_path.remove(finder)


def parse_type(spec: Any) -> pa.DataType | str:
    """Parse a declared column type.

    Args:
        spec: a ``pyarrow.DataType``; one of ``string, int64, float64, bool, timestamp, date,
            json`` (plus the aliases ``str, int, integer, float, double, number, boolean,
            datetime``); ``"list<T>"``; ``{"list": T}``; or ``{"struct": {name: T, ...}}``.

    Returns:
        The Arrow type, or the string ``"json"`` for a column kept as JSON text.
    """
    if isinstance(spec, pa.DataType):
        return spec
    if isinstance(spec, Mapping):
        if set(spec) == {"list"}:
            return pa.list_(_nested(parse_type(spec["list"])))
        if set(spec) == {"struct"}:
            return pa.struct([(k, _nested(parse_type(v))) for k, v in spec["struct"].items()])
        raise ValueError(
            f"unknown type spec {spec!r}: expected {{'list': T}} or {{'struct': {{...}}}}"
        )
    if isinstance(spec, str):
        text = spec.strip()
        lowered = text.lower()
        if lowered in _SCALAR_TYPES:
            return _SCALAR_TYPES[lowered]
        match = re.fullmatch(r"list\s*[<\[](.+)[>\]]", text, flags=re.IGNORECASE)
        if match:
            return pa.list_(_nested(parse_type(match.group(1))))
    raise ValueError(
        f"unknown type spec {spec!r}: use one of {sorted(_SCALAR_TYPES)}, 'list<T>' or "
        "{'struct': {...}}"
    )


def _nested(type_: pa.DataType | str) -> pa.DataType:
    # Inside a list or struct, JSON values are stored as text.
    return pa.string() if type_ == _JSON else type_


@dataclass(slots=True)
class JsonPage:
    """One JSON page as the API sent it, for a table built from the bytes themselves.

    The normalizer reads the records at ``path`` with Arrow's JSON reader and the types of the
    earlier pages (C++, without the interpreter lock, so it runs beside the fetch) instead of
    converting Python objects. Whenever that cannot give exactly what the records would (a new
    field, a changed type, a record for the dead letters, a count that differs), it calls
    ``records`` and normalizes them as usual.

    Attributes:
        body: the page body, UTF-8 JSON.
        path: the records path (object keys) in the body.
        count: the records the HTTP client counted on the page.
        records: the page's records (parsed again from ``body`` by the client's rule).
    """

    body: bytes
    path: tuple[str, ...]
    count: int
    records: Callable[[], list[Any]]


def _has_float(type_: pa.DataType) -> bool:
    """Whether a (nested) type holds a floating-point field."""
    if pa.types.is_floating(type_):
        return True
    if pa.types.is_struct(type_):
        return any(_has_float(f.type) for f in type_)
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return _has_float(type_.value_type)
    return False


class _NeedRecords(Exception):
    """The page needs its records as Python objects (see :class:`JsonPage`)."""


class Normalizer:
    """Turn pages of JSON records into record batches with a stable schema.

    Args:
        schema: declared columns, ``{name: type spec}`` (see :func:`parse_type`) or a
            ``pyarrow.Schema``. Declared columns are always present and cast to their type.
        timestamp_fields: columns parsed to ``timestamp[us, tz=UTC]`` (names after
            flattening when ``nested="flatten"``).
        nested: ``"struct"`` keeps nested objects as struct columns; ``"flatten"`` turns
            ``{"a": {"b": 1}}`` into a column ``a__b``. Declared struct and json columns are
            never flattened.
        separator: joins the names of flattened columns.
        required: columns every record must hold (non-null); stored as non-nullable.
        model: a pydantic model class every record must validate against (the record is
            kept as received; the model only judges it).
        extra_fields: ``"columns"`` keeps fields outside the declared schema/model as new
            columns; ``"json"`` keeps them in one JSON text column ``_extra``.
        dead_letters: where records failing the contract go (missing required field, a
            declared type that cannot be cast, a model error, not an object). Without it,
            such a record fails the page with :class:`NormalizationError`.
        window: the window guard of a time partition (see :class:`WindowGuard`).

    Example:
        >>> n = Normalizer(schema={"id": "string"}, timestamp_fields=["created"])
        >>> for batch in n.batches(pages):  # pages: iterable of lists of dicts
        ...     writer.write_batch(batch)
        >>> n.schema
    """

    def __init__(
        self,
        schema: Mapping[str, Any] | pa.Schema | None = None,
        timestamp_fields: Sequence[str] = (),
        nested: str = "struct",
        separator: str = "__",
        *,
        required: Sequence[str] = (),
        model: type | None = None,
        extra_fields: str = "columns",
        dead_letters: DeadLetters | None = None,
        window: WindowGuard | None = None,
    ):
        if nested not in ("struct", "flatten"):
            raise ValueError(f"nested must be 'struct' or 'flatten', not {nested!r}")
        if extra_fields not in ("columns", "json"):
            raise ValueError(f"extra_fields must be 'columns' or 'json', not {extra_fields!r}")
        self.nested = nested
        self.separator = separator
        declared: dict[str, pa.DataType | str] = {}
        if isinstance(schema, pa.Schema):
            declared = {f.name: f.type for f in schema}
        elif schema:
            declared = {name: parse_type(spec) for name, spec in schema.items()}
        for name in timestamp_fields:
            declared.setdefault(name, TIMESTAMP)
        self._required = list(dict.fromkeys(required))
        self._model = TypeAdapter(model) if model is not None else None
        self._model_name = getattr(model, "__name__", "model")
        self.dead_letters = dead_letters
        self._extra_json = extra_fields == "json"
        if self._extra_json:
            model_fields = getattr(model, "model_fields", {}) or {}
            known = [*declared, *self._required,
                     *((f.alias or n) for n, f in model_fields.items())]
            # Top-level keys kept as columns; with nested="flatten" a declared "a__b" keeps "a".
            self._known_roots = {name.split(separator)[0] for name in known}
            declared[EXTRA_COLUMN] = pa.string()
        self._declared = declared
        self._json_fields = {n for n, t in declared.items() if t == _JSON}
        self._keep_nested = {n for n, t in declared.items() if t == _JSON or pa.types.is_struct(t)}
        self._fields: dict[str, pa.DataType] = {
            name: (pa.string() if t == _JSON else t) for name, t in declared.items()
        }
        self._pages = 0
        self.window = window
        # The records' own struct type seen so far (before declared types), and the JSON
        # reader's options built from it (`JsonPage`).
        self._raw_type: pa.StructType | None = None
        self._raw_has_float = False
        self._json_options: tuple[tuple[str, ...], pj.ParseOptions] | None = None
        # Undeclared columns: the page that set each column's type, and type conflicts seen.
        self._since: dict[str, int] = {}
        self.type_conflicts: list[dict[str, Any]] = []
        arrow_without_pandas()

    @property
    def schema(self) -> pa.Schema:
        """The schema so far: declared columns, then the others in order of first sight."""
        required = set(self._required)
        return pa.schema(
            [pa.field(name, type_, nullable=name not in required)
             for name, type_ in self._fields.items()],
            metadata={b"ingestion.json_columns": ",".join(sorted(self._json_fields)).encode()}
            if self._json_fields
            else None,
        )

    def batches(self, pages: Iterable[Sequence[Mapping[str, Any]]]) -> Iterator[pa.RecordBatch]:
        """Yield one record batch per non-empty page, lazily (one page in memory at a time)."""
        for records in pages:
            batch = self.normalize_page(records)
            if batch is not None:
                yield batch
        self.finish()

    def finish(self) -> None:
        """Called once every page is normalized: fails when records fell outside the window
        under the ``fail`` policy (after counting them all, for the message)."""
        guard = self.window
        if guard is not None and guard.policy == "fail" and guard.outside:
            raise guard.failure()

    def report(self) -> dict[str, Any]:
        """Materialization metadata: the window guard's counts and the type conflicts."""
        meta: dict[str, Any] = {}
        if self.window is not None:
            meta.update(self.window.report())
        if self.type_conflicts:
            meta["type_conflicts"] = list(self.type_conflicts)
        return meta

    def normalize_page(
        self, records: Sequence[Mapping[str, Any]] | JsonPage
    ) -> pa.RecordBatch | None:
        """Normalize one page; returns None for an empty page (it still counts as a page)."""
        if isinstance(records, JsonPage):
            return self._normalize_json_page(records)
        return self._normalize(records, None)

    @property
    def reads_json_bytes(self) -> bool:
        """Whether a `JsonPage` can be read without its records as Python objects (no model,
        no JSON text columns: both need the records themselves)."""
        return self._model is None and not self._extra_json and not self._json_fields

    def _normalize_json_page(self, page: JsonPage) -> pa.RecordBatch | None:
        if page.count == 0:
            self._pages += 1
            return None
        raw = self._read_json(page) if self.reads_json_bytes else None
        if raw is not None:
            at = self._pages
            try:
                return self._normalize(None, raw)
            except _NeedRecords:
                self._pages = at  # nothing else was changed: the page starts over
        return self._normalize(page.records(), None)

    def _read_json(self, page: JsonPage) -> pa.RecordBatch | None:
        """The page's records as a batch, read from its bytes with the types of the earlier
        pages; None when that cannot be exactly what converting its records would give."""
        if self._raw_type is None or self._raw_has_float:
            # Arrow's reader reads an integer into a float column as the nearest double
            # (2**53 + 1 becomes 2**53), where the records' own cast fails: the records decide.
            return None
        if self._json_options is None or self._json_options[0] != page.path:
            nested: pa.DataType = pa.list_(self._raw_type)
            for step in reversed(page.path[1:]):
                nested = pa.struct([(step, nested)])
            self._json_options = (page.path, pj.ParseOptions(
                explicit_schema=pa.schema([(page.path[0], nested)]),
                newlines_in_values=True,  # one object over many lines
            ))
        body = page.body
        try:
            table = pj.read_json(
                pa.BufferReader(body),
                read_options=pj.ReadOptions(use_threads=False, block_size=len(body) + 64),
                parse_options=self._json_options[1],
            )
            if table.num_rows != 1:
                return None
            values: Any = table.column(page.path[0]).combine_chunks()
            for step in page.path[1:]:
                values = values.field(step)
        except (pa.ArrowException, KeyError):
            return None  # not an object, a duplicate key, a value of another type...
        # A new field, a field of a new type (or a timestamp the reader guessed) changes the
        # type; null records are converted differently: the records decide.
        if values.type != pa.list_(self._raw_type) or values.null_count:
            return None
        records = values.flatten()
        if len(records) != page.count or records.null_count:
            return None
        return pa.RecordBatch.from_struct_array(records)

    def _learn_raw_type(self, type_: pa.StructType) -> None:
        """Merge a page's own struct type into the one the JSON reader is given."""
        if self._raw_type is None:
            merged = type_
        else:
            fields = {f.name: f for f in self._raw_type}
            for f in type_:
                old = fields.get(f.name)
                if old is None or pa.types.is_null(old.type) or not (
                    pa.types.is_null(f.type) or old.type == f.type
                ):
                    fields[f.name] = f
            merged = pa.struct(list(fields.values()))
        if merged != self._raw_type:
            self._raw_type = merged
            self._raw_has_float = _has_float(merged)
            self._json_options = None

    def _normalize(
        self, records: Sequence[Mapping[str, Any]] | None, raw: pa.RecordBatch | None
    ) -> pa.RecordBatch | None:
        """One page, from its records or (``records`` None) from the batch read from its
        bytes, which raises `_NeedRecords` before changing anything when records are needed."""
        page = self._pages
        self._pages += 1
        if not records and raw is None:
            return None
        # (position on the page, record as received), for dead letters.
        origin: list[tuple[int, Any]] | None = None
        if records is not None and (self._model is not None or self._extra_json):
            records, origin = self._screen(records, page)
            if not records:
                return None
        try:
            columns, num_rows = self._declared_columns(records, page, raw)
        except NormalizationError:
            if records is None:
                raise _NeedRecords from None
            if self.dead_letters is None:
                raise
            records, origin = self._keep_castable(records, origin, page)
            if not records:
                return None
            columns, num_rows = self._declared_columns(records, page)
        if self._required:
            columns, num_rows, origin = self._without_missing_required(
                columns, num_rows, records, origin, page
            )
            if num_rows == 0:
                return None
        if self.window is not None:
            columns, num_rows, origin = self._guard_window(columns, num_rows, records, origin,
                                                           page)
            if num_rows == 0:
                return None
        if records is None:
            self._check_widening(columns, page)
        # Undeclared columns may widen the schema; compute the new schema, then conform.
        for name in list(columns):
            array = columns[name]
            if name in self._declared:
                continue
            current = self._fields.get(name)
            if current is None:
                if not pa.types.is_null(array.type):
                    self._since.setdefault(name, page)
                self._fields[name] = array.type
            elif current != array.type:
                try:
                    widened = _widen(current, array.type, name, page)
                except _TypeConflict:
                    columns, num_rows, origin = self._set_aside_conflict(
                        columns, num_rows, records, origin, page, name, current
                    )
                    if num_rows == 0:
                        return None
                    continue
                if pa.types.is_null(current):
                    self._since[name] = page
                elif (pa.types.is_string(widened) and not pa.types.is_null(array.type)
                      and not (pa.types.is_string(current) and pa.types.is_string(array.type))):
                    self._note_conflict(name, current, array.type, page)
                self._fields[name] = widened
        arrays = []
        for name, type_ in self._fields.items():
            array = columns.get(name)
            if array is None:
                arrays.append(pa.nulls(num_rows, type_))
            elif array.type != type_:
                arrays.append(_cast(array, type_, name, page))
            else:
                arrays.append(array)
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)

    # -- the contract: dead letters -----------------------------------------------------

    def _check_widening(self, columns: dict[str, pa.Array], page: int) -> None:
        """A column whose values cannot join the earlier pages' needs its records."""
        for name, array in columns.items():
            current = self._fields.get(name)
            if name in self._declared or current is None or current == array.type:
                continue
            try:
                _widen(current, array.type, name, page)
            except _TypeConflict:
                raise _NeedRecords from None

    def _declared_columns(
        self, records: Sequence[Any] | None, page: int, raw: pa.RecordBatch | None = None
    ) -> tuple[dict[str, pa.Array], int]:
        """The page as Arrow columns, declared columns cast to their types."""
        batch = self._to_arrow(records, page) if raw is None else _drop_empty_structs(raw)
        if self.nested == "flatten":
            batch = self._flatten(batch, page)
        columns = {name: batch.column(i) for i, name in enumerate(batch.schema.names)}
        # Declared types first: they never change.
        for name, type_ in self._declared.items():
            if name in columns and name not in self._json_fields:
                columns[name] = self._to_declared(columns[name], type_, name, page)
        return columns, batch.num_rows

    def _note_conflict(self, name: str, before: Any, now: Any, page: int) -> None:
        if any(c["field"] == name for c in self.type_conflicts):
            return  # the first conflict of a field says it all
        self.type_conflicts.append({
            "field": name, "before": str(before), "now": str(now), "stored_as": "string",
            "first_page": self._since.get(name, 0), "conflicting_page": page,
        })

    def _set_aside_conflict(
        self, columns: dict[str, pa.Array], num_rows: int, records: Sequence[Any],
        origin: list[tuple[int, Any]] | None, page: int, name: str, current: pa.DataType,
    ) -> tuple[dict[str, pa.Array], int, list[tuple[int, Any]] | None]:
        """A nested/scalar conflict: this page's records holding the other kind are dead."""
        array = columns[name]
        mask = pc.invert(array.is_null())
        reason = (
            f"field {name!r} holds {array.type} on page {page} but {current} since page "
            f"{self._since.get(name, 0)}; declare its type (e.g. json or string) to keep both"
        )
        columns, num_rows, origin = self._drop_rows(
            columns, num_rows, records, origin, page, mask,
            lambda _: ("type_conflict", name, reason),
        )
        columns.pop(name)  # only nulls are left: filled in with the established type
        return columns, num_rows, origin

    def _drop_rows(
        self, columns: dict[str, pa.Array], num_rows: int, records: Sequence[Any],
        origin: list[tuple[int, Any]] | None, page: int, mask: pa.Array,
        why: Callable[[int], tuple[str, str | None, str]],
    ) -> tuple[dict[str, pa.Array], int, list[tuple[int, Any]] | None]:
        """Send the rows where ``mask`` is true to the dead letters; the rest go on."""
        if records is None and origin is None:
            raise _NeedRecords
        origin = origin if origin is not None else list(enumerate(records))
        for position in pc.indices_nonzero(mask).to_pylist():
            rule, field_name, reason = why(position)
            index, raw = origin[position]
            self._dead(rule, field_name, reason, page, index, raw)
        keep = pc.invert(mask)
        kept = pc.indices_nonzero(keep).to_pylist()
        columns = {name: array.filter(keep) for name, array in columns.items()}
        return columns, len(kept), [origin[i] for i in kept]

    def _guard_window(
        self, columns: dict[str, pa.Array], num_rows: int, records: Sequence[Any],
        origin: list[tuple[int, Any]] | None, page: int,
    ) -> tuple[dict[str, pa.Array], int, list[tuple[int, Any]] | None]:
        guard = self.window
        assert guard is not None
        mask = guard.outside_mask(columns, num_rows, page)
        if records is None and guard.policy == "dead_letter" and pc.any(mask).as_py():
            raise _NeedRecords  # before the guard counts them
        positions = [i for i, _ in origin] if origin is not None else range(num_rows)
        if not guard.note(columns, num_rows, mask, page, positions):
            return columns, num_rows, origin
        if guard.policy != "dead_letter":
            return columns, num_rows, origin  # kept: counted (and failed at the end by `fail`)
        values = columns.get(guard.field)

        def why(position: int) -> tuple[str, str | None, str]:
            value = None if values is None else values[position].as_py()
            return "out_of_window", guard.field, guard.reason(value)

        return self._drop_rows(columns, num_rows, records, origin, page, mask, why)

    def _dead(self, rule: str, field: str | None, reason: str, page: int, index: int,
              record: Any) -> None:
        if self.dead_letters is None:
            raise NormalizationError(f"{reason} (record {index})", field=field, page=page)
        self.dead_letters.add(rule, field, reason, page, index, record)

    def _screen(
        self, records: Sequence[Any], page: int
    ) -> tuple[list[Any], list[tuple[int, Any]]]:
        """Model validation and the JSON column of extra fields, record by record."""
        kept: list[Any] = []
        origin: list[tuple[int, Any]] = []
        for index, record in enumerate(records):
            if self._model is not None:
                try:
                    self._model.validate_python(record)
                except ValidationError as exc:
                    errors = exc.errors()
                    field = ".".join(map(str, errors[0]["loc"])) if errors[0]["loc"] else None
                    reason = "; ".join(
                        f"{'.'.join(map(str, e['loc'])) or '(record)'}: {e['msg']}"
                        for e in errors[:3]
                    )
                    self._dead("model", field, f"{self._model_name}: {reason}", page, index,
                               record)
                    continue
            if self._extra_json:
                if not isinstance(record, Mapping):
                    self._dead("not_an_object", None, "the record is not a JSON object",
                               page, index, record)
                    continue
                extra = {k: v for k, v in record.items() if k not in self._known_roots}
                row = {k: v for k, v in record.items() if k in self._known_roots}
                row[EXTRA_COLUMN] = orjson.dumps(extra).decode() if extra else None
                kept.append(row)
            else:
                kept.append(record)
            origin.append((index, record))
        return kept, origin

    def _keep_castable(
        self, records: Sequence[Any], origin: list[tuple[int, Any]] | None, page: int
    ) -> tuple[list[Any], list[tuple[int, Any]]]:
        """The page failed as a whole: try each record alone; the failing ones are dead."""
        origin = origin if origin is not None else list(enumerate(records))
        kept: list[Any] = []
        kept_origin: list[tuple[int, Any]] = []
        for record, (index, raw) in zip(records, origin, strict=True):
            try:
                self._declared_columns([record], page)
            except NormalizationError as exc:
                rule = "uncastable" if exc.field is not None else "not_an_object"
                self._dead(rule, exc.field, str(exc), page, index, raw)
                continue
            kept.append(record)
            kept_origin.append((index, raw))
        return kept, kept_origin

    def _without_missing_required(
        self,
        columns: dict[str, pa.Array],
        num_rows: int,
        records: Sequence[Any],
        origin: list[tuple[int, Any]] | None,
        page: int,
    ) -> tuple[dict[str, pa.Array], int, list[tuple[int, Any]] | None]:
        missing: pa.Array | None = None
        for name in self._required:
            array = columns.get(name)
            nulls = (
                pa.array([True] * num_rows) if array is None
                else array.is_null() if array.null_count else None
            )
            if nulls is None:
                continue
            missing = nulls if missing is None else pc.or_(missing, nulls)
        if missing is None:
            return columns, num_rows, origin

        def why(position: int) -> tuple[str, str | None, str]:
            name = next(
                n for n in self._required
                if columns.get(n) is None or not columns[n][position].is_valid
            )
            return "missing_required", name, f"required field {name!r} is missing or null"

        return self._drop_rows(columns, num_rows, records, origin, page, missing, why)

    # -- page to Arrow ------------------------------------------------------------------

    def _to_arrow(self, records: Sequence[Mapping[str, Any]], page: int) -> pa.RecordBatch:
        try:
            # Fast path: Arrow infers the struct of all keys of all records in C++.
            array = pa.array(records)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            batch = self._to_arrow_by_column(records, page)
        else:
            if not pa.types.is_struct(array.type):
                raise NormalizationError(
                    f"records must be JSON objects, got {array.type}", page=page
                )
            self._learn_raw_type(array.type)
            batch = pa.RecordBatch.from_struct_array(array)
            if self._json_fields:
                batch = self._replace_json_columns(batch, records)
        return _drop_empty_structs(batch)

    def _replace_json_columns(
        self, batch: pa.RecordBatch, records: Sequence[Mapping[str, Any]]
    ) -> pa.RecordBatch:
        for name in self._json_fields:
            index = batch.schema.get_field_index(name)
            if index >= 0:
                batch = batch.set_column(index, name, _json_column(records, name))
        return batch

    def _to_arrow_by_column(
        self, records: Sequence[Mapping[str, Any]], page: int
    ) -> pa.RecordBatch:
        # Slow path, only for pages Arrow cannot infer in one go: find the culprit column.
        if not all(isinstance(r, Mapping) for r in records):
            raise NormalizationError("records must be JSON objects", page=page)
        names = list(dict.fromkeys(itertools.chain.from_iterable(records)))
        arrays = []
        for name in names:
            if name in self._json_fields:
                arrays.append(_json_column(records, name))
                continue
            values = [r.get(name) for r in records]
            try:
                arrays.append(pa.array(values))
                continue
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                error = exc
            target = self._fields.get(name)
            if target == TIMESTAMP:
                arrays.append(_mixed_timestamps(values, name, page))
            elif target is not None and pa.types.is_string(target):
                arrays.append(pa.array([_to_text(v) for v in values], pa.string()))
            elif (name not in self._declared
                  and (target is None or not pa.types.is_nested(target))
                  and all(isinstance(v, str | int | float | bool) for v in values
                          if v is not None)):
                # Scalars of two kinds on one page: the same rule as between pages.
                kinds = sorted({type(v).__name__ for v in values if v is not None})
                self._note_conflict(name, target or kinds[0], ", ".join(kinds), page)
                arrays.append(pa.array([_to_text(v) for v in values], pa.string()))
            else:
                kinds = sorted({type(v).__name__ for v in values if v is not None})
                raise NormalizationError(
                    f"values of mixed types ({', '.join(kinds)}) cannot share a column ({error}); "
                    "declare the column's type (e.g. string or json) to coerce",
                    field=name,
                    page=page,
                ) from error
        return pa.RecordBatch.from_arrays(arrays, names=names)

    def _flatten(self, batch: pa.RecordBatch, page: int) -> pa.RecordBatch:
        names: list[str] = []
        arrays: list[pa.Array] = []

        def add(name: str, array: pa.Array, top: bool) -> None:
            if pa.types.is_struct(array.type) and not (top and name in self._keep_nested):
                children = array.flatten()  # applies the parent's nulls to the children
                for field, child in zip(array.type, children, strict=True):
                    add(f"{name}{self.separator}{field.name}", child, False)
                return
            if name in seen:
                raise NormalizationError(
                    "two fields flatten to the same column name; change the separator",
                    field=name,
                    page=page,
                )
            seen.add(name)
            names.append(name)
            arrays.append(array)

        seen: set[str] = set()
        for name, array in zip(batch.schema.names, batch.columns, strict=True):
            add(name, array, True)
        return pa.RecordBatch.from_arrays(arrays, names=names)

    def _to_declared(self, array: pa.Array, type_: pa.DataType, name: str, page: int) -> pa.Array:
        if array.type == type_:
            return array
        if type_ == TIMESTAMP:
            return to_utc_timestamp(array, field=name, page=page)
        if pa.types.is_date(type_) and (
            pa.types.is_string(array.type) or pa.types.is_integer(array.type)
        ):
            try:
                return array.cast(type_)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                # Full timestamps ("2025-01-05T10:00:00Z") or epoch numbers: the UTC date.
                return to_utc_timestamp(array, field=name, page=page).cast(type_)
        if pa.types.is_string(type_) and (
            pa.types.is_struct(array.type) or pa.types.is_list(array.type)
        ):
            return pa.array([_to_text(v) for v in array.to_pylist()], pa.string())
        return _cast(array, type_, name, page)


def _widen(current: pa.DataType, new: pa.DataType, name: str, page: int) -> pa.DataType:
    """The type both ``current`` and ``new`` values fit, or raise on a real conflict."""
    if pa.types.is_null(new):
        return current
    try:
        merged = (
            pa.unify_schemas(
                [pa.schema([(name, current)]), pa.schema([(name, new)])],
                promote_options="permissive",
            )
            .field(name)
            .type
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        if not pa.types.is_nested(current) and not pa.types.is_nested(new):
            return pa.string()  # scalars of two kinds: every value kept as its text
        raise _TypeConflict(
            f"type changed from {current} (earlier pages) to {new}; declare the column's type "
            "to coerce",
            field=name,
            page=page,
        ) from exc
    if _is_unwanted_promotion(current, merged) or _is_unwanted_promotion(new, merged):
        if not pa.types.is_nested(current) and not pa.types.is_nested(new):
            return pa.string()  # e.g. bool and int: kept as text, not turned into numbers
        raise _TypeConflict(
            f"type changed from {current} (earlier pages) to {new}; declare the column's type "
            "to coerce",
            field=name,
            page=page,
        )
    return merged


class _TypeConflict(NormalizationError):
    """Two pages hold values of an undeclared column that no common type holds."""


def _is_unwanted_promotion(before: pa.DataType, after: pa.DataType) -> bool:
    # Arrow's permissive promotion also turns e.g. bool into int or string into large_string;
    # only null -> T, int -> float and nested widening are accepted silently.
    if before == after or pa.types.is_null(before):
        return False
    if pa.types.is_integer(before) and pa.types.is_floating(after):
        return False
    if pa.types.is_nested(before) and pa.types.is_nested(after):
        return False
    return True


def _cast(array: pa.Array, type_: pa.DataType, name: str, page: int) -> pa.Array:
    try:
        return array.cast(type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise NormalizationError(
            f"cannot cast {array.type} to {type_}: {exc}", field=name, page=page
        ) from exc


def _json_column(records: Sequence[Mapping[str, Any]], name: str) -> pa.Array:
    values = []
    for record in records:
        value = record.get(name)
        values.append(None if value is None else orjson.dumps(value).decode())
    return pa.array(values, pa.string())


def _to_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


def _has_empty_struct(type_: pa.DataType) -> bool:
    if pa.types.is_struct(type_):
        return type_.num_fields == 0 or any(_has_empty_struct(f.type) for f in type_)
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return _has_empty_struct(type_.value_type)
    return False


def _drop_empty_structs(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Replace ``struct<>`` (from ``{}`` values) by null: Parquet cannot store an empty struct.

    The column widens to a real struct as soon as a page carries keys in that object.
    """
    if not any(_has_empty_struct(t) for t in batch.schema.types):
        return batch
    arrays = [_without_empty_structs(a) for a in batch.columns]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _without_empty_structs(array: pa.Array) -> pa.Array:
    type_ = array.type
    if not _has_empty_struct(type_):
        return array
    if pa.types.is_struct(type_):
        if type_.num_fields == 0:
            return pa.nulls(len(array))
        children = [_without_empty_structs(array.field(i)) for i in range(type_.num_fields)]
        return pa.StructArray.from_arrays(
            children, names=[f.name for f in type_], mask=array.is_null()
        )
    # list<struct<...>>: rebuild the list around the cleaned values.
    offsets = array.offsets
    values = _without_empty_structs(array.values)
    mask = array.is_null() if array.null_count else None
    return pa.ListArray.from_arrays(offsets, values, mask=mask)


# -- timestamps ----------------------------------------------------------------------------


def to_utc_timestamp(
    array: pa.Array, *, field: str | None = None, page: int | None = None
) -> pa.Array:
    """Convert an array to ``timestamp[us, tz=UTC]``, vectorised.

    Accepts ISO 8601 strings with any offset, ``Z`` or none (read as UTC), date-only strings,
    unix seconds, milliseconds, microseconds or nanoseconds (told apart by magnitude), floats
    with fractional seconds, and timestamps in any unit or zone.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    type_ = array.type
    if type_ == TIMESTAMP:
        return array
    if pa.types.is_null(type_):
        return pa.nulls(len(array), TIMESTAMP)
    if pa.types.is_timestamp(type_):
        # Naive timestamps are read as UTC; aware ones keep their instant.
        return array.cast(pa.timestamp(type_.unit, tz=type_.tz or "UTC")).cast(
            TIMESTAMP, safe=False
        )
    if pa.types.is_date(type_):
        return array.cast(pa.timestamp("us")).cast(TIMESTAMP)
    if pa.types.is_integer(type_):
        return _epoch_to_timestamp(array.cast(pa.int64()))
    if pa.types.is_floating(type_):
        return _epoch_float_to_timestamp(array)
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        return _parse_iso(array.cast(pa.string()), field, page)
    raise NormalizationError(f"cannot read {type_} values as timestamps", field=field, page=page)


def _epoch_to_timestamp(values: pa.Array) -> pa.Array:
    # Unix epochs by magnitude: < 1e11 seconds (until year 5138), < 1e14 ms, < 1e17 us, else ns.
    magnitude = pc.abs(values)
    micros = pc.if_else(
        pc.less(magnitude, 100_000_000_000),
        pc.multiply_checked(values, 1_000_000),
        pc.if_else(
            pc.less(magnitude, 100_000_000_000_000),
            pc.multiply_checked(values, 1_000),
            pc.if_else(
                pc.less(magnitude, 100_000_000_000_000_000), values, pc.divide(values, 1_000)
            ),
        ),
    )
    return micros.cast(pa.timestamp("us")).cast(TIMESTAMP)


def _epoch_float_to_timestamp(values: pa.Array) -> pa.Array:
    magnitude = pc.abs(values)
    scale = pc.if_else(
        pc.less(magnitude, 1e11),
        1_000_000.0,
        pc.if_else(
            pc.less(magnitude, 1e14), 1_000.0, pc.if_else(pc.less(magnitude, 1e17), 1.0, 0.001)
        ),
    )
    micros = pc.round(pc.multiply(values, scale)).cast(pa.int64())
    return micros.cast(pa.timestamp("us")).cast(TIMESTAMP)


def _parse_iso(strings: pa.Array, field: str | None, page: int | None) -> pa.Array:
    try:
        return _try_parse_iso(strings)
    except pa.ArrowInvalid as exc:
        bad = _first_unparseable(strings)
        raise NormalizationError(
            f"cannot parse {bad!r} as a timestamp", field=field, page=page
        ) from exc


def _try_parse_iso(strings: pa.Array) -> pa.Array:
    try:
        return strings.cast(TIMESTAMP)
    except pa.ArrowInvalid:
        pass
    # Mixed: strings with an offset are instants; strings without one (or date-only strings)
    # are UTC wall times.
    stripped = pc.utf8_trim_whitespace(strings)
    has_offset = pc.match_substring_regex(stripped, _OFFSET_RE)
    aware = pc.if_else(has_offset, stripped, pa.scalar(None, pa.string()))
    naive = pc.if_else(has_offset, pa.scalar(None, pa.string()), stripped)
    parsed_aware = _cast_fine(aware, TIMESTAMP, pa.timestamp("ns", tz="UTC"))
    parsed_naive = _cast_fine(naive, pa.timestamp("us"), pa.timestamp("ns")).cast(TIMESTAMP)
    return pc.coalesce(parsed_aware, parsed_naive)


def _cast_fine(strings: pa.Array, type_: pa.DataType, fine: pa.DataType) -> pa.Array:
    # Nanosecond fractions do not parse at microsecond precision: parse at ns and truncate.
    try:
        return strings.cast(type_)
    except pa.ArrowInvalid:
        return strings.cast(fine).cast(type_, safe=False)


def _first_unparseable(strings: pa.Array) -> str | None:
    for value in strings.to_pylist():  # error path only
        if value is None:
            continue
        try:
            _try_parse_iso(pa.array([value], pa.string()))
        except pa.ArrowInvalid:
            return value
    return None


def _mixed_timestamps(values: list[Any], field: str, page: int) -> pa.Array:
    # A column mixing epoch numbers and strings (rare): parse each kind vectorised, then merge.
    numbers = pa.array(
        [v if isinstance(v, int | float) and not isinstance(v, bool) else None for v in values],
        pa.float64(),
    )
    strings = pa.array([v if isinstance(v, str) else None for v in values], pa.string())
    others = {
        type(v).__name__ for v in values if v is not None and not isinstance(v, int | float | str)
    }
    if others:
        raise NormalizationError(
            f"cannot read {', '.join(sorted(others))} values as timestamps", field=field, page=page
        )
    return pc.coalesce(_parse_iso(strings, field, page), _epoch_float_to_timestamp(numbers))


# -- the stream handed to the Parquet IO manager ----------------------------------------


class RecordBatchStream:
    """An iterable of record batches with a schema, streamed once.

    What a table asset returns to the Parquet IO manager: batches are pulled one at a time,
    so the whole partition never sits in memory.

    Args:
        batches: the record batches (a generator is fine).
        schema: the schema, or a callable returning it (e.g. ``lambda: normalizer.schema``)
            when it is only final after the batches are consumed. Defaults to the schema of
            the first batch (``None`` until then).
        source: the API source name, stored in the ``_source`` column.
        endpoint: the endpoint name, stored in the ``_endpoint`` column.
        metadata: extra metadata for the materialization (e.g. request statistics). It is
            read after the batches are consumed, and a dict passed here is kept as is, so a
            producer may add counts to it while the batches stream.
        dead_letters: the records the normalizer set aside (the Parquet IO manager writes
            them beside the partition, in the same atomic swap).
        time_columns: timestamp columns giving a record's time; the newest value seen is
            :attr:`newest_record_at` once the stream is consumed.
    """

    def __init__(
        self,
        batches: Iterable[pa.RecordBatch],
        schema: pa.Schema | Callable[[], pa.Schema] | None = None,
        *,
        source: str | None = None,
        endpoint: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        dead_letters: DeadLetters | None = None,
        time_columns: Sequence[str] = (),
    ):
        self._batches = batches
        self._schema = schema
        self._first_schema: pa.Schema | None = None
        self._consumed = False
        self.source = source
        self.endpoint = endpoint
        self.metadata = metadata if isinstance(metadata, dict) else dict(metadata or {})
        self.dead_letters = dead_letters
        self.time_columns = list(time_columns)
        self.newest_record_at: datetime | None = None
        self._on_consumed: Callable[[], None] | None = None

    @classmethod
    def from_pages(
        cls,
        pages: Iterable[Sequence[Mapping[str, Any]]],
        normalizer: Normalizer | None = None,
        **kwargs: Any,
    ) -> RecordBatchStream:
        """Normalize pages of records lazily; the schema is the normalizer's final schema."""
        normalizer = normalizer or Normalizer()
        kwargs.setdefault("dead_letters", normalizer.dead_letters)
        stream = cls(normalizer.batches(pages), lambda: normalizer.schema, **kwargs)
        # The window guard's counts and the type conflicts, once every page is read.
        stream._on_consumed = lambda: stream.metadata.update(normalizer.report())
        return stream

    @property
    def schema(self) -> pa.Schema | None:
        """The (final, once consumed) schema of the stream."""
        if callable(self._schema):
            return self._schema()
        return self._schema if self._schema is not None else self._first_schema

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        if self._consumed:
            raise RuntimeError("a RecordBatchStream can be iterated only once")
        self._consumed = True
        for batch in self._batches:
            if self._first_schema is None:
                self._first_schema = batch.schema
            if self.time_columns:
                self._note_newest(batch)
            yield batch
        if self._on_consumed is not None:
            self._on_consumed()

    def _note_newest(self, batch: pa.RecordBatch) -> None:
        for name in self.time_columns:
            index = batch.schema.get_field_index(name)
            if index < 0 or not pa.types.is_timestamp(batch.schema.field(index).type):
                continue
            newest = pc.max(batch.column(index)).as_py()
            if newest is not None and (
                self.newest_record_at is None or newest > self.newest_record_at
            ):
                self.newest_record_at = newest
