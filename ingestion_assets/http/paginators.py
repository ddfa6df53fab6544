"""Pagination strategies: one small class per style, three verbs each.

``init_request`` prepares the first request, ``update_state`` reads a response into the
paginator's state (and decides whether there is a next page), ``update_request`` turns the
state into the next request. The client drives them and adds what every style needs: a
loop guard (a request seen twice is an error), a maximum page count, the check against a
declared total, and concurrency where the style allows random access.

End of data is decided only on an explicit signal: an empty page, no next cursor or link,
``has_more`` false, or an offset at or past the declared total. A short page in the
middle of the data is *not* the end: APIs cap page sizes and filter pages after slicing.

Each class takes the field names of its YAML model in ``specs.py`` (which builds it), and
takes its defaults from :mod:`ingestion_assets.http.defaults`. Custom styles subclass
:class:`Paginator` and are named by import path in the YAML (``type: custom``,
``class_path: "my_package.pagination:MyPaginator"``); see docs/configuration.md.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests

from ingestion_assets.http import defaults
from ingestion_assets.http.errors import ConfigurationError, PaginationError
from ingestion_assets.http.jsonpath import compile_path, find


@dataclass
class PageRequest:
    """A request the paginator shapes: URL, query parameters and optional JSON body."""

    url: str
    params: dict[str, Any] = field(default_factory=dict)
    method: str = "GET"
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def copy(self) -> PageRequest:
        return PageRequest(
            url=self.url,
            params=dict(self.params),
            method=self.method,
            json=copy.deepcopy(self.json),
            headers=dict(self.headers),
        )

    def key(self) -> tuple:
        """Identity of the request for the loop guard."""
        return (self.method, self.url, repr(sorted(self.params.items(), key=str)), repr(self.json))


@dataclass
class PlannedPage:
    """A page of a random-access plan and the record count it must hold."""

    request: PageRequest
    expected: int | None  # exact count; None when only "non-empty" is known
    last: bool = False


class Paginator:
    """Base class of every pagination style (subclass it for a custom one).

    Attributes:
        has_next: False once the API signalled the end of data.
        total: The record total the API declares on the latest page, if any.
        total_pages: The page count the API declares, if any; the client fails a fetch
            that did not get exactly that many pages.
        total_header: Response header declaring the record total (``X-Total-Count``).
        total_pages_header: Response header declaring the page count (``X-Total-Pages``).
        stop_after_empty_page: Treat an empty page as the end (all built-in styles do).
        random_access: True when the style can plan every page up front once the first
            page is known (offset/page number with a declared total); the client then
            fetches pages concurrently.
        plans_from_total: The style can plan its pages once it knows a total (a header
            total then makes it random access).
    """

    stop_after_empty_page: bool = True
    random_access: bool = False
    plans_from_total: bool = False
    total_header: str | None = None
    total_pages_header: str | None = None
    _total_steps: tuple = ()
    _has_more_steps: tuple = ()

    def __init__(self) -> None:
        self.has_next = True
        self.total: int | None = None
        self.total_pages: int | None = None

    def fresh(self) -> Paginator:
        """A clean copy for one fetch, so one configured paginator serves many fetches."""
        clone = copy.copy(self)
        clone.has_next = True
        clone.total = None
        clone.total_pages = None
        clone.reset()
        return clone

    def declare_totals(
        self, *, total_header: str | None = None, total_pages_header: str | None = None
    ) -> Paginator:
        """Read the record total and/or the page count from response headers (any style).

        They are checked like a total in the body: a fetch whose records (or pages) do not
        match fails. Returns the paginator itself.
        """
        self.total_header = total_header or None
        self.total_pages_header = total_pages_header or None
        if self.plans_from_total and (self.total_header or self.total_pages_header):
            self.random_access = True
        return self

    def read_headers(self, response: requests.Response) -> None:
        """Read the declared totals of :meth:`declare_totals` (called before ``update_state``)."""
        if self.total_header:
            value = _header_int(response, self.total_header)
            if value is not None:
                self.total = value
        if self.total_pages_header:
            value = _header_int(response, self.total_pages_header)
            if value is not None:
                self.total_pages = value

    def reset(self) -> None:
        """Clear the per-fetch state (override when the subclass keeps some)."""

    def init_request(self, request: PageRequest) -> None:
        """Prepare the first request (set the first offset, page number, size...)."""

    def update_state(self, response: requests.Response, body: Any, records: list) -> None:
        """Read a successful response into the state; set ``has_next``."""
        raise NotImplementedError

    def update_request(self, request: PageRequest) -> None:
        """Shape ``request`` into the next page's request from the state."""
        raise NotImplementedError

    def plan(self, request: PageRequest, first_count: int) -> Iterator[PlannedPage] | None:
        """The remaining pages after the first, when they can be fetched in any order.

        Args:
            request: The first page's request (already prepared by ``init_request``).
            first_count: Records on the first page.

        Returns:
            None when the style (or this response) does not allow random access.
        """
        return None

    def expected_records(self) -> int | None:
        """Records this fetch must yield according to the declared total (None: unknown)."""
        return self.total

    def describe(self) -> dict[str, Any]:
        """Configuration summary (no state, no secrets) for logs and metadata."""
        return {"style": type(self).__name__}

    # helpers for subclasses -------------------------------------------------------------
    def _body_fields(
        self, *, total_path: str | None = None, has_more_path: str | None = None,
        total_pages_path: str | None = None,
    ) -> None:
        """Where the body declares the record total, a ``has_more`` flag and the page count
        (None: nowhere). A style that plans from a total is random access with one."""
        self.total_path = total_path
        self.has_more_path = has_more_path
        self.total_pages_path = total_pages_path
        self._total_steps = compile_path(total_path)
        self._has_more_steps = compile_path(has_more_path)
        self._pages_steps = compile_path(total_pages_path)
        if self.plans_from_total:
            self.random_access = bool(total_path or total_pages_path)

    def _no_more(self, body: Any) -> bool:
        """The body's ``has_more`` flag says this is the last page (never without a flag)."""
        return bool(self._has_more_steps) and not _to_bool(find(body, self._has_more_steps))

    def _read_total(self, body: Any, steps: tuple | None = None) -> None:
        """Read the declared total at ``steps`` (default: the ``total_path`` of the style)."""
        steps = self._total_steps if steps is None else steps
        if not steps:
            return
        value = find(body, steps)
        if value is None:
            return
        try:
            self.total = int(value)
        except (TypeError, ValueError) as exc:
            raise PaginationError(f"declared total is not an integer: {value!r}") from exc


