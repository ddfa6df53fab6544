"""Where the records of a page are: one rule for the fetch and for the re-read of stored pages.

The client decides which records a page holds when it fetches it; the table step re-reads
the stored page bodies later, without the API. Both go through :func:`page_body` and
:func:`extract_records`, so a page counts the same records whenever it is read:

======================================  =========================================
body                                    records
======================================  =========================================
``{"data": [...]}`` (records path set)  the list
``{"data": null}``                      none: an empty page, not one ``None`` record
``{"data": {...}}``                     one record (a path pointing at one object)
``[...]`` (no records path, or ``$``)   the list
``{...}`` with records path ``$``         one record (the body is the record)
``null`` (no records path, or ``$``)    none
204 No Content, or a stored empty body  none
anything else                           :class:`RecordsNotFound` (never guessed)
======================================  =========================================

A body that is one object counts as one record only when the endpoint says so (``$``):
without a records path an object is refused rather than guessed at. NDJSON and CSV bodies
(one record per line or row) are read by :mod:`ingestion_assets.http.formats`;
:func:`stored_page_records` re-reads stored pages of every format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from ingestion_assets.http.formats import (
    BodyFormat,
    CharsetError,
    RecordReader,
    charset_of,
    json_text,
)
from ingestion_assets.http.jsonpath import compile_path, find, has_path

NO_CONTENT: Any = type("NoContent", (), {"__repr__": lambda self: "NO_CONTENT"})()
"""The body of a 204 response (or of a stored page whose body is empty)."""


class RootSteps(tuple):
    """The compiled records path ``$``: the body itself, a list or one object."""

    __slots__ = ()


def records_steps(records_path: str | None) -> tuple:
    """The compiled records path; ``$`` (or ``$.``) gives :class:`RootSteps`."""
    if records_path is not None and records_path.strip().rstrip(".") == "$":
        return RootSteps()
    return compile_path(records_path)


class RecordsNotFound(ValueError):
    """The body has no records where the endpoint says they are."""


class ErrorBodyFound(ValueError):
    """The body is an error object where records were expected (a 200 carrying an error)."""


def page_body(content: bytes, status: int | None = None, content_type: str | None = None) -> Any:
    """Parse one page body.

    Args:
        content: The bytes as the API sent them.
        status: The HTTP status when known; None for a stored page, whose empty body can
            only come from a response the fetch accepted as having no content.
        content_type: The ``Content-Type`` header; its charset decodes the body (UTF-8 when
            it names none).

    Returns:
        The parsed JSON, or :data:`NO_CONTENT` for a 204 (or a stored empty body).

    Raises:
        orjson.JSONDecodeError: The body is not JSON (an empty 200 included).
        ingestion_assets.http.formats.BodyFormatError: The body is not in its charset.
    """
    if status == 204 or (status is None and not content.strip()):
        return NO_CONTENT
    text = json_text(content, content_type)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        # Declared UTF-8 that is not: the same bytes would come again, so not retried (without
        # a charset it stays an invalid body, retried, as a body cut mid-character may be).
        if isinstance(text, bytes) and "UTF-8" in exc.msg and charset_of(content_type):
            raise CharsetError(f"body is not valid utf-8, its declared charset: {exc.msg}") \
                from None
        raise


def extract_records(
    body: Any,
    steps: tuple,
    *,
    error_detector: Callable[[Any], bool] | None = None,
) -> list[Any]:
    """The records of a parsed page body (see the module's table).

    Args:
        body: What :func:`page_body` returned.
        steps: The compiled records path (:func:`records_steps`; ``()``: the body itself is
            the list; :class:`RootSteps`: the body is the list or the one record).
        error_detector: ``body -> bool``; when given, a body with no list at the records
            path that it calls an error raises :class:`ErrorBodyFound`.

    Raises:
        ErrorBodyFound: See ``error_detector``.
        RecordsNotFound: No list, null or object at the records path.
    """
    if body is NO_CONTENT:
        return []
    records = find(body, steps) if steps else body
    if isinstance(records, list):
        return records
    if error_detector is not None and error_detector(body):
        raise ErrorBodyFound("200 response carries an error object")
    if not steps:
        if records is None:
            return []
        if isinstance(steps, RootSteps) and isinstance(body, dict):
            return [body]
        raise RecordsNotFound(
            f"expected a JSON array of records as the body, got {type(body).__name__}"
        )
    if has_path(body, steps):
        if records is None:
            return []
        if isinstance(records, dict):
            return [records]
    raise RecordsNotFound(f"no list of records at path {'.'.join(map(str, steps))!r}")


def content_type_of(headers: Any) -> str | None:
    """The ``Content-Type`` among a page's (stored) headers, whatever its case."""
    for name, value in (headers or {}).items():
        if name.lower() == "content-type":
            return value
    return None


def stored_page_records(
    pages: Iterable[tuple[dict[str, Any], bytes]], records_path: str | None, fmt: BodyFormat
) -> Iterator[list[Any]]:
    """The records of stored pages ``(manifest entry, body)``, in order, as the fetch counted them.

    The charset comes from each page's stored ``Content-Type``. The pieces of a streamed
    (NDJSON, CSV) response are read by one :class:`~ingestion_assets.http.formats.RecordReader`;
    a page whose request (URL and parameters) differs from the one before starts a new response.
    """
    steps = records_steps(records_path)
    reader: RecordReader | None = None
    request: tuple | None = None
    for meta, body in pages:
        content_type = content_type_of(meta.get("headers"))
        if not fmt.streamed:
            yield extract_records(page_body(body, None, content_type), steps)
            continue
        this = (meta.get("url"), repr(meta.get("params")))
        if reader is None or this != request:
            reader, request = RecordReader(fmt, content_type), this
        yield reader.records(body) if body else []
