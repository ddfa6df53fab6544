"""The demo API server: routing, faults, auth and rate limits around the sources.

Stdlib ``ThreadingHTTPServer`` speaking HTTP/1.1 with keep-alive (every response
has an exact ``Content-Length``), so a pooled ``requests.Session`` reuses its
connections. Bodies are serialised with orjson.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import orjson

from . import credentials as creds
from .base import ApiError, Request, Response, Source
from .config import DemoConfig
from .faults import Fault, FaultError, FaultSet
from .stats import RequestStats
from .timeutil import _tod, http_date, to_epoch
from .webhooks import WebhookSender

_LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")

#: Every ``/_control`` request carries this header, and a body only as ``application/json``.
#: A web page cannot send either cross-origin without a CORS preflight, which this server
#: never grants: a page open in a browser cannot switch faults on or reset the data.
CONTROL_HEADER = "X-Demo-Control"
CONTROL_HEADERS = {CONTROL_HEADER: "1"}

MAINTENANCE_HTML = b"""<!DOCTYPE html>
<html><head><title>Down for maintenance</title></head>
<body><h1>We'll be right back</h1>
<p>The service is undergoing scheduled maintenance. Please try again later.</p>
</body></html>
"""


class DemoApi:
    """A demo API instance: the sources, their data, faults and the HTTP server.

    Use :meth:`serve` as a context manager (tests), or :meth:`start`/:meth:`stop`.
    """

    def __init__(self, config: DemoConfig | None = None) -> None:
        self.config = config or DemoConfig()
        self.faults = FaultSet()
        self.stats = RequestStats()  # requests answered, and the most at once
        _tod()  # build the time-of-day table now, not during the first request
        self._initial_settings = {"token_ttl": self.config.token_ttl,
                                  "login_token_ttl": self.config.login_token_ttl}
        self.sources: dict[str, Source] = {}
        for cls in _source_classes():
            src = cls(self)
            self.sources[src.name] = src
        for f in self.config.faults:
            self.add_fault(f)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()
        # Signed vendor-style events for mutated records (webhooks.py), when a URL is set.
        self.webhooks = WebhookSender(url=self.config.webhooks_to)

    # ---- lifecycle --------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the demo API is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def base_url(self, source: str) -> str:
        """Base URL of one source, e.g. ``http://127.0.0.1:54321/payments``."""
        return self.url + self._source(source).base_path

    def start(self) -> DemoApi:
        if self._httpd is not None:
            return self
        self.stopping.clear()
        self._httpd = _Server((self.config.host, self.config.port), _Handler)
        self._httpd.api = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
            name="demo-api", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_all()
        self.webhooks.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    @contextlib.contextmanager
    def serve(self) -> Iterator[DemoApi]:
        """Runs the server for the duration of a ``with`` block."""
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def serve_forever(self) -> None:
        """Blocks serving requests (the CLI)."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop()

    # ---- control ----------------------------------------------------------------------

    def add_fault(self, fault: Fault | dict | None = None, **kw) -> Fault:
        """Adds a fault: a Fault, a dict, or keyword arguments (``kind=..., source=...``)."""
        if fault is None:
            fault = kw
        elif kw:
            raise TypeError("pass a fault or keyword arguments, not both")
        if isinstance(fault, dict):
            fault = Fault.from_dict(fault)
        if fault.source is not None and fault.source not in self.sources:
            raise FaultError(f"unknown source {fault.source!r}; sources: {sorted(self.sources)}")
        return self.faults.add(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    def list_faults(self) -> list[dict]:
        return [f.to_dict() for f in self.faults.list()]

    def reset(self) -> None:
        """Clears faults, mutations, rate-limit buckets, issued tokens and request stats;
        puts the settings (token lifetimes) back."""
        self.settings(self._initial_settings)
        self.faults.clear()
        self.stats.reset()
        for s in self.sources.values():
            s.reset()

    def credentials(self, source: str) -> dict:
        """The valid demo credentials of a source."""
        self._source(source)
        return creds.credentials(source)

    def records(self, source: str, endpoint: str, start=None, end=None, field="created", **scope):
        """Ground truth: the records the API holds for a window.

        Args:
            source: source name.
            endpoint: endpoint name (see ``GET /``), e.g. ``"charges"``.
            start: window start (inclusive): ISO string, datetime or unix seconds; None = all.
            end: window end (exclusive); None = up to now.
            field: ``"created"`` or ``"updated"``: which timestamp the window applies to.
            **scope: e.g. ``repo="demo-org/alpha"`` for devhub issues, ``org=`` for events.

        Returns:
            The records exactly as the API renders them (schema-change faults applied),
            in ascending creation order.
        """
        return self._source(source).records(endpoint, start, end, field, **scope)

    def mutate(
        self,
        source: str,
        endpoint: str,
        insert: int = 0,
        update=0,
        window=None,
        at=None,
        **scope,
    ) -> dict:
        """Changes data at the source: inserts records and/or bumps ``updated`` of records.

        Args:
            insert: number of new records, created (and updated) at ``at``.
            update: a number n (the n oldest records of ``window``, or of all records), or a
                list of record ids as the API shows them.
            window: ``[start, end)`` (created) that ``update=n`` picks from.
            at: time of the change; default now.

        Returns:
            ``{"inserted": [ids], "updated": [ids]}``.
        """
        src = self._source(source)
        coll = src.collection_for(endpoint, **scope)
        now = self.config.current_now()
        ts = now if at is None else to_epoch(at)
        inserted = coll.insert(int(insert), ts) if insert else []
        if isinstance(update, (list, tuple)):
            idxs = [src.decode_id(endpoint, x, now, **scope) for x in update]
        elif update:
            from .data import Query

            q = Query(now=now, order="created")
            if window:
                q.created_min, q.created_max = to_epoch(window[0]), to_epoch(window[1])
            from itertools import islice

            idxs = list(islice(coll.iter(q), int(update)))
        else:
            idxs = []
        coll.bump(idxs, ts)
        result = {
            "inserted": [src.encode_id(endpoint, i, **scope) for i in inserted],
            "updated": [src.encode_id(endpoint, i, **scope) for i in idxs],
        }
        if self.webhooks.url:
            self._send_webhooks(source, endpoint, result, ts, **scope)
        return result

    def _send_webhooks(self, source: str, endpoint: str, changed: dict, ts: int, **scope) -> None:
        """One signed event per inserted ("created") or updated record, as the API shows it."""
        ids = {str(x) for x in changed["inserted"] + changed["updated"]}
        if not ids:
            return
        try:
            shown = self.records(source, endpoint, ts, ts + 1, field="updated", **scope)
        except KeyError:
            return
        inserted = {str(x) for x in changed["inserted"]}
        for kind, wanted in (("created", inserted), ("updated", ids - inserted)):
            # The ids mutate returns are what the API shows: an id, or a number (devhub).
            records = [r for r in shown
                       if str(r.get("id")) in wanted or str(r.get("number")) in wanted]
            self.webhooks.emit(source, endpoint, records, kind, ts)

    def listing(self) -> dict:
        cfg = self.config
        return {
            "name": "ingestion_assets demo API",
            "seed": cfg.seed,
            "now": None if cfg.now_ts is None else cfg.now_ts,
            "start": cfg.start_ts,
            "records_per_endpoint": cfg.records,
            "rate_limit": cfg.rate_limit,
            "sources": [s.listing() for s in self.sources.values()],
            "control": {
                "GET /_control/faults": "list active faults",
                "POST /_control/faults": "add a fault (object) or faults (list)",
                "DELETE /_control/faults": "remove every fault",
                "POST /_control/reset": "faults, mutations, rate limits, tokens and stats back "
                "to start",
                "GET /_control/stats": "requests answered, in flight now, and the peak in flight",
                "POST /_control/stats/reset": "the request stats back to zero",
                "POST /_control/mutations": "insert records / bump updated_at",
                "GET /_control/webhooks": "the webhook sender's settings and delivery counts",
                "POST /_control/webhooks": "set url, duplicates, out_of_order, bad_signatures",
                "POST /_control/settings": "set token lifetimes: token_ttl, login_token_ttl",
            },
        }

    def settings(self, data) -> dict:
        """Changes run-time settings (token lifetimes, seconds); returns them all."""
        tunable = ("token_ttl", "login_token_ttl")
        if not isinstance(data, dict) or not set(data) <= set(tunable):
            raise ValueError(f"settings takes a JSON object with any of {list(tunable)}")
        for name, value in data.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds")
            setattr(self.config, name, value)
        return {name: getattr(self.config, name) for name in tunable}

    def _source(self, name: str) -> Source:
        try:
            return self.sources[name]
        except KeyError:
            raise KeyError(f"unknown source {name!r}; sources: {sorted(self.sources)}") from None

    # ---- request handling (called by the handler threads) --------------------------------

    def handle(self, h: _Handler, method: str) -> None:
        split = urlsplit(h.path)
        path = split.path or "/"
        query = parse_qs(split.query, keep_blank_values=True)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in h.headers.items()}
        # Links are built from the address the server listens on, never from the request's
        # Host header (a client could otherwise point next links anywhere).
        root = self.url
        if path == "/" and method == "GET":
            return h.send(Response.json(200, self.listing()))
        if path.startswith("/_control"):
            refused = _control_refusal(headers, body)
            if refused is not None:
                return h.send(refused)
            return h.send(self._control(h, method, path, body))
        src = None
        for s in self.sources.values():
            if path == s.base_path or path.startswith(s.base_path + "/"):
                src = s
                break
        if src is None:
            return h.send(Response.json(404, {
                "error": "not_found",
                "message": f"No source at {path}; GET / lists the sources.",
                "sources": [s.base_path for s in self.sources.values()],
            }))
        with self.stats.track(src.name):
            return self._answer(h, method, src, path, query, headers, body, root)

    def _answer(self, h: _Handler, method: str, src: Source, path: str, query: dict,
                headers: dict, body: bytes, root: str) -> None:
        rel = path[len(src.base_path):] or "/"
        now = self.config.current_now()
        req = Request(method, path, rel, query, headers, body, root, now)
        trig = self.faults.trigger(src.name, path, src.is_token_endpoint(rel))
        delay = trig.delay_s + self.config.latency_ms / 1000.0
        if delay > 0 and self.stopping.wait(delay):
            return h.drop()
        if trig.expire_tokens:
            src.expire_tokens()
        req.inserts = trig.inserts
        req.quirks = trig.quirks
        for name in trig.ignored_params:  # an API that does not know (or ignores) a filter
            req.query.pop(name, None)
        fault = trig.terminal
        extra = [("X-Request-Id", f"req_{uuid.uuid4().hex[:14]}")]
        extra += src.extra_headers(req)
        if fault is not None:
            if fault.kind == "drop_connection" and fault.mode == "before_response":
                return h.drop()
            if fault.kind == "server_error":
                resp = src.server_error(fault.status)
                resp.headers += extra
                return h.send(resp)
            if fault.kind == "rate_limit":
                return h.send(self._fault_429(src, fault, extra))
            if fault.kind == "error_body":
                resp = src.error_body()
                resp.headers += extra
                return h.send(resp)
            if fault.kind == "html":
                return h.send(Response(200, MAINTENANCE_HTML, extra, "text/html; charset=utf-8"))
        try:
            resp = self._dispatch(src, req)
        except ApiError as exc:
            resp = exc.response
        resp.headers = extra + resp.headers
        if "null_when_empty" in trig.quirks and resp.status == 200:
            resp.body = _null_when_empty(resp.body)
        if fault is not None and fault.kind == "truncated_json":
            resp.body = resp.body[: max(1, len(resp.body) * 2 // 3)]
            return h.send(resp, cut=resp.chunks is not None)  # a streamed body: cut short
        if fault is not None and fault.kind == "drop_connection":  # mid_body
            return h.send(resp, cut=True)
        return h.send(resp)

    def _dispatch(self, src: Source, req: Request) -> Response:
        if src.is_token_endpoint(req.rel):
            return src.route(req, "")
        cred = src.authenticate(req)
        rate_headers: list = []
        if self.config.rate_limit:
            allowed, info = src.limiter.hit(cred)
            rate_headers = src.rate_headers(info)
            if not allowed:
                ra = info["retry_after_s"]
                resp = src.rate_limited(info, _fmt_seconds(ra))
                resp.headers = rate_headers + resp.headers
                return resp
        try:
            resp = src.route(req, cred)
        except ApiError as exc:
            resp = exc.response
        resp.headers = rate_headers + resp.headers
        return resp

    def _fault_429(self, src: Source, fault: Fault, extra: list) -> Response:
        if fault.retry_after == "http-date":
            ra = http_date(time.time() + fault.retry_after_s)
        else:
            ra = fault.retry_after
        info = {
            "limit": int(getattr(src.limiter, "capacity", getattr(src.limiter, "limit", 1))),
            "remaining": 0,
            "reset_s": max(1, int(fault.retry_after_s)),
            "reset_epoch": int(time.time() + max(1.0, fault.retry_after_s)),
            "used": int(getattr(src.limiter, "capacity", getattr(src.limiter, "limit", 1))),
        }
        resp = src.rate_limited(info, ra)
        resp.headers = extra + src.rate_headers(info) + resp.headers
        return resp

    def _control(self, h: _Handler, method: str, path: str, body: bytes) -> Response:
        if h.client_address[0] not in _LOOPBACK:
            return Response.json(403, {"error": "forbidden", "message": "loopback clients only"})
        try:
            data = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            return Response.json(400, {"error": "bad_request", "message": "body is not JSON"})
        try:
            if path == "/_control/faults":
                if method == "GET":
                    return Response.json(200, {"faults": self.list_faults()})
                if method == "DELETE":
                    self.clear_faults()
                    return Response.json(200, {"faults": []})
                if method == "POST":
                    items = data if isinstance(data, list) else [data]
                    added = [self.add_fault(Fault.from_dict(d)).to_dict() for d in items]
                    return Response.json(201, {"added": added})
            elif path == "/_control/reset" and method == "POST":
                self.reset()
                return Response.json(200, {"reset": True})
            elif path == "/_control/stats" and method == "GET":
                return Response.json(200, self.stats.snapshot())
            elif path == "/_control/stats/reset" and method == "POST":
                self.stats.reset()
                return Response.json(200, self.stats.snapshot())
            elif path == "/_control/mutations" and method == "POST":
                if not isinstance(data, dict) or "source" not in data or "endpoint" not in data:
                    raise ValueError("mutations need 'source' and 'endpoint'")
                kw = dict(data)
                return Response.json(200, self.mutate(kw.pop("source"), kw.pop("endpoint"), **kw))
            elif path == "/_control/webhooks" and method in ("GET", "POST"):
                if method == "POST":
                    if not isinstance(data, dict):
                        raise ValueError("webhooks needs a JSON object of settings")
                    return Response.json(200, self.webhooks.configure(**data))
                return Response.json(200, self.webhooks.status())
            elif path == "/_control/settings" and method == "POST":
                return Response.json(200, self.settings(data))
            elif path == "/_control/records" and method == "POST":
                if not isinstance(data, dict):
                    raise ValueError("records needs a JSON object")
                kw = dict(data)
                recs = self.records(kw.pop("source"), kw.pop("endpoint"), **kw)
                return Response.json(200, {"count": len(recs), "records": recs})
            else:
                return Response.json(404, {"error": "not_found", "message": f"{method} {path}"})
        except (FaultError, ValueError, KeyError, TypeError) as exc:
            return Response.json(400, {"error": "bad_request", "message": str(exc)})
        return Response.json(405, {"error": "method_not_allowed", "message": f"{method} {path}"})


def _null_when_empty(body: bytes) -> bytes:
    """An empty records list becomes ``null`` (``{"data": null}``, or a ``null`` body)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if doc == []:
        return b"null"
    if isinstance(doc, dict) and any(v == [] for v in doc.values()):
        return orjson.dumps({k: (None if v == [] else v) for k, v in doc.items()})
    return body