def _header_int(response: requests.Response, name: str) -> int | None:
    value = response.headers.get(name)
    if value is None or not value.strip():
        return None
    try:
        return int(value.strip())
    except ValueError:
        raise PaginationError(
            f"declared total in header {name} is not an integer: {value[:40]!r}"
        ) from None


def _to_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes"}
    return bool(value)


class SinglePage(Paginator):
    """The endpoint answers with one page: nothing to follow."""

    def update_state(self, response: requests.Response, body: Any, records: list) -> None:
        self.has_next = False

    def update_request(self, request: PageRequest) -> None:  # pragma: no cover - never called
        raise PaginationError("a single-page endpoint has no next page")


class OffsetPaginator(Paginator):
    """``offset``/``limit`` pagination, with or without a declared total.

    Args:
        limit: Records requested per page.
        offset_param: Query parameter of the offset.
        limit_param: Query parameter of the page size.
        total_path: Path to the declared total in the body (``"total"``); when present the
            fetch ends at ``offset >= total`` and pages can be fetched concurrently.
        has_more_path: Path to a ``has_more`` flag, if the API sends one.
        initial_offset: First offset.
    """

    plans_from_total = True

    def __init__(
        self,
        limit: int = defaults.PAGE_SIZE,
        *,
        offset_param: str = "offset",
        limit_param: str = "limit",
        total_path: str | None = None,
        has_more_path: str | None = None,
        initial_offset: int = 0,
    ) -> None:
        super().__init__()
        if limit < 1:
            raise ConfigurationError("limit must be >= 1")
        self._body_fields(total_path=total_path, has_more_path=has_more_path)
        self.limit = limit
        self.offset_param = offset_param
        self.limit_param = limit_param
        self.initial_offset = initial_offset
        self.offset = initial_offset

    def reset(self) -> None:
        self.offset = self.initial_offset

    def init_request(self, request: PageRequest) -> None:
        self.offset = self.initial_offset
        request.params[self.offset_param] = self.offset
        request.params[self.limit_param] = self.limit

    def update_state(self, response: requests.Response, body: Any, records: list) -> None:
        self._read_total(body)
        # Advance by what arrived, not by the limit asked for: an API capping the page
        # size below our limit would otherwise make us skip records.
        self.offset += len(records)
        if not records or self._no_more(body):
            self.has_next = False
        elif self.total is not None:
            self.has_next = self.offset < self.total

    def update_request(self, request: PageRequest) -> None:
        request.params[self.offset_param] = self.offset
        request.params[self.limit_param] = self.limit

    def plan(self, request: PageRequest, first_count: int) -> Iterator[PlannedPage] | None:
        if self.total is None or first_count <= 0 or not self.has_next:
            return None
        total = self.total
        size = first_count  # the size the API really serves (it may cap our limit)
        start = self.initial_offset + first_count

        def pages() -> Iterator[PlannedPage]:
            for offset in range(start, total, size):
                nxt = request.copy()
                nxt.params[self.offset_param] = offset
                nxt.params[self.limit_param] = self.limit
                expected = min(size, total - offset)
                yield PlannedPage(nxt, expected, last=offset + size >= total)

        return pages()

    def expected_records(self) -> int | None:
        return None if self.total is None else max(0, self.total - self.initial_offset)

    def describe(self) -> dict[str, Any]:
        return {"style": "offset", "limit": self.limit, "total_path": self.total_path}


