"""Each pagination style over real HTTP: every record arrives exactly once (compared with
the demo API's ground truth), and the guards fail loudly instead of looping or truncating."""

from __future__ import annotations

import pytest

from ingestion_assets.http import errors, paginators
from ingestion_assets.specs import CustomPagination

from .conftest import (
    FEB1,
    SIX_HOURS,
    assert_exactly_once,
    charges_truth,
    fetch_charges,
    source_client,
)

FEB1_ISO, FEB2_ISO, FEB8_ISO = (
    "2025-02-01T00:00:00Z",
    "2025-02-02T00:00:00Z",
    "2025-02-08T00:00:00Z",
)


def fetched(stream) -> list[dict]:
    return [r for page in stream for r in page.records]


@pytest.mark.parametrize("limit", [1, 7, 100])
def test_last_record_cursor_stripe(api, limit):
    client = source_client(api, "payments")
    stream = fetch_charges(client, FEB1, FEB1 + SIX_HOURS, limit=limit)
    assert_exactly_once(fetched(stream), charges_truth(api))
    assert stream.stats.pages == -(-180 // limit)


def test_json_body_cursor_hubspot_contacts(api):
    client = source_client(api, "crm")
    stream = client.fetch_pages(
        "/crm/v3/objects/contacts",
        params={"limit": 100, "updated_gte": FEB1_ISO, "updated_lt": FEB2_ISO},
        paginator=paginators.JsonCursor("paging.next.after", "after"),
        records_path="results",
        endpoint="contacts",
    )
    truth = api.records("crm", "contacts", start=FEB1_ISO, end=FEB2_ISO, field="updated")
    assert_exactly_once(fetched(stream), truth)
    assert stream.stats.pages == -(-len(truth) // 100)


def test_json_next_link_in_body(api):
    client = source_client(api, "crm")
    stream = client.fetch_pages(
        "/crm/v3/objects/contacts",
        params={"limit": 50, "updated_gte": FEB1_ISO, "updated_lt": FEB2_ISO},
        paginator=paginators.JsonLink("paging.next.link"),
        records_path="results",
    )
    truth = api.records("crm", "contacts", start=FEB1_ISO, end=FEB2_ISO, field="updated")
    assert_exactly_once(fetched(stream), truth)


@pytest.mark.parametrize("workers", [1, 4])
def test_offset_with_declared_total(api, workers):
    client = source_client(api, "crm")
    stream = client.fetch_pages(
        "/marketing/v3/emails",
        params={"updated_gte": FEB1_ISO, "updated_lt": FEB8_ISO},
        paginator=paginators.OffsetPaginator(limit=10, total_path="total"),
        records_path="results",
        workers=workers,
        endpoint="emails",
    )
    pages = list(stream)
    truth = api.records("crm", "emails", start=FEB1_ISO, end=FEB8_ISO, field="updated")
    assert_exactly_once([r for p in pages for r in p.records], truth)
    assert [p.index for p in pages] == list(range(len(pages)))
    assert stream.stats.declared_total == len(truth)
    assert len(pages) == -(-len(truth) // 10)  # ends at offset >= total, no extra request
    assert stream.stats.workers == workers


def test_offset_without_total_ends_only_on_the_empty_page(api):
    client = source_client(api, "crm")
    stream = client.fetch_pages(
        "/marketing/v3/emails",
        params={"updated_gte": FEB1_ISO, "updated_lt": FEB8_ISO, "includeTotal": "false"},
        paginator=paginators.OffsetPaginator(limit=10, total_path="total"),
        records_path="results",
        workers=4,  # no total: no random access, sequential
    )
    pages = list(stream)
    truth = api.records("crm", "emails", start=FEB1_ISO, end=FEB8_ISO, field="updated")
    assert_exactly_once([r for p in pages for r in p.records], truth)
    assert stream.stats.declared_total is None
    assert len(pages[-2].records) < 10 and pages[-1].records == []  # short page was not the end


def test_page_number_with_silently_capped_page_size_is_not_cut_short(api):
    # GitHub caps per_page at 100 without saying so: page 1 is "short" (100 < 150) in
    # the middle of the data. Stopping there would lose 136 issues.
    client = source_client(api, "devhub")
    repo = api.records("devhub", "repos", org="demo-org")[0]["full_name"]
    stream = client.fetch_pages(
        f"/repos/{repo}/issues",
        params={"state": "all"},
        paginator=paginators.PageNumberPaginator(page_size=150),
        records_path=None,  # the body is the list
    )
    truth = api.records("devhub", "issues", repo=repo)
    assert len(truth) > 150
    assert_exactly_once(fetched(stream), truth)


def test_link_header_shopify_page_info(api):
    client = source_client(api, "commerce")
    stream = client.fetch_pages(
        "/orders.json",
        params={
            "limit": 50,
            "status": "any",
            "created_at_min": FEB1_ISO,
            "created_at_max": "2025-02-01T23:59:59Z",
        },
        paginator=paginators.LinkHeader(),
        records_path="orders",
        endpoint="orders",
    )
    truth = api.records("commerce", "orders", start=FEB1_ISO, end=FEB2_ISO)
    assert_exactly_once(fetched(stream), truth)
    assert stream.stats.pages == -(-len(truth) // 50)


def test_link_header_github_with_records_at_the_root(api):
    client = source_client(api, "devhub")
    stream = client.fetch_pages(
        "/orgs/demo-org/repos", params={"per_page": 5}, paginator=paginators.LinkHeader()
    )
    assert_exactly_once(fetched(stream), api.records("devhub", "repos", org="demo-org"))


def test_header_cursor(api):
    client = source_client(api, "devhub")
    stream = client.fetch_pages(
        "/orgs/demo-org/events",
        params={"per_page": 100},
        paginator=paginators.HeaderCursor("X-Next-Cursor", "cursor"),
    )
    assert_exactly_once(fetched(stream), api.records("devhub", "events", org="demo-org"))


def test_keyset_with_tie_breaker_keeps_records_sharing_a_timestamp(api):
    # 40 orders get the very same updated_at: pages of 7 cut through the tie many times.
    api.mutate(
        "commerce", "orders", update=40, window=[FEB1_ISO, FEB2_ISO], at="2025-02-01T12:00:00Z"
    )
    client = source_client(api, "commerce")
    stream = client.fetch_pages(
        "/orders.json",
        params={
            "limit": 7,
            "status": "any",
            "order": "updated_at asc",
            "updated_at_min": FEB1_ISO,
            "updated_at_max": "2025-02-01T23:59:59Z",
        },
        paginator=paginators.KeysetPaginator(
            "updated_at", "updated_at_min", tiebreak_field="id", tiebreak_param="since_id"
        ),
        records_path="orders",
    )
    got = fetched(stream)
    truth = api.records("commerce", "orders", start=FEB1_ISO, end=FEB2_ISO, field="updated")
    assert sum(1 for r in truth if r["updated_at"].startswith("2025-02-01T07:00:00")) >= 40
    assert_exactly_once(got, truth)
    assert [r["updated_at"] for r in got] == sorted(r["updated_at"] for r in got)


def test_single_page(api):
    client = source_client(api, "crm")
    stream = client.fetch_pages(
        "/analytics/v2/reports/daily", params={"date": "2025-02-01"}, records_path="rows"
    )
    (page,) = list(stream)
    assert page.records and all(r["date"] == "2025-02-01" for r in page.records)
    assert stream.stats.requests == 1


def test_max_pages_is_a_guard_not_a_truncation(api):
    client = source_client(api, "payments")
    with pytest.raises(errors.MaxPagesExceededError, match="max_pages=3"):
        list(fetch_charges(client, limit=50, max_pages=3))  # 4 pages needed
    assert len(list(fetch_charges(client, limit=50, max_pages=4))) == 4


def test_a_cursor_seen_twice_is_an_error_not_an_infinite_loop(api):
    client = source_client(api, "devhub")
    # A (misconfigured) cursor that never changes: a header with a constant value.
    stream = client.fetch_pages(
        "/orgs/demo-org/repos",
        params={"per_page": 5},
        paginator=paginators.HeaderCursor("Content-Type", "ignored"),
    )
    with pytest.raises(errors.PaginationLoopError, match="seen twice"):
        list(stream)
    assert stream.stats.requests == 2


def test_the_same_paginator_serves_many_fetches(api):
    client = source_client(api, "payments")
    paginator = paginators.LastRecordCursor()
    for start in (FEB1, FEB1 + SIX_HOURS):
        stream = client.fetch_pages(
            "/v1/charges",
            params={"limit": 100, "created[gte]": start, "created[lt]": start + SIX_HOURS},
            paginator=paginator,
            records_path="data",
        )
        assert_exactly_once(fetched(stream), charges_truth(api, start, start + SIX_HOURS))
    assert paginator.cursor is None  # the configured instance was never mutated


def test_custom_paginator_by_import_path(api):
    client = source_client(api, "devhub")
    paginator = CustomPagination(
        type="custom", class_path="ingestion_assets_tests.http.plugins:EveryOtherPage",
        options={"page_size": 5, "step": 2},
    ).build("devhub")
    assert type(paginator).__name__ == "EveryOtherPage" and paginator.step == 2
    stream = client.fetch_pages("/orgs/demo-org/repos", paginator=paginator)
    assert_exactly_once(fetched(stream), api.records("devhub", "repos", org="demo-org"))


def test_fewer_records_than_the_declared_total_fail_the_fetch(api):
    # A cursor path that finds nothing ends after page 1, but the body declares 84.
    client = source_client(api, "crm")
    stream = client.fetch_pages(
        "/marketing/v3/emails",
        params={"limit": 10, "updated_gte": FEB1_ISO, "updated_lt": FEB8_ISO},
        paginator=paginators.JsonCursor("paging.next.after", "after", total_path="total"),
        records_path="results",
        endpoint="emails",
    )
    with pytest.raises(
        errors.IncompleteFetchError, match=r"received 10 records but the API declared \d+"
    ):
        list(stream)
    assert stream.stats.declared_total > 10


# ---- totals declared in headers, for any style ---------------------------------------------


class _LoopbackApi:
    """A small hostile API on loopback: ``respond(path) -> (body, headers)`` answers each GET."""

    def __init__(self, respond) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                body, headers = respond(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def fetch(self, paginator, **kwargs):
        from ingestion_assets.http import ApiClient

        from .conftest import FAST_RETRY

        with ApiClient(self.url, retry=FAST_RETRY, source="hostile") as client:
            stream = client.fetch_pages("/items", paginator=paginator, endpoint="items", **kwargs)
            return [r for page in stream for r in page.records], stream.stats

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _two_cursor_pages(extra: dict[str, str]):
    """Two 2-record pages chained by X-Next-Cursor, with ``extra`` headers on each."""

    def respond(path: str):
        page = 2 if "cursor=2" in path else 1
        body = f'[{{"id": {2 * page - 1}}}, {{"id": {2 * page}}}]'.encode()
        return body, {**extra, **({"X-Next-Cursor": "2"} if page == 1 else {})}

    return respond


@pytest.mark.parametrize(
    ("headers", "totals", "error"),
    [
        ({"X-Total-Count": "4", "X-Total-Pages": "2"},
         {"total_header": "X-Total-Count", "total_pages_header": "X-Total-Pages"}, None),
        ({"X-Total-Count": "5"}, {"total_header": "X-Total-Count"},
         "received 4 records but the API declared 5"),
        ({"X-Total-Pages": "3"}, {"total_pages_header": "X-Total-Pages"},
         "received 2 pages but the API declared 3"),
        ({"X-Total-Count": "lots"}, {"total_header": "X-Total-Count"},
         "header X-Total-Count is not an integer"),
        ({"X-Total-Count": "5"}, {}, None),  # not declared in the spec: not read
    ],
)
def test_header_totals_are_checked_for_a_cursor_style(headers, totals, error):
    api = _LoopbackApi(_two_cursor_pages(headers))
    paginator = paginators.HeaderCursor().declare_totals(**totals)
    try:
        if error is None:
            records, stats = api.fetch(paginator)
            assert [r["id"] for r in records] == [1, 2, 3, 4]
            assert stats.declared_total == (4 if totals else None)
        else:
            with pytest.raises((errors.IncompleteFetchError, errors.PaginationError), match=error):
                api.fetch(paginator)
    finally:
        api.close()


@pytest.mark.parametrize("workers", [1, 3])
def test_a_link_chain_shorter_than_its_last_link_fails(workers):
    # Page 1 links next=2 and last=4; page 2 has no next link: two pages, four declared.
    # Concurrently, page 3 comes back empty where the plan expected a full page.
    def respond(path: str):
        page = int(path.rsplit("page=", 1)[1]) if "page=" in path else 1
        if page == 1:
            links = '</items?page=2>; rel="next", </items?page=4>; rel="last"'
            return b'[{"id": 1}, {"id": 2}]', {"Link": links}
        if page == 2:
            return b'[{"id": 3}, {"id": 4}]', {}
        return b"[]", {}

    api = _LoopbackApi(respond)
    try:
        expected = (
            "received 2 pages but the API declared 4" if workers == 1
            else r"page at http://127\.0\.0\.1:\d+/items\?page=3 returned 0 records, expected 2"
        )
        with pytest.raises(errors.IncompleteFetchError, match=expected):
            api.fetch(paginators.LinkHeader(), workers=workers)
    finally:
        api.close()
