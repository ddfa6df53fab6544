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
``[...]`` (no records path)             the list
``null`` (no records path)              none
204 No Content, or a stored empty body  none
anything else                           :class:`RecordsNotFound` (never guessed)
======================================  =========================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ingestion_assets.http import fastjson
from ingestion_assets.http.jsonpath import find, has_path

NO_CONTENT: Any = type("NoContent", (), {"__repr__": lambda self: "NO_CONTENT"})()
"""The body of a 204 response (or of a stored page whose body is empty)."""


class RecordsNotFound(ValueError):
    """The body has no records where the endpoint says they are."""


class ErrorBodyFound(ValueError):
    """The body is an error object where records were expected (a 200 carrying an error)."""


def page_body(content: bytes, status: int | None = None) -> Any:
    """Parse one page body.

    Args:
        content: The bytes as the API sent them.
        status: The HTTP status when known; None for a stored page, whose empty body can
            only come from a response the fetch accepted as having no content.

    Returns:
        The parsed JSON, or :data:`NO_CONTENT` for a 204 (or a stored empty body).

    Raises:
        orjson.JSONDecodeError: The body is not JSON (an empty 200 included).
    """
    if status == 204 or (status is None and not content.strip()):
        return NO_CONTENT
    return fastjson.loads(content)


def extract_records(
    body: Any,
    steps: tuple,
    *,
    error_detector: Callable[[Any], bool] | None = None,
) -> list[Any]:
    """The records of a parsed page body (see the module's table).

    Args:
        body: What :func:`page_body` returned.
        steps: The compiled records path (``()``: the body itself is the list).
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
        raise RecordsNotFound(
            f"expected a JSON array of records as the body, got {type(body).__name__}"
        )
    if has_path(body, steps):
        if records is None:
            return []
        if isinstance(records, dict):
            return [records]
    raise RecordsNotFound(f"no list of records at path {'.'.join(map(str, steps))!r}")