class PageNumberPaginator(Paginator):
    """``page``/``per_page`` pagination.

    Args:
        page_size: Records requested per page (None: the API's default, not sent).
        page_param: Query parameter of the page number.
        size_param: Query parameter of the page size.
        first_page: Number of the first page (1 for most APIs).
        total_path: Path to the declared record total in the body.
        total_pages_path: Path to the declared page count in the body.
        has_more_path: Path to a ``has_more`` flag, if the API sends one.
        last_page_from_link: Read the page count from the ``Link`` header's
            ``rel="last"`` URL (GitHub), which makes the pages fetchable concurrently.
    """

    plans_from_total = True

    def __init__(
        self,
        page_size: int | None = defaults.PAGE_SIZE,
        *,
        page_param: str = "page",
        size_param: str = "per_page",
        first_page: int = 1,
        total_path: str | None = None,
        total_pages_path: str | None = None,
        has_more_path: str | None = None,
        last_page_from_link: bool = False,
    ) -> None:
        super().__init__()
        self._body_fields(total_path=total_path, has_more_path=has_more_path,
                          total_pages_path=total_pages_path)
        self.page_size = page_size
        self.page_param = page_param
        self.size_param = size_param
        self.first_page = first_page
        self.last_page_from_link = last_page_from_link
        self.random_access = self.random_access or bool(last_page_from_link)  # rel="last": a plan
        self.page = first_page
        self.seen = 0

    def reset(self) -> None:
        self.page = self.first_page
        self.seen = 0
        self.total_pages = None

    def init_request(self, request: PageRequest) -> None:
        self.reset()
        self._shape(request, self.page)

    def _shape(self, request: PageRequest, page: int) -> None:
        request.params[self.page_param] = page
        if self.page_size is not None:
            request.params[self.size_param] = self.page_size

    def update_state(self, response: requests.Response, body: Any, records: list) -> None:
        self._read_total(body)
        if self._pages_steps:
            value = find(body, self._pages_steps)
            if value is not None:
                self.total_pages = int(value)
        if self.last_page_from_link:
            last = _page_of_link(response, self.page_param)
            if last is not None:  # absent on the last page itself: keep what we know
                self.total_pages = last - self.first_page + 1
        self.page += 1
        self.seen += len(records)
        if not records or self._no_more(body):
            self.has_next = False
        elif self.total is not None:
            self.has_next = self.seen < self.total
        elif self.total_pages is not None:
            self.has_next = self.page < self.first_page + self.total_pages

    def update_request(self, request: PageRequest) -> None:
        self._shape(request, self.page)

    def plan(self, request: PageRequest, first_count: int) -> Iterator[PlannedPage] | None:
        if first_count <= 0 or not self.has_next:
            return None
        first = self.first_page
        if self.total is not None:
            size = first_count
            total = self.total
            last_page = first + math.ceil(total / size) - 1

            def expected(page: int) -> int | None:
                return min(size, total - (page - first) * size)

        elif self.total_pages is not None:
            size = first_count
            last_page = first + self.total_pages - 1

            def expected(page: int) -> int | None:
                return size if page < last_page else None

        else:
            return None

        def pages() -> Iterator[PlannedPage]:
            for page in range(first + 1, last_page + 1):
                nxt = request.copy()
                self._shape(nxt, page)
                yield PlannedPage(nxt, expected(page), last=page == last_page)

        return pages()

    def describe(self) -> dict[str, Any]:
        return {"style": "page_number", "page_size": self.page_size, "total_path": self.total_path}


