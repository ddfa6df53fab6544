"""Body formats over loopback: NDJSON and CSV streamed in pieces, charsets, one-object bodies.

The demo API's exports source answers in each shape; the client's records are compared
with its ground truth, and the hostile cases (a body that never ends, a line that never
ends, a body not in its declared charset, a stream cut short) fail with a clear error.
"""

from __future__ import annotations

import orjson
import pytest

from ingestion_assets.http import ApiClient, RateLimiter, paginators
from ingestion_assets.http.budgets import MIB, Budgets
from ingestion_assets.http.errors import (
    BodyTooLargeError,
    InvalidResponseError,
    MaxPagesExceededError,
    PaginationLoopError,
    TransportError,
)
from ingestion_assets.http.formats import (
    BodyFormat,
    BodyFormatError,
    CsvOptions,
    RecordReader,
    charset_of,
    json_text,
    split_pieces,
)
from ingestion_assets.http.records import stored_page_records
from ingestion_assets_tests.hostile import HostileServer, Reply

from .conftest import FAST_RETRY, source_client

DAY = {"start": "2025-02-10T00:00:00Z", "end": "2025-02-11T00:00:00Z"}
NDJSON = BodyFormat("ndjson", piece_bytes=2048)
SALES = BodyFormat("csv", CsvOptions(delimiter=";"), piece_bytes=1024)


def _fetch(api, path, fmt, params=DAY, **kwargs):
    client = source_client(api, "exports", **kwargs.pop("client", {}))
    return client.fetch_pages(path, params=dict(params), body_format=fmt, endpoint="x",
                              **kwargs)


@pytest.mark.parametrize("charset", ["utf-8", "utf-16"])
def test_ndjson_export_arrives_in_pieces_with_every_record_once(api, charset):
    stream = _fetch(api, "/v1/events.ndjson", NDJSON, {**DAY, "charset": charset},
                    partition="2025-02-10")
    pages = list(stream)
    truth = api.records("exports", "events", DAY["start"], DAY["end"])
    assert [r for p in pages for r in p.records] == truth
    assert len(pages) > 3  # cut into pieces, not held whole
    assert stream.stats.requests == 1 and stream.stats.records == len(truth)
    body = b"".join(p.body for p in pages)  # the archive keeps the response byte for byte
    assert body.startswith(b"\xff\xfe") == (charset == "utf-16")
    assert stream.stats.bytes == len(body)
    # The stored pieces re-read to the same records, page by page.
    stored = [({"url": p.url, "params": p.params, "headers": p.headers}, p.body) for p in pages]
    assert list(stored_page_records(stored, None, NDJSON)) == [p.records for p in pages]


def test_csv_export_keeps_quoted_delimiters_quotes_and_line_breaks(api):
    pages = list(_fetch(api, "/v1/sales.csv", SALES))
    truth = api.records("exports", "sales", DAY["start"], DAY["end"])
    got = [r for p in pages for r in p.records]
    assert len(pages) > 2 and len(got) == len(truth)
    for record, expected in zip(got, truth, strict=True):
        # Inferred: integers become numbers, zip codes with leading zeros stay text.
        assert record == expected, (record, expected)
    assert any("\n" in (r["note"] or "") for r in got) and any(";" in r["product"] for r in got)


def test_a_single_object_body_is_one_record(api):
    client = source_client(api, "exports")
    records = list(client.fetch_pages("/v1/summary", params=DAY, records_path="$").iter_records())
    assert records == api.records("exports", "summary", DAY["start"], DAY["end"])
    with pytest.raises(InvalidResponseError, match="expected a JSON array"):
        list(client.fetch_pages("/v1/summary", params=DAY))  # never guessed without `$`


def test_a_windows_1252_body_is_decoded_by_its_charset(api):
    client = source_client(api, "exports")
    got = list(client.fetch_pages("/v1/ledger", params=DAY, records_path="entries").iter_records())
    truth = api.records("exports", "ledger", DAY["start"], DAY["end"])
    assert got == truth and any("€" in r["memo"] for r in got)


def test_a_body_not_in_its_charset_fails_naming_source_endpoint_and_partition(api):
    client = source_client(api, "exports")
    stream = client.fetch_pages("/v1/ledger", params={**DAY, "label": "utf-8"},
                                records_path="entries", endpoint="ledger", partition="2025-02-10")
    with pytest.raises(InvalidResponseError) as caught:
        list(stream)
    message = str(caught.value)
    assert "[exports/ledger]" in message and "partition=2025-02-10" in message
    assert "not valid utf-8" in message and not caught.value.transient
    assert stream.stats.requests == 1  # the same bytes would come again: not retried


def test_a_body_that_never_ends_fails_at_the_stream_budget(api):
    client = {"budgets": Budgets(max_stream_bytes=3 * MIB)}
    stream = _fetch(api, "/v1/endless.ndjson", NDJSON, {}, client=client, partition="p1")
    with pytest.raises(BodyTooLargeError, match=r"larger than 3 MiB.*limits.max_stream_mb") as e:
        for _ in stream:
            pass
    assert "partition=p1" in str(e.value) and not e.value.transient


def test_a_line_that_never_ends_fails_at_the_record_budget():
    endless_line = (b"x" * 65536 for _ in range(10_000))
    with pytest.raises(BodyFormatError, match="no record boundary"):
        for _ in split_pieces(endless_line, NDJSON, None, max_record_bytes=MIB):
            pass


