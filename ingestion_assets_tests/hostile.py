"""A small hostile HTTP server on loopback, for tests of what the client must survive.

Each route is a function ``request -> Reply``; the server records every request it sees
(method, path with query, headers, body), so a test can assert what reached it. A reply
may trickle its body, send raw (e.g. gzip) bytes, or redirect anywhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import orjson


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    target: str  # path and query, as sent on the request line
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def dump(self) -> str:
        """Everything the server saw of this request, as text (for secret searches)."""
        head = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.target}\n{head}\n\n" + self.body.decode("latin-1")


@dataclass
class Reply:
    status: int = 200
    body: bytes | Iterable[bytes] = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"
    length: int | None = None  # Content-Length to announce (default: len(body) if bytes)
    raw: Iterable[bytes] | None = None  # the whole response as raw bytes (status line too)

    @classmethod
    def json(cls, data, status: int = 200, headers=None) -> Reply:
        return cls(status, orjson.dumps(data), list(headers or []))

    @classmethod
    def redirect(cls, status: int, location: str) -> Reply:
        return cls(status, b"", [("Location", location)])


def trickle(data: bytes, every_s: float = 1.0) -> Iterator[bytes]:
    """The body one byte at a time, ``every_s`` apart."""
    for i in range(len(data)):
        yield data[i : i + 1]
        time.sleep(every_s)


Route = Callable[[Seen], Reply]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client hanging up on a hostile reply is the point, not a server error


class HostileServer:
    """Routes by path (``/x`` or a prefix ending in ``*``); every request is recorded."""

    def __init__(self, routes: dict[str, Route] | None = None) -> None:
        self.routes: dict[str, Route] = dict(routes or {})
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def route(self, path: str) -> Callable[[Route], Route]:
        def register(fn: Route) -> Route:
            self.routes[path] = fn
            return fn

        return register

    def everything_seen(self) -> str:
        with self._lock:
            return "\n\n".join(s.dump() for s in self.seen)

    def _find(self, path: str) -> Route | None:
        if path in self.routes:
            return self.routes[path]
        for pattern, fn in self.routes.items():
            if pattern.endswith("*") and path.startswith(pattern[:-1]):
                return fn
        return None

    def __enter__(self) -> HostileServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args) -> None:  # noqa: A002
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, dict(self.headers.items()), body)
                with server._lock:
                    server.seen.append(seen)
                fn = server._find(unquote(seen.path)) or server._find(seen.path)
                reply = fn(seen) if fn else Reply.json({"error": "not found"}, 404)
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                if reply.raw is not None:
                    self.close_connection = True
                    try:
                        for chunk in reply.raw:
                            if server.stopping.is_set():
                                break
                            self.wfile.write(chunk)
                            self.wfile.flush()
                    except OSError:
                        pass
                    return
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                body = reply.body
                length = reply.length
                if length is None and isinstance(body, bytes | bytearray):
                    length = len(body)
                if length is not None:
                    self.send_header("Content-Length", str(length))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                for k, v in reply.headers:
                    self.send_header(k, v)
                self.end_headers()
                chunks = [body] if isinstance(body, bytes | bytearray) else body
                try:
                    for chunk in chunks:
                        if server.stopping.is_set():
                            break
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError, OSError):
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