def _page_of_link(response: requests.Response, page_param: str, rel: str = "last") -> int | None:
    link = parse_link_header(response.headers.get("Link")).get(rel)
    if not link:
        return None
    values = parse_qs(urlsplit(link).query).get(page_param)
    try:
        return int(values[-1]) if values else None
    except ValueError:
        return None


class _QueryCursor(Paginator):
    """A style whose next request sends one cursor, read from the last response, as a
    query parameter (``cursor_param``)."""

    def __init__(self, cursor_param: str, cursor_at: str | None = None, **body: str | None) -> None:
        super().__init__()
        self.cursor_param = cursor_param
        self._cursor_steps = compile_path(cursor_at)  # in the body, or in the last record
        self._body_fields(**body)
        self.cursor: Any = None

    def reset(self) -> None:
        self.cursor = None

    def update_request(self, request: PageRequest) -> None:
        request.params[self.cursor_param] = self.cursor


class JsonCursor(_QueryCursor):
    """A cursor found in the body, sent back as a query parameter.

    Args:
        cursor_path: Path to the next cursor (``"paging.next.after"``); missing, null or
            empty means the end.
        cursor_param: Query parameter carrying the cursor.
        has_more_path: Optional path to a ``has_more`` flag; false means the end.
        total_path: Optional path to a declared record total, checked at the end.
    """

    def __init__(self, cursor_path: str = "next_cursor", cursor_param: str = "cursor", *,
                 has_more_path: str | None = None, total_path: str | None = None) -> None:
        super().__init__(cursor_param, cursor_path, total_path=total_path,
                         has_more_path=has_more_path)
        self.cursor_path = cursor_path

    def update_state(self, response: requests.Response, body: Any, records: list) -> None:
        self._read_total(body)
        self.cursor = find(body, self._cursor_steps)
        if self.cursor is None or self.cursor == "" or self._no_more(body):
            self.has_next = False

    def describe(self) -> dict[str, Any]:
        return {"style": "json_cursor", "cursor_path": self.cursor_path}


class LastRecordCursor(_QueryCursor):
    """Stripe-style: while ``has_more`` is true, the last record's id is the next cursor.

    Args:
        cursor_field: Field of the last record used as the cursor (``"id"``).
        cursor_param: Query parameter carrying it (``"starting_after"``).
        has_more_path: Path to the ``has_more`` flag in the body (None: ``"has_more"``).
        total_path: Optional path to a declared record total (Stripe's ``total_count``).
    """

    def __init__(self, cursor_field: str = "id", cursor_param: str = "starting_after", *,
                 has_more_path: str | None = None, total_path: str | None = None) -> None:
        super().__init__(cursor_param, cursor_field, total_path=total_path,
                         has_more_path=has_more_path or "has_more")
        self.cursor_field = cursor_field

    def update_state(self, response: requests.Response, body: Any, records: list) -> None:
        self._read_total(body)
        if self._no_more(body):
            self.has_next = False
            return
        if not records:
            raise PaginationError("has_more is true on an empty page: no record to continue after")
        self.cursor = find(records[-1], self._cursor_steps)
        if self.cursor is None:
            raise PaginationError(f"last record has no {self.cursor_field!r} to continue after")

    def describe(self) -> dict[str, Any]:
        return {"style": "last_record_cursor", "cursor_param": self.cursor_param}


class HeaderCursor(_QueryCursor):
    """A cursor in a response header (``X-Next-Cursor``); absent means the end.

    Args:
        header: Response header holding the next cursor.
        cursor_param: Query parameter carrying it.
    """

    def __init__(self, header: str = "X-Next-Cursor", cursor_param: str = "cursor") -> None:
        super().__init__(cursor_param)
        self.header = header

    def update_state(self, response: requests.Response, body: Any, records: list) -> None:
        self.cursor = response.headers.get(self.header) or None
        if self.cursor is None:
            self.has_next = False

    def describe(self) -> dict[str, Any]:
        return {"style": "header_cursor", "header": self.header}