def _control_refusal(headers: dict[str, str], body: bytes) -> Response | None:
    """Why a ``/_control`` request is refused (None: accepted); ``headers`` lowercased."""
    if headers.get(CONTROL_HEADER.lower()) != "1":
        return Response.json(403, {
            "error": "forbidden",
            "message": f"control requests need the header {CONTROL_HEADER}: 1",
        })
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if body and content_type != "application/json":
        return Response.json(415, {
            "error": "unsupported_media_type",
            "message": "control request bodies must be application/json",
        })
    return None


def _source_classes() -> list:
    from .commerce import Commerce
    from .crm import Crm
    from .devhub import Devhub
    from .exports import Exports
    from .helpdesk import Helpdesk
    from .payments import Payments

    return [Payments, Commerce, Crm, Devhub, Exports, Helpdesk]


def _fmt_seconds(s) -> str:
    if isinstance(s, float) and not s.is_integer():
        return f"{s:.1f}"
    if isinstance(s, float):
        return f"{s:.1f}"  # Shopify style: "2.0"
    return str(int(s))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    api: DemoApi

    def __init__(self, *a, **kw) -> None:
        self._conns: set = set()
        self._conns_lock = threading.Lock()
        super().__init__(*a, **kw)

    def process_request(self, request, client_address):
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        """Closes idle keep-alive connections, so their threads end with the server."""
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "demo-api/1.0"
    sys_version = ""
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in one write; no Nagle delay on keep-alive connections.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format, *args) -> None:  # noqa: A002 - stdlib signature
        pass  # quiet: a benchmark makes a thousand requests per second

    def _run(self, method: str) -> None:
        try:
            self.server.api.handle(self, method)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - a bug must answer 500, not hang the client
            self.send(Response.json(500, {"error": "internal", "message": repr(exc)}))

    def do_GET(self) -> None:  # noqa: N802
        self._run("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._run("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._run("DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self._run("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._run("PATCH")

    def drop(self) -> None:
        """Closes the connection without answering."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def send(self, resp: Response, cut: bool = False) -> None:
        body = resp.body
        length = ("Transfer-Encoding: chunked" if resp.chunks is not None
                  else f"Content-Length: {len(body)}")
        lines = [
            f"HTTP/1.1 {resp.status} {self.responses.get(resp.status, ('',))[0]}",
            f"Content-Type: {resp.content_type}",
            length,
            f"Date: {http_date(time.time())}",
            "Server: demo-api/1.0",
        ]
        for k, v in resp.headers:
            lines.append(f"{k}: {v}")
        if self.close_connection or cut:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if resp.chunks is not None:
            return self._send_chunked(head, resp.chunks, cut)
        if cut:
            # Promise the whole body, send half, hang up: the client sees a broken body.
            self.wfile.write(head + body[: len(body) // 2])
            self.drop()
            return
        self.wfile.write(head + body)

    def _send_chunked(self, head: bytes, chunks, cut: bool) -> None:
        """A body sent as it is produced; with ``cut``, hang up after the first chunk."""
        self.wfile.write(head)
        for chunk in chunks:
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            if cut:
                self.drop()
                return
        self.wfile.write(b"0\r\n\r\n")

