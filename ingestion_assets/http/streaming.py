"""Streamed bodies (NDJSON, CSV): one response becomes many pages, memory bounded by a piece.

The client sends the request, handles the status (retries, 429s, a 401 refresh) exactly as
for JSON, and for a 200 hands back a :class:`StreamedBody` instead of reading it:
:func:`streamed_pages` then reads it in chunks, cuts it into pieces on record boundaries
(:func:`~ingestion_assets.http.formats.split_pieces`) and yields each piece as a
:class:`~ingestion_assets.http.page.Page` as it arrives, so the raw archive and the table
take it while the rest is still on the wire.

Once a piece has been passed on, a broken body cannot be retried within the fetch (the
records would be passed on twice): the fetch fails (transient), nothing of the partition is
stored, and the step's retry policy fetches the partition again from the start.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import orjson
import requests

from ingestion_assets.http.budgets import Budgets
from ingestion_assets.http.deadline import body_chunks
from ingestion_assets.http.errors import (
    ApiError,
    BodyTooLargeError,
    DeadlineExceededError,
    InvalidResponseError,
    TransportError,
)
from ingestion_assets.http.formats import (
    BodyFormatError,
    CharsetError,
    RecordReader,
    RecordTooLongError,
    split_pieces,
)
from ingestion_assets.http.page import FetchStats, Page


def _mib(n: int) -> str:
    return f"{n / 1048576:g} MiB"


class StreamedBody:
    """The unread body of a 200 response to a streamed-format request; iterate it once."""

    def __init__(self, response: requests.Response, deadline: float, budgets: Budgets,
                 where: dict[str, Any]) -> None:
        self.response = response
        self.deadline = deadline
        self.budgets = budgets
        self.where = where
        self.received = 0

    def __len__(self) -> int:  # bytes received so far (the client counts a response's size)
        return self.received

    def _error(self, cls: type[ApiError], message: str, **kw: Any) -> ApiError:
        return cls(message, url=self.response.url, status=self.response.status_code,
                   **self.where, **kw)

    def chunks(self, stats: FetchStats) -> Iterator[bytes]:
        """The decoded body in chunks, within the stream budget and the request deadline."""
        limit = self.budgets.max_stream_bytes

        def counted(n: int) -> None:
            self.received += n
            stats.add_bytes(n)

        return body_chunks(
            self.response, self.deadline, chunk_bytes=self.budgets.chunk_bytes, limit=limit,
            counted=counted,
            too_large=lambda: self._error(
                BodyTooLargeError,
                f"streamed body larger than {_mib(limit)} once decoded; stopped "
                "reading (limits.max_stream_mb); not retried",
            ),
            broken=lambda exc, size: self._error(
                TransportError,
                f"the streamed body broke off after {size} bytes "
                f"({type(exc).__name__}); the partition is fetched again from the start "
                "by the step's retry",
            ),
            late=lambda size: self._error(
                DeadlineExceededError,
                f"the streamed body did not complete within the request deadline of "
                f"{self.budgets.request_deadline_s:g} s (limits.request_deadline_seconds); "
                f"{size} decoded bytes had arrived",
            ),
        )


class _Tally(Sequence):
    """What a paginator sees of a streamed response's records: their count and the last one."""

    def __init__(self) -> None:
        self.count = 0
        self.last: Any = None

    def add(self, records: list[Any]) -> None:
        if records:
            self.count += len(records)
            self.last = records[-1]

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: Any) -> Any:
        if index in (-1, self.count - 1) and self.count:
            return self.last
        raise IndexError("a streamed response keeps only its last record")


