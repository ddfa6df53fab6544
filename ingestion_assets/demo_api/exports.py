"""exports: a reporting / export API (``/exports-api/...``) answering in the shapes exports have.

An API key in ``X-Api-Key``; a token bucket of 20 requests per second. Every endpoint takes a
half-open window ``start`` / ``end`` (ISO times) on the record's creation time:

* ``GET /v1/events.ndjson``: NDJSON (``application/x-ndjson``), one event per line, sent as
  it is produced (chunked); ``charset=utf-16`` in the query answers in UTF-16 with a BOM.
* ``GET /v1/sales.csv``: CSV with a header row, ``;`` as delimiter and quoted fields holding
  the delimiter, doubled quotes and line breaks (``text/csv; charset=utf-8``).
* ``GET /v1/summary``: one JSON object, the window's totals (no list around it).
* ``GET /v1/ledger``: JSON in windows-1252 (``charset=windows-1252``), names with accents
  and the euro sign; ``label=`` declares another charset (``label=utf-8`` makes it
  undecodable, as a misconfigured server would).
* ``GET /v1/bulk.ndjson?rows=N&pad=P``: N generated rows of about P bytes each (a large
  export for memory measurements), unpartitioned.
* ``GET /v1/endless.ndjson``: a body that never ends (a hostile server).
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from . import credentials as creds
from .base import ApiError, Response, Source
from .data import mix
from .fake import COUNTRIES, FIRST, PRODUCTS, WORDS
from .ratelimit import TokenBucket
from .timeutil import TimeParseError, iso_z, to_epoch

NDJSON = "application/x-ndjson"
_ENDPOINTS = ("events", "sales", "ledger")
_EVENT_TYPES = ("page_view", "signup", "purchase", "refund", "login")
_NOTES = ("fine", 'said "hello"', "line one\nline two", "a; b; c", "", "naïve café")
_PAYEES = ("Müller GmbH", "Café Olé", "Señor Niño", "Zoë & Co", "Straße 5", "Björk AB")
_CHUNK_RECORDS = 200


class Exports(Source):
    name = "exports"
    base_path = "/exports-api"
    auth_model = "api_key_header"
    vendor = "a reporting/export API"
    intervals = {"events": 900, "sales": 1800, "ledger": 3600}

    def make_limiter(self):
        return TokenBucket(self.config.allowance(self.name, 20), 20)

    def error(self, status, message, **extra):
        return Response.json(status, {"error": {"status": status, "message": message, **extra}})

    def authenticate(self, req):
        key = req.headers.get("x-api-key")
        if key is None:
            raise ApiError(self.error(401, "missing X-Api-Key header"))
        if key != creds.EXPORTS_KEY:
            raise ApiError(self.error(401, "invalid API key"))
        return key

    def rate_limited(self, info, retry_after):
        resp = self.error(429, "too many requests")
        if retry_after is not None:
            resp.headers.append(("Retry-After", retry_after))
        return resp

    def route(self, req, cred):
        if req.method != "GET":
            return self.error(405, "method not allowed")
        rel = req.rel.rstrip("/")
        if rel == "/v1/endless.ndjson":
            return Response(200, b"", content_type=NDJSON, chunks=self._endless())
        if rel == "/v1/bulk.ndjson":
            rows, pad = self._int(req, "rows", 1000), self._int(req, "pad", 100)
            return Response(200, b"", content_type=NDJSON,
                            chunks=_ndjson_chunks(bulk_rows(rows, pad), "utf-8"))
        start, end = self._window(req)
        if rel == "/v1/events.ndjson":
            charset = req.arg("charset", "utf-8")
            if charset not in ("utf-8", "utf-16"):
                return self.error(400, "charset is utf-8 or utf-16")
            docs = self.records("events", start, end)
            return Response(200, b"", content_type=f"{NDJSON}; charset={charset}",
                            chunks=_ndjson_chunks(iter(docs), charset))
        if rel == "/v1/sales.csv":
            body = sales_csv(self.records("sales", start, end)).encode("utf-8")
            return Response(200, body, content_type="text/csv; charset=utf-8")
        if rel == "/v1/summary":
            return Response.json(200, self.summary(start, end))
        if rel == "/v1/ledger":
            body = orjson.dumps({"entries": self.records("ledger", start, end)})
            label = req.arg("label", "windows-1252")
            return Response(200, body.decode("utf-8").encode("cp1252"),
                            content_type=f"application/json; charset={label}")
        return self.error(404, f"no endpoint {rel}")

    def _int(self, req, name, default):
        try:
            value = self.parse_int(req.arg(name), name)
        except ValueError:
            raise ApiError(self.error(400, f"{name} must be an integer")) from None
        if value is not None and not 0 <= value <= 10_000_000:
            raise ApiError(self.error(400, f"{name} out of range"))
        return default if value is None else value

    def _window(self, req):
        try:
            start = self.parse_time(req.arg("start"))
            end = self.parse_time(req.arg("end"))
        except (TimeParseError, ValueError):
            raise ApiError(self.error(400, "start and end must be ISO times")) from None
        return start, end

    def _endless(self) -> Iterator[bytes]:
        line = orjson.dumps({"id": 0, "note": "x" * 200}) + b"\n"
        block = line * 256
        while not self.api.stopping.is_set():
            yield block

    # ---- data -----------------------------------------------------------------------------

    def collection_for(self, endpoint, **scope):
        if endpoint not in _ENDPOINTS:
            raise KeyError(f"exports has no endpoint {endpoint!r}")
        return self.collection(endpoint)

    def records(self, endpoint, start=None, end=None, field="created", **scope):
        if endpoint == "bulk":
            return list(bulk_rows(scope.get("rows", 1000), scope.get("pad", 100)))
        if endpoint == "summary":
            return [self.summary(start, end)]
        render = {"events": _event, "sales": _sale, "ledger": _entry}[endpoint]
        return self.window_records(self.collection_for(endpoint), render, start, end, field,
                                   f"{self.base_path}/v1/{endpoint}")

    def summary(self, start, end) -> dict:
        events = self.records("events", start, end)
        sales = self.records("sales", start, end)
        return {
            "window_start": None if start is None else iso_z(to_epoch(start)),
            "events": len(events),
            "purchases": sum(1 for e in events if e["type"] == "purchase"),
            "sales_quantity": sum(s["quantity"] for s in sales),
            "revenue_cents": sum(s["quantity"] * s["unit_price_cents"] for s in sales),
        }

    def listing(self) -> dict:
        return {
            "name": self.name,
            "imitates": self.vendor,
            "base_path": self.base_path,
            "auth": {"model": "api_key_header", "header": "X-Api-Key: <key>",
                     "env": ["DEMO_EXPORTS_KEY"]},
            "rate_limit": {"algorithm": "token_bucket", "per": "api key", "capacity": 20,
                           "refill_per_second": 20},
            "endpoints": [
                {"name": name, "path": f"/v1/{path}", "format": fmt, "max_page_size": None,
                 "pagination": "none: one response per window, streamed as it is produced"}
                for name, path, fmt in (
                    ("events", "events.ndjson", "ndjson"), ("sales", "sales.csv", "csv"),
                    ("summary", "summary", "one JSON object"),
                    ("ledger", "ledger", "JSON in windows-1252"),
                    ("bulk", "bulk.ndjson?rows=N&pad=P", "ndjson"),
                    ("endless", "endless.ndjson", "ndjson that never ends"))
            ],
        }


def _event(coll, i, now) -> dict:
    h = coll.hash_of(i)
    return {
        "id": f"evt_{i:08d}",
        "created_at": iso_z(coll.created_of(i)),
        "type": _EVENT_TYPES[h % len(_EVENT_TYPES)],
        "user": {"name": FIRST[(h >> 8) % len(FIRST)], "country": COUNTRIES[(h >> 16) % 16]},
        "amount_cents": (h >> 24) % 50_000 if h % 5 in (2, 3) else None,
        "tags": [WORDS[(h >> 40) % len(WORDS)]] if h % 3 else [],
    }


def _sale(coll, i, now) -> dict:
    h = coll.hash_of(i)
    return {
        "sale_id": 100_000 + i,
        "sold_at": iso_z(coll.created_of(i)),
        "product": PRODUCTS[(h >> 4) % len(PRODUCTS)] + ("; large" if h % 7 == 0 else ""),
        "quantity": 1 + (h >> 12) % 9,
        "unit_price_cents": 199 + (h >> 20) % 9800,
        "country": COUNTRIES[(h >> 32) % 16],
        "note": _NOTES[(h >> 40) % len(_NOTES)] or None,
        "zip": f"{(h >> 48) % 100000:05d}",
    }


def _entry(coll, i, now) -> dict:
    h = coll.hash_of(i)
    return {
        "entry_id": f"L{i:07d}",
        "booked_at": iso_z(coll.created_of(i)),
        "payee": _PAYEES[h % len(_PAYEES)],
        "memo": "€ " + str((h >> 8) % 1000) + " — paid",
        "amount_cents": (h >> 20) % 100_000 - 50_000,
    }


_CSV_COLUMNS = ("sale_id", "sold_at", "product", "quantity", "unit_price_cents", "country",
                "note", "zip")


def _csv_field(value) -> str:
    if value is None:
        return ""
    text = str(value)
    if any(c in text for c in ';"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def sales_csv(rows: list[dict]) -> str:
    """The sales rows as the export writes them: ``;``-separated, quoted where needed, CRLF."""
    lines = [";".join(_CSV_COLUMNS)]
    lines += [";".join(_csv_field(row[c]) for c in _CSV_COLUMNS) for row in rows]
    return "\r\n".join(lines) + "\r\n"


def bulk_rows(rows: int, pad: int) -> Iterator[dict]:
    """Rows of the bulk export: deterministic, about ``pad`` bytes of text each."""
    words = len(WORDS)
    for i in range(rows):
        h = mix(i)
        text = " ".join(WORDS[(h >> s) % words] for s in range(0, 60, 6))
        yield {"id": i, "group": h % 97, "value": (h >> 8) % 1_000_000,
               "text": (text * (1 + pad // max(1, len(text))))[:pad]}


def _ndjson_chunks(docs: Iterator[dict], charset: str) -> Iterator[bytes]:
    """NDJSON in chunks of a few hundred lines (UTF-16: with a BOM in front)."""
    if charset == "utf-16":
        yield b"\xff\xfe"
    batch: list[bytes] = []
    for doc in docs:
        batch.append(orjson.dumps(doc))
        if len(batch) >= _CHUNK_RECORDS:
            yield _encode(batch, charset)
            batch = []
    if batch:
        yield _encode(batch, charset)


def _encode(lines: list[bytes], charset: str) -> bytes:
    text = b"\n".join(lines) + b"\n"
    return text if charset == "utf-8" else text.decode("utf-8").encode("utf-16-le")


__all__ = ["Exports", "bulk_rows", "sales_csv"]
