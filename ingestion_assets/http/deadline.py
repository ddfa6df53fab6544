"""The request deadline: connect, response headers and the whole body within one budget.

Socket timeouts bound each *read*, so a server sending one byte per second never trips
them. Here one watchdog thread keeps every in-flight request's deadline and shuts the
socket down when it passes, which ends the blocked read at once. The headers are covered
through the connection class of :class:`DeadlineAdapter` (mounted by the client), the body
by :func:`body_chunks` (a :class:`Watchdog` around the chunked read), which the client, the
token requests and streamed bodies all read through.
"""

from __future__ import annotations

import contextlib
import heapq
import socket
import threading
import time
from collections.abc import Callable, Iterator

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection

from ingestion_assets.http.errors import DeadlineExceededError


class _Watchdogs:
    """One thread for every request's deadline: shuts a socket down when its time is up.

    A timer thread per request would cost a thread start on every page; here a request
    only pushes its deadline on a heap, and cancelling is a flag.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Watch]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._counter = 0

    def watch(self, sock: socket.socket, deadline: float) -> _Watch:
        watch = _Watch(sock)
        with self._cond:
            self._counter += 1
            if len(self._heap) >= 1024 and self._counter % 1024 == 0:
                # Finished requests leave their (cancelled) deadlines behind: sweep them.
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
            heapq.heappush(self._heap, (deadline, self._counter, watch))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="http-deadlines", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return watch

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait(timeout=60)
                    if not self._heap:
                        self._thread = None
                        return
                    continue
                deadline, _, watch = self._heap[0]
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(timeout=left)
                    continue
                heapq.heappop(self._heap)
                watch.fire()


class _Watch:
    __slots__ = ("cancelled", "fired", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.cancelled = False
        self.fired = False

    def fire(self) -> None:
        if self.cancelled:
            return
        self.fired = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        self.cancelled = True


_WATCHDOGS = _Watchdogs()


class Watchdog:
    """Shuts a response's socket down at a deadline, ending a read that would not end."""

    def __init__(self, response: requests.Response, deadline: float) -> None:
        sock = _socket_of(response)
        self._watch = _WATCHDOGS.watch(sock, deadline) if sock is not None else None

    @property
    def fired(self) -> bool:
        return self._watch is not None and self._watch.fired

    def cancel(self) -> None:
        if self._watch is not None:
            self._watch.cancel()


def body_chunks(
    response: requests.Response,
    deadline: float,
    *,
    chunk_bytes: int,
    limit: int,
    too_large: Callable[[], Exception],
    late: Callable[[int], Exception],
    broken: Callable[[requests.RequestException, int], Exception] | None = None,
    counted: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """A response's decoded body in chunks, within a size budget and the request deadline.

    Decompression happens chunk by chunk, so a gzip bomb stops at ``limit`` having used
    about that much memory. A :class:`Watchdog` closes the socket at the deadline: a server
    trickling bytes would otherwise keep each read just under the timeout. The response is
    closed in the end, whatever happens.

    Args:
        chunk_bytes: Size of each read.
        limit: Most decoded bytes read; past it ``too_large()`` is raised.
        too_large: The error for a body over ``limit``.
        late: The error for a body not complete by the deadline (given the bytes read).
        broken: The error for a connection that broke off (given the exception and the bytes
            read); None: the ``requests`` exception itself.
        counted: Called with each chunk's size as it arrives (before the size check).
    """
    size = 0
    watchdog = Watchdog(response, deadline)
    try:
        for chunk in response.iter_content(chunk_bytes):
            size += len(chunk)
            if counted is not None:
                counted(len(chunk))
            if size > limit:
                raise too_large()
            if time.monotonic() > deadline:
                break
            yield chunk
    except requests.RequestException as exc:
        if not watchdog.fired:
            if broken is None:
                raise
            raise broken(exc, size) from None
    finally:
        watchdog.cancel()
        response.close()
    if watchdog.fired or time.monotonic() > deadline:
        raise late(size)


def _socket_of(response: requests.Response) -> socket.socket | None:
    raw = getattr(response, "raw", None)
    conn = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
    sock = getattr(conn, "sock", None)
    if isinstance(sock, socket.socket):
        return sock
    fp = getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None)
    sock = getattr(fp, "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


_current = threading.local()


@contextlib.contextmanager
def request_deadline(deadline: float, budget_s: float) -> Iterator[None]:
    """Within this block, response headers on this thread must arrive by ``deadline``."""
    # Nested: an OAuth token request made while a page request is being prepared.
    outer = getattr(_current, "deadline", None), getattr(_current, "budget_s", None)
    _current.deadline, _current.budget_s = deadline, budget_s
    try:
        yield
    finally:
        _current.deadline, _current.budget_s = outer


class _HeadersWithinDeadline:
    """Connection mixin: the wait for the status line and headers ends at the deadline."""

    def getresponse(self):  # type: ignore[no-untyped-def]
        deadline = getattr(_current, "deadline", None)
        sock = getattr(self, "sock", None)
        watch = (
            _WATCHDOGS.watch(sock, deadline)
            if deadline is not None and isinstance(sock, socket.socket)
            else None
        )
        try:
            return super().getresponse()  # type: ignore[misc]
        except Exception:
            if watch is not None and watch.fired:
                raise DeadlineExceededError(
                    "the response headers did not arrive within the request deadline of "
                    f"{_current.budget_s:g} s (limits.request_deadline_seconds)"
                ) from None
            raise
        finally:
            if watch is not None:
                watch.cancel()


class _HTTPConnection(_HeadersWithinDeadline, HTTPConnection):
    pass


class _HTTPSConnection(_HeadersWithinDeadline, HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """``requests`` adapter whose connections honour :func:`request_deadline`."""

    def init_poolmanager(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