class KeysetPaginator(Paginator):
    """Keyset ("seek") pagination: the next request filters past the last record's key.

    Records sharing a sort value (many rows updated in the same second) are not lost at
    a page boundary because the tie-breaker (the primary key) is sent too, and the API
    returns rows with ``(sort, tiebreaker) > (last_sort, last_tiebreaker)``.

    Args:
        sort_field: Record field the API orders by (``"updated_at"``).
        sort_param: Query parameter filtering on it (``"updated_at_min"``).
        tiebreak_field: Unique record field breaking ties (``"id"``).
        tiebreak_param: Query parameter carrying it (``"since_id"``).
    """

    def __init__(
        self,
        sort_field: str = "updated_at",
        sort_param: str = "updated_at_min",
        *,
        tiebreak_field: str | None = "id",
        tiebreak_param: str | None = "since_id",
    ) -> None:
        super().__init__()
        if bool(tiebreak_field) != bool(tiebreak_param):
            raise ConfigurationError("tiebreak_field and tiebreak_param go together")
        self.sort_field = sort_field
        self.sort_param = sort_param
        self.tiebreak_field = tiebreak_field
        self.tiebreak_param = tiebreak_param
        self._sort_steps = compile_path(sort_field)
        self._tie_steps = compile_path(tiebreak_field)
        self.last_sort: Any = None
        self.last_tie: Any = None

    def reset(self) -> None:
        self.last_sort = None
        self.last_tie = None

    def update_state(self, response: requests.Response, body: Any, records: list) -> None:
        if not records:
            self.has_next = False
            return
        last = records[-1]
        self.last_sort = find(last, self._sort_steps)
        if self.last_sort is None:
            raise PaginationError(f"last record has no sort field {self.sort_field!r}")
        if self._tie_steps:
            self.last_tie = find(last, self._tie_steps)
            if self.last_tie is None:
                raise PaginationError(f"last record has no tie-breaker {self.tiebreak_field!r}")

    def update_request(self, request: PageRequest) -> None:
        request.params[self.sort_param] = self.last_sort
        if self.tiebreak_param:
            request.params[self.tiebreak_param] = self.last_tie

    def describe(self) -> dict[str, Any]:
        return {"style": "keyset", "sort_field": self.sort_field, "tiebreak_field": self.tiebreak_field}


_LINK_RE = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]*)*)")
_REL_RE = re.compile(r"""rel\s*=\s*(?:"([^"]*)"|([^\s;,]+))""", re.IGNORECASE)


def parse_link_header(value: str | None) -> dict[str, str]:
    """Parse an RFC 8288 ``Link`` header into ``{rel: url}`` (first link per rel wins)."""
    links: dict[str, str] = {}
    if not value:
        return links
    for match in _LINK_RE.finditer(value):
        url, params = match.group(1).strip(), match.group(2)
        rel = _REL_RE.search(params or "")
        if not rel:
            continue
        for name in (rel.group(1) or rel.group(2) or "").split():
            links.setdefault(name.lower(), url)
    return links


