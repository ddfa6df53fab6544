"""One record-extraction rule: the fetch and the re-read of a stored page find the same records.

Each body is served over loopback HTTP by a tiny server, fetched by the client (what the raw
step counts) and its stored bytes re-read by ``records_of_page`` (what the table step
normalizes): both must give the same records, or both refuse the page.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ingestion_assets.http import ApiClient
from ingestion_assets.http.errors import InvalidResponseError
from ingestion_assets.http.records import RecordsNotFound
from ingestion_assets.resources import records_of_page
from ingestion_assets_tests.http.conftest import FAST_RETRY

ONE = {"id": "a1", "amount": 5}
TWO = {"id": "a2", "amount": 7}

# (case, status, body, records_path, records; None = the page is refused)
CASES = [
    ("list at the path", 200, b'{"data": [{"id": "a1", "amount": 5}]}', "data", [ONE]),
    ("null at the path", 200, b'{"data": null, "has_more": false}', "data", []),
    ("empty list at the path", 200, b'{"data": []}', "data", []),
    ("one object at the path", 200, b'{"data": {"id": "a1", "amount": 5}}', "data", [ONE]),
    ("top-level array", 200, b'[{"id": "a1", "amount": 5}, {"id": "a2", "amount": 7}]', None,
     [ONE, TWO]),
    ("top-level null", 200, b"null", None, []),
    ("204 no content", 204, b"", "data", []),
    ("204 no content, body is the list", 204, b"", None, []),
    ("nested path", 200, b'{"paging": {"items": [{"id": "a1", "amount": 5}]}}', "paging.items",
     [ONE]),
    ("missing path", 200, b'{"items": [{"id": "a1"}]}', "data", None),
    ("object where the body should be the list", 200, b'{"id": "a1"}', None, None),
    ("string at the path", 200, b'{"data": "nope"}', "data", None),
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    pages: dict[str, tuple[int, bytes]] = {}

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        status, body = self.pages[self.path.split("?")[0]]
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 204:
            self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def body_server() -> Iterator[str]:
    _Handler.pages = {f"/case/{i}": (status, body) for i, (_, status, body, _, _) in enumerate(CASES)}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("index", "records_path", "expected"),
    [(i, path, records) for i, (_, _, _, path, records) in enumerate(CASES)],
    ids=[case[0] for case in CASES],
)
def test_fetch_and_reread_find_the_same_records(body_server, index, records_path, expected):
    with ApiClient(body_server, retry=FAST_RETRY, source="bodies") as client:
        stream = client.fetch_pages(f"/case/{index}", records_path=records_path, endpoint="case")
        if expected is None:
            with pytest.raises(InvalidResponseError, match="records"):
                list(stream)
            status, body = _Handler.pages[f"/case/{index}"]
            with pytest.raises(RecordsNotFound):
                records_of_page(body, records_path)
            return
        pages = list(stream)
    assert len(pages) == 1
    fetched = pages[0].records
    reread = records_of_page(pages[0].body, records_path)
    assert fetched == expected
    assert reread == expected, "the stored page re-reads differently from how it was fetched"
    assert stream.stats.records == len(expected)