def streamed_pages(stream: Any) -> Iterator[Page]:
    """The pages of a :class:`~ingestion_assets.http.client.PageStream` of a streamed format.

    Each response is read piece by piece; the paginator (single page, ``Link`` header,
    header cursor, offset or page number) sees each response's record count and last record.
    """
    paginator, request = stream.paginator, stream.request
    paginator.init_request(request)
    seen: set[int] = set()
    index = requests_sent = 0
    while True:
        stream._check_next(request, seen, requests_sent)
        via = "the request" if requests_sent == 0 else (
            f"the next page ({paginator.describe().get('style')})")
        result = stream.client._send(request, stream.stats, stream.endpoint, None, via,
                                     stream=True)
        requests_sent += 1
        paginator.read_headers(result.response)
        tally = _Tally()
        for piece, records in _pieces(stream, result):
            tally.add(records)
            yield stream._page(index, request, replace(result, content=piece, records=records))
            index += 1
        paginator.update_state(result.response, None, tally)
        if paginator.stop_after_empty_page and not tally:
            paginator.has_next = False
        stream._note_total()
        if not paginator.has_next:
            break
        paginator.update_request(request)
    stream._finish()


def _pieces(stream: Any, result: Any) -> Iterator[tuple[bytes, list[Any]]]:
    """``(piece, records)`` of one response; one empty piece for a body without any."""
    body = result.content
    if not isinstance(body, StreamedBody):  # 204 No Content
        yield b"", []
        return
    content_type = result.response.headers.get("Content-Type") or ""
    if not stream.body_format.accept_unframed and not _framed(result.response):
        body.response.close()
        raise body._error(
            InvalidResponseError,
            f"{stream.body_format.kind} body sent without Content-Length or chunked transfer "
            "encoding: its end is the connection closing, so a connection cut at a line "
            "break would pass for the end and the partition would be stored short; nothing "
            "stored. Set `accept_unframed_body: true` on the endpoint only if the API cannot "
            "frame it (then a cut goes unnoticed); not retried", transient=False,
        )
    budgets: Budgets = stream.client.budgets
    sent = False
    try:
        reader = RecordReader(stream.body_format, content_type)
        for piece in split_pieces(body.chunks(stream.stats), stream.body_format, content_type,
                                  max_record_bytes=budgets.max_body_bytes):
            if not sent:
                _refuse_json_error(stream, result.response, piece, content_type)
            records = reader.records(piece)
            sent = True
            yield piece, records
    except BodyFormatError as exc:
        body.response.close()
        # A malformed line or row may be a body cut short (transient: the step's retry
        # fetches the partition again); a wrong charset or an endless line would come again.
        permanent = isinstance(exc, CharsetError | RecordTooLongError)
        raise InvalidResponseError(
            f"{stream.body_format.kind} body: {exc}" + ("; not retried" if permanent else ""),
            url=result.response.url, status=result.response.status_code,
            transient=not permanent, source=stream.client.source, endpoint=stream.endpoint,
        ) from None
    if not sent:
        yield b"", []


def _framed(response: requests.Response) -> bool:
    """Whether the body's end is announced (a length, or chunked encoding's last chunk), so
    that ``urllib3`` tells a cut connection from the end of the body."""
    headers = response.headers
    encodings = [e.strip().lower() for e in headers.get("Transfer-Encoding", "").split(",")]
    return "chunked" in encodings or headers.get("Content-Length") is not None


def _refuse_json_error(stream: Any, response: requests.Response, piece: bytes,
                       content_type: str) -> None:
    """Raise when the first piece is a JSON error object served instead of the export.

    A gateway may answer 200 with ``{"error": ...}`` as ``application/json``: for CSV any JSON
    body, for NDJSON a lone object the client's error detector calls an error. Transient, as
    for a JSON page: the step's retry fetches the partition again.
    """
    media = content_type.split(";")[0].strip().lower()
    if media != "application/json" and not (stream.body_format.kind == "csv" and "json" in media):
        return
    try:
        value = orjson.loads(piece)
    except orjson.JSONDecodeError:
        return  # NDJSON of several lines, labelled application/json
    error = stream.client.error_detector(value)
    if stream.body_format.kind == "ndjson" and not error:
        return
    raise InvalidResponseError(
        f"expected a {stream.body_format.kind} export, got a JSON "
        f"{'error object' if error else 'body'} ({media})",
        url=response.url, status=response.status_code, body=piece[:2000],
        source=stream.client.source, endpoint=stream.endpoint,
    )