class _NextUrl(Paginator):
    """A style whose next request is a URL the last response gave (a ``Link`` header, a
    body field): it carries every parameter, so the first request's query is dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.next_url: str | None = None

    def reset(self) -> None:
        self.next_url = None

    def _end(self) -> None:
        self.has_next = False
        self.next_url = None

    def update_request(self, request: PageRequest) -> None:
        request.url = self.next_url or request.url
        request.params = {}


class LinkHeader(_NextUrl):
    """RFC 8288 ``Link`` header pagination (GitHub, Shopify): follow ``rel="next"``.

    The next URL (relative URLs are resolved against the current one) carries every
    parameter the API needs, so the query parameters of the first request are dropped.

    When the first response also links ``rel="last"`` with a page number (GitHub's
    ``?page=24``), the page count is known: the fetch must get exactly that many pages, and
    with ``workers`` the remaining pages are fetched concurrently (their URLs are the last
    link with its page number replaced). Without a ``last`` link (Shopify's opaque
    ``page_info``) pages follow one another.

    Args:
        rel: Relation to follow.
        total_path: Optional path to a declared record total in the body.
        page_param: Query parameter holding the page number in the links (None: never
            plan pages from ``rel="last"``).
    """

    def __init__(
        self, rel: str = "next", *, total_path: str | None = None, page_param: str | None = "page"
    ) -> None:
        super().__init__()
        self._body_fields(total_path=total_path)
        self.rel = rel.lower()
        self.page_param = page_param
        self.random_access = bool(page_param)
        self._first = True
        self._pages_from: tuple[str, int, int] | None = None  # last URL, this page, last page

    def reset(self) -> None:
        super().reset()
        self._first = True
        self._pages_from = None

    def update_state(self, response: requests.Response, body: Any, records: list) -> None:
        self._read_total(body)
        links = parse_link_header(response.headers.get("Link"))
        if self._first and self.page_param:
            self._read_last(response.url, links)
        self._first = False
        link = links.get(self.rel)
        if not link:
            self._end()
            return
        self.next_url = urljoin(response.url, link)

    def _read_last(self, url: str, links: dict[str, str]) -> None:
        # The page count from the first response, when it has both a next and a last link:
        # this page is the one before next (whatever the API numbers its first page).
        if not links.get(self.rel) or not links.get("last"):
            return
        last_url = urljoin(url, links["last"])
        nxt = _query_int(urljoin(url, links[self.rel]), self.page_param)
        last = _query_int(last_url, self.page_param)
        if nxt is None or last is None or last < nxt:
            return
        self._pages_from = (last_url, nxt - 1, last)
        if self.total_pages is None:
            self.total_pages = last - nxt + 2

    def plan(self, request: PageRequest, first_count: int) -> Iterator[PlannedPage] | None:
        if self._pages_from is None or first_count <= 0 or not self.has_next:
            return None
        last_url, current, last = self._pages_from
        size, total = first_count, self.total

        def expected(page: int) -> int | None:
            if total is not None:
                return min(size, total - (page - current) * size)
            return size if page < last else None

        def pages() -> Iterator[PlannedPage]:
            for page in range(current + 1, last + 1):
                nxt = PageRequest(
                    url=_with_query(last_url, self.page_param, page),
                    method=request.method,
                    json=copy.deepcopy(request.json),
                    headers=dict(request.headers),
                )
                yield PlannedPage(nxt, expected(page), last=page == last)

        return pages()

    def describe(self) -> dict[str, Any]:
        return {"style": "link_header", "rel": self.rel, "page_param": self.page_param}


def _query_int(url: str, name: str | None) -> int | None:
    values = parse_qs(urlsplit(url).query).get(name or "")
    try:
        return int(values[-1]) if values else None
    except ValueError:
        return None


def _with_query(url: str, name: str | None, value: int) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != name]
    query.append((name or "page", str(value)))
    return urlunsplit(parts._replace(query=urlencode(query)))


MAX_NEXT_URL_CHARS = 8192
"""Longest next URL followed (a server-controlled value; real ones are far shorter)."""


class JsonLink(_NextUrl):
    """The next page's URL is in the body (``"paging.next.link"``, ``"next"``).

    A relative URL is resolved against the URL of the response that carried it; the next
    URL carries every parameter the API needs, so the first request's query parameters are
    dropped. The client holds it to the origin rule (another origin fails the fetch, naming
    both) and to the loop guard. YAML: ``pagination: {type: next_url, ...}``.

    Args:
        next_url_path: Path to the next URL; missing, null or empty means the end.
        total_path: Optional path to a declared record total in the body (checked).
    """

    def __init__(self, next_url_path: str = "next", *, total_path: str | None = None) -> None:
        super().__init__()
        if not compile_path(next_url_path):
            raise ConfigurationError("next_url_path must name a field of the body")
        self.next_url_path = next_url_path
        self._body_fields(total_path=total_path)
        self._steps = compile_path(next_url_path)

    def update_state(self, response: requests.Response, body: Any, records: list) -> None:
        self._read_total(body)
        link = find(body, self._steps)
        if link is None or link == "":
            self._end()
            return
        if not isinstance(link, str):
            raise PaginationError(
                f"the next URL at {self.next_url_path!r} is a {type(link).__name__}, not a URL"
            )
        if len(link) > MAX_NEXT_URL_CHARS or any(c in link for c in "\r\n\t\x00"):
            raise PaginationError(
                f"the next URL at {self.next_url_path!r} is not a URL (longer than "
                f"{MAX_NEXT_URL_CHARS} characters, or with control characters)"
            )
        self.next_url = urljoin(response.url, link.strip())

    def describe(self) -> dict[str, Any]:
        return {"style": "next_url", "next_url_path": self.next_url_path,
                "total_path": self.total_path}