def test_a_stream_cut_short_fails_transient_and_earlier_faults_are_retried(api):
    api.add_fault(kind="server_error", source="exports", count=1)
    api.add_fault(kind="rate_limit", source="exports", count=1, retry_after="0")
    pages = list(_fetch(api, "/v1/events.ndjson", NDJSON, partition="d"))
    assert sum(len(p.records) for p in pages) == len(
        api.records("exports", "events", DAY["start"], DAY["end"]))
    api.add_fault(kind="drop_connection", mode="mid_body", source="exports", count=1)
    with pytest.raises(TransportError, match="broke off") as caught:
        list(_fetch(api, "/v1/events.ndjson", NDJSON))
    assert caught.value.transient  # the step's retry fetches the partition again


def test_streamed_pages_keep_the_loop_guard_and_max_pages(api):
    # The same request twice (a cursor that does not move): the loop guard stops it.
    class Stuck(paginators.Paginator):
        def update_state(self, response, body, records):
            self.has_next = len(records) > 0 and records[-1]["id"].startswith("evt_")

        def update_request(self, request):
            pass

    with pytest.raises(PaginationLoopError, match="repeats an earlier one"):
        list(_fetch(api, "/v1/events.ndjson", NDJSON, paginator=Stuck()))
    with pytest.raises(MaxPagesExceededError):
        list(_fetch(api, "/v1/events.ndjson", NDJSON,
                    paginator=paginators.OffsetPaginator(limit=10), max_pages=1))


def test_html_instead_of_an_export_is_an_invalid_response(api):
    api.add_fault(kind="html", source="exports", count=10)
    with pytest.raises(InvalidResponseError, match="expected JSON, got text/html"):
        list(_fetch(api, "/v1/events.ndjson", NDJSON))


# ------------------------------------------------------------------------ plain data
@pytest.mark.parametrize(
    ("content_type", "expected"),
    [("application/json", None), ("text/csv; charset=ISO-8859-1", "iso-8859-1"),
     ('application/json;charset="UTF-16"', "utf-16"), ("text/plain; format=x", None)],
)
def test_charset_of(content_type, expected):
    assert charset_of(content_type) == expected


@pytest.mark.parametrize("charset", ["latin-1", "windows-1252", "utf-16", "utf-16-be", "utf-32"])
def test_json_bodies_in_other_charsets(charset):
    text = '{"name": "Zoë", "city": "Malmö"}'
    body = text.encode(charset)
    assert json_text(body, f"application/json; charset={charset}") == text


def test_unknown_or_non_text_charsets_are_refused():
    for label in ("klingon", "base64"):
        with pytest.raises(BodyFormatError, match="charset"):
            json_text(b"{}", f"application/json; charset={label}")


def test_csv_errors_name_the_row():
    fmt = BodyFormat("csv")
    with pytest.raises(BodyFormatError, match="row 3 has 1 fields, the header 2"):
        RecordReader(fmt).records(b"a,b\n1,2\n3\n")
    with pytest.raises(BodyFormatError, match="repeated names"):
        RecordReader(fmt).records(b"a,a\n1,2\n")
    no_header = BodyFormat("csv", CsvOptions(header=False, columns=("a", "b")))
    assert RecordReader(no_header).records(b"1,x\n") == [{"a": 1, "b": "x"}]


def test_ndjson_errors_name_the_record():
    with pytest.raises(BodyFormatError, match="record 2 .* is not JSON"):
        RecordReader(NDJSON).records(b'{"a": 1}\n{"a": \n')
    with pytest.raises(BodyFormatError, match="record 1 is a list, not an object"):
        RecordReader(NDJSON).records(b"[1, 2]\n")


def test_an_unframed_export_is_refused_because_a_cut_would_look_like_its_end():
    # Five lines promised, three sent, then the connection closes at a line break. Without a
    # Content-Length or chunked framing nothing tells this from the end of the export.
    lines = [orjson.dumps({"id": i}) + b"\n" for i in range(5)]
    with HostileServer() as server:
        server.routes["/cut.ndjson"] = lambda seen: Reply(
            200, iter(lines[:3]), content_type="application/x-ndjson")
        server.routes["/whole.ndjson"] = lambda seen: Reply(
            200, b"".join(lines), content_type="application/x-ndjson")
        # Framed, but the connection closes after 3 of the 5 announced lines' bytes.
        server.routes["/short.ndjson"] = lambda seen: Reply(
            200, iter(lines[:3]), content_type="application/x-ndjson",
            length=len(b"".join(lines)))
        client = ApiClient(server.url, source="hostile", timeout=(2, 5), retry=FAST_RETRY,
                           rate_limiter=RateLimiter(None))

        def fetch(path, fmt=NDJSON):
            stream = client.fetch_pages(path, body_format=fmt, endpoint="export",
                                        partition="2025-02-10")
            return [r["id"] for r in stream.iter_records()]

        with pytest.raises(InvalidResponseError) as caught:
            fetch("/cut.ndjson")
        message = str(caught.value)
        assert "without Content-Length or chunked transfer encoding" in message
        assert "accept_unframed_body" in message and not caught.value.transient
        assert message.startswith("[hostile/export] ") and "partition=2025-02-10" in message
        assert len(server.seen) == 1  # not retried: the next answer would be unframed too
        # Framed, the same records arrive whole, and a cut under the length is an error.
        assert fetch("/whole.ndjson") == [0, 1, 2, 3, 4]
        with pytest.raises(TransportError, match="broke off") as cut:
            fetch("/short.ndjson")
        assert cut.value.transient  # the step's retry fetches the partition again
        # The opt-in takes the unframed body as it comes, and with it the cut: what the
        # message warns about.
        accepting = BodyFormat("ndjson", piece_bytes=2048, accept_unframed=True)
        assert fetch("/cut.ndjson", accepting) == [0, 1, 2]
