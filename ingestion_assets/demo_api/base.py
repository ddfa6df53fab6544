"""What every imitated vendor has in common: requests, responses, auth, rate limits."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import orjson

from .data import Collection, Query, stable_seed
from .faults import apply_schema_change
from .timeutil import TimeParseError, parse_iso, to_epoch

if TYPE_CHECKING:  # pragma: no cover
    from .server import DemoApi

JSON = "application/json; charset=utf-8"


@dataclass
class Request:
    """A parsed HTTP request, as a source sees it."""

    method: str
    path: str  # full path, without query
    rel: str  # path below the source's base path
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    root_url: str  # http://127.0.0.1:port
    now: int
    inserts: list = field(default_factory=list)
    quirks: set = field(default_factory=set)  # QUIRK_KINDS faults that fired for it

    def arg(self, name: str, default: str | None = None) -> str | None:
        v = self.query.get(name)
        return v[-1] if v else default

    def has(self, name: str) -> bool:
        return name in self.query

    def form(self) -> dict[str, str]:
        from urllib.parse import parse_qs

        return {k: v[-1] for k, v in parse_qs(self.body.decode("utf-8", "replace")).items()}


@dataclass
class Response:
    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = JSON
    #: A body sent as it is produced (chunked transfer encoding) instead of ``body``.
    chunks: Iterator[bytes] | None = None

    @classmethod
    def json(cls, status: int, obj, headers=None) -> Response:
        return cls(status, orjson.dumps(obj), list(headers or []))


class ApiError(Exception):
    """Raised inside a handler to answer with a vendor-style error."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class Source:
    """One imitated vendor API mounted under ``base_path``.

    Subclasses set the class attributes and implement ``authenticate``,
    ``error``, ``route`` and the rendering of their records.
    """

    name = ""
    base_path = ""
    auth_model = ""
    vendor = ""
    #: endpoint name -> rate (seconds between records in the default, time-based mode)
    intervals: dict[str, float] = {}

    def __init__(self, api: DemoApi) -> None:
        self.api = api
        self.config = api.config
        self._collections: dict[tuple, Collection] = {}
        self.limiter = self.make_limiter()

    # ---- to implement -------------------------------------------------------------------

    def make_limiter(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def authenticate(self, req: Request) -> str:
        """Returns the credential's bucket key, or raises ApiError(401)."""
        raise NotImplementedError

    def error(self, status: int, message: str, **kw) -> Response:
        """A vendor-style error response."""
        raise NotImplementedError

    def route(self, req: Request, cred: str) -> Response:
        raise NotImplementedError

    def rate_headers(self, info: dict) -> list[tuple[str, str]]:
        return [
            ("X-RateLimit-Limit", str(info["limit"])),
            ("X-RateLimit-Remaining", str(info["remaining"])),
            ("X-RateLimit-Reset", str(info["reset_s"])),
        ]

    def rate_limited(self, info: dict, retry_after: str | None) -> Response:
        raise NotImplementedError

    def listing(self) -> dict:
        raise NotImplementedError

    def records(self, endpoint: str, start=None, end=None, field="created", **scope) -> list:
        raise NotImplementedError

    def collection_for(self, endpoint: str, **scope) -> Collection:
        raise NotImplementedError

    def listing_of(self, **details) -> dict:
        """The source's entry in ``GET /``: who it imitates and where, then ``details``."""
        return {"name": self.name, "imitates": self.vendor, "base_path": self.base_path,
                **details}

    def extra_headers(self, req: Request) -> list[tuple[str, str]]:
        """Vendor headers on every response (request ids, API versions)."""
        return []

    def server_error(self, status: int) -> Response:
        return self.error(status, "An internal error occurred; please retry.")

    def error_body(self) -> Response:
        """A vendor error body served with 200 OK (a broken proxy or gateway)."""
        resp = self.error(500, "An internal error occurred; please retry.")
        resp.status = 200
        return resp

    def encode_id(self, endpoint: str, idx: int, **scope) -> str:
        """The id the API shows for record ``idx``."""
        raise NotImplementedError

    def decode_id(self, endpoint: str, token, now: int, **scope) -> int:
        """Record index of an id the API showed; raises KeyError when there is none."""
        raise NotImplementedError

    def is_token_endpoint(self, rel: str) -> bool:
        return False

    def expire_tokens(self) -> None:
        """Invalidates every issued access token (sources with tokens override)."""

    def reset(self) -> None:
        for c in self._collections.values():
            c.reset()
        self.limiter.reset()

    # ---- shared helpers -----------------------------------------------------------------

    def collection(self, endpoint: str, scope: str = "", start: int | None = None) -> Collection:
        key = (endpoint, scope)
        coll = self._collections.get(key)
        if coll is None:
            cfg = self.config
            seed = stable_seed(cfg.seed, self.name, endpoint, scope)
            begin = cfg.start_ts if start is None else start
            if cfg.records is not None:
                coll = Collection(seed, begin, count=cfg.records, end=max(cfg.end_ts, begin + 1))
            else:
                coll = Collection(seed, begin, interval=self.intervals[endpoint])
            coll = self._collections.setdefault(key, coll)
        return coll

    def apply_schema(self, req_path: str, coll: Collection, idxs, docs: list) -> list:
        """Applies active ``schema_change`` faults to rendered records."""
        changes = self.api.faults.schema_changes(self.name, req_path)
        if not changes:
            return docs
        for f in changes:
            since = to_epoch(f.since) if f.since else None
            for i, doc in zip(idxs, docs, strict=True):
                if since is None or coll.created_of(i) >= since:
                    apply_schema_change(doc, f)
        return docs

    def window_records(self, coll, render, start, end, field, path, order="created") -> list:
        """Ground truth: every record of ``coll`` in ``[start, end)`` on ``field``."""
        now = self.config.current_now()
        q = Query(now=now, order=order)
        s = None if start is None else to_epoch(start)
        e = None if end is None else to_epoch(end)
        if field == "created":
            q.created_min, q.created_max = s, e
        elif field == "updated":
            q.updated_min, q.updated_max = s, e
        else:
            raise ValueError("field is 'created' or 'updated'")
        idxs = list(coll.iter(q))
        return self.apply_schema(path, coll, idxs, [render(coll, i, now) for i in idxs])

    def head_time(self, req: Request, window_end: int | None) -> int:
        """Where ``insert_during_pagination`` puts new records: the newest moment visible."""
        return min(req.now, window_end - 1) if window_end is not None else req.now

    def apply_inserts(self, req: Request, coll: Collection, window_end: int | None) -> None:
        for f in req.inserts:
            coll.insert(f.records, self.head_time(req, window_end))

    @staticmethod
    def encode_cursor(obj) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).decode().rstrip("=")

    @staticmethod
    def decode_cursor(token: str):
        """Decodes a cursor made by ``encode_cursor``; raises ValueError when it is not one."""
        try:
            pad = "=" * (-len(token) % 4)
            return orjson.loads(base64.urlsafe_b64decode(token + pad))
        except Exception as exc:  # noqa: BLE001 - any garbage is just a bad cursor
            raise ValueError("bad cursor") from exc

    def url(self, req: Request, rel: str, params: dict) -> str:
        q = urlencode([(k, v) for k, v in params.items() if v is not None])
        return f"{req.root_url}{self.base_path}{rel}" + (f"?{q}" if q else "")

    @staticmethod
    def parse_int(value: str | None, name: str) -> int | None:
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise ValueError(name) from None

    @staticmethod
    def parse_time(value: str | None, offset_s: int = 0) -> int | None:
        if value is None:
            return None
        return parse_iso(value, offset_s)


__all__ = ["ApiError", "Request", "Response", "Source", "TimeParseError", "JSON"]
