"""The Spark schema of an endpoint, and record batches conformed to it.

The schema is the one the Parquet table gets from the normalizer: declared columns with their
types, ``timestamp_fields`` as UTC timestamps, nested objects as structs. Fields the endpoint
does not declare follow ``extra_fields``: with ``json`` they are the JSON text column
``_extra``; with ``columns`` they are read from a sample (the first page holding records)
and marked as sampled, and a later record with a field outside them fails its task, naming
it, rather than silently losing it.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pyspark.sql.pandas.types import from_arrow_type, to_arrow_schema
from pyspark.sql.types import (
    ArrayType,
    DataType,
    NullType,
    StringType,
    StructField,
    StructType,
)

#: Field metadata of the columns a schema took from a sampled page.
SAMPLED = "ingestion_assets.sampled"


def _typed(kind: DataType) -> DataType:
    """Only nulls seen (also inside a struct or list): read the values as strings."""
    if isinstance(kind, NullType):
        return StringType()
    if isinstance(kind, StructType):
        return StructType([StructField(f.name, _typed(f.dataType), True) for f in kind.fields])
    if isinstance(kind, ArrayType):
        return ArrayType(_typed(kind.elementType), True)
    return kind


def spark_schema(arrow: pa.Schema, declared: set[str]) -> StructType:
    """The Spark schema of the normalizer's Arrow schema (null-typed columns as strings)."""
    fields = []
    for f in arrow:
        kind = _typed(from_arrow_type(f.type, prefer_timestamp_ntz=False))
        meta = {} if f.name in declared else {SAMPLED: True}
        fields.append(StructField(f.name, kind, nullable=True, metadata=meta))
    return StructType(fields)


def is_sampled(schema: StructType) -> bool:
    """Whether the schema is ours with sampled columns (a user's schema never is)."""
    return any(f.metadata.get(SAMPLED) for f in schema.fields)


def arrow_target(schema: StructType) -> pa.Schema:
    return to_arrow_schema(schema, timezone="UTC", prefers_large_types=False)


def _outside(names: list[str], type_: Any, name: str, where: str) -> None:
    extra = [n for n in names if type_.get_field_index(n) < 0]
    if extra:
        fields = [f"{name}.{n}" if name else n for n in extra]
        raise ValueError(
            f"{where}: field(s) {fields} are not in the schema sampled from the first page; "
            "declare them in the endpoint's schema, set extra_fields: json, or pass "
            "spark.read.schema(...)"
        )


def _conform(array: pa.Array, type_: pa.DataType, name: str, where: str,
             strict: bool) -> pa.Array:
    if array.type == type_:
        return array
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), type_)
    if pa.types.is_struct(type_) and pa.types.is_struct(array.type):
        if strict:
            _outside([f.name for f in array.type], type_, name, where)
        children = []
        for child in type_:
            index = array.type.get_field_index(child.name)
            values = (array.field(index) if index >= 0 else pa.nulls(len(array), child.type))
            children.append(_conform(values, child.type, f"{name}.{child.name}", where, strict))
        return pa.StructArray.from_arrays(children, fields=list(type_), mask=array.is_null())
    if pa.types.is_list(type_) and pa.types.is_list(array.type):
        values = _conform(array.values, type_.value_type, f"{name}[]", where, strict)
        return pa.ListArray.from_arrays(array.offsets, values, type=type_, mask=array.is_null())
    try:
        return array.cast(type_)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(
            f"{where}: column {name!r} holds {array.type} values that the read's schema types "
            f"as {type_} ({exc}); declare the column's type in the endpoint's schema"
        ) from None


def conform(batch: pa.RecordBatch, target: pa.Schema, strict: bool, where: str) -> Any:
    """``batch`` with exactly the target's columns and types (missing columns null).

    ``strict``: a column the batch has and the target lacks is an error (a sampled schema
    missed it); otherwise it is left out (the user's schema chose the columns).
    """
    if strict:
        _outside(batch.schema.names, target, "", where)
    arrays = []
    for f in target:
        index = batch.schema.get_field_index(f.name)
        column = batch.column(index) if index >= 0 else pa.nulls(batch.num_rows, f.type)
        arrays.append(_conform(column, f.type, f.name, where, strict))
    return pa.RecordBatch.from_arrays(arrays, schema=target)
