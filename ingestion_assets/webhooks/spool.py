"""The durable spool: accepted webhook events in SQLite (WAL mode, ``synchronous=FULL``).

The receiver answers 2xx only after the transaction holding the event has committed, and
with ``synchronous=FULL`` a commit is on disk (fsynced) before it returns: an answered event
survives a crash of the process or the machine. An event that was not answered is retried
by its sender. The vendor's event id is unique per ``(source, endpoint)``: a retried or
duplicated delivery is ignored (and answered 200, so the sender stops).

One writer thread commits whatever requests are waiting in one transaction (group commit):
one fsync answers many concurrent deliveries. Readers (the sensor and the events assets)
read the same file at any time; WAL readers never block the writer.

Each event gets a sequence number in commit order (``seq``); the sensor's cursor is the
highest ``seq`` it has turned into run requests. This module imports nothing from Dagster.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

HOUR_FORMAT = "%Y-%m-%d-%H:%M"  # Dagster's hourly partition key format

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT NOT NULL,
    endpoint    TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    event_type  TEXT,
    event_time  REAL NOT NULL,
    hour        TEXT NOT NULL,
    received_at REAL NOT NULL,
    body        BLOB NOT NULL,
    UNIQUE (source, endpoint, event_id)
);
CREATE INDEX IF NOT EXISTS events_by_hour ON events (source, endpoint, hour);
CREATE TABLE IF NOT EXISTS committed (
    source       TEXT NOT NULL,
    endpoint     TEXT NOT NULL,
    hour         TEXT NOT NULL,
    max_seq      INTEGER NOT NULL,
    committed_at REAL NOT NULL,
    PRIMARY KEY (source, endpoint, hour)
);
"""


def hour_key(epoch_seconds: float) -> str:
    """The hourly partition key (UTC) of a time."""
    when = datetime.fromtimestamp(epoch_seconds, tz=timezone.utc)
    return when.replace(minute=0, second=0, microsecond=0).strftime(HOUR_FORMAT)


@dataclass(frozen=True)
class Event:
    source: str
    endpoint: str
    event_id: str
    event_type: str | None
    event_time: float
    received_at: float
    body: bytes
    seq: int | None = None

    @property
    def hour(self) -> str:
        return hour_key(self.event_time)


def connect(path: str | os.PathLike) -> sqlite3.Connection:
    """A connection in WAL mode with full fsync on commit; creates the file and tables."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.executescript(_SCHEMA)
    return conn


class SpoolWriter:
    """Appends events durably; one thread, one transaction per batch of waiting requests."""

    def __init__(self, path: str | os.PathLike, max_batch: int = 512):
        self.path = Path(path)
        self.max_batch = max_batch
        self._conn = connect(self.path)
        self._queue: queue.Queue[tuple[Event, Future] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._thread.start()

    def submit(self, event: Event) -> Future:
        """A future resolving to True (stored) or False (a duplicate, already stored) once
        the event is on disk, or to the error that kept it from being stored."""
        future: Future = Future()
        self._queue.put((event, future))
        return future

    def append(self, event: Event, timeout: float = 30) -> bool:
        return self.submit(event).result(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)
        self._conn.close()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[Event, Future]]) -> None:
        results: list[bool] = []
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for event, _ in batch:
                    cur = self._conn.execute(
                        "INSERT OR IGNORE INTO events (source, endpoint, event_id, event_type,"
                        " event_time, hour, received_at, body) VALUES (?,?,?,?,?,?,?,?)",
                        (event.source, event.endpoint, event.event_id, event.event_type,
                         event.event_time, event.hour, event.received_at, event.body),
                    )
                    results.append(cur.rowcount == 1)
                self._conn.execute("COMMIT")  # fsynced (synchronous=FULL) before it returns
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        except Exception as exc:  # every waiting request is answered 503 and retried
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), stored in zip(batch, results, strict=True):
            future.set_result(stored)


class Spool:
    """Read side of the spool (the sensor and the events assets)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def _conn(self) -> sqlite3.Connection:
        return connect(self.path)

    def changed_hours(
        self, source: str, endpoint: str, after_seq: int, limit: int = 100_000
    ) -> tuple[list[str], int]:
        """Hours holding events stored after ``after_seq``, and the highest seq seen."""
        conn = self._conn()
        try:
            row = conn.execute(
                "SELECT max(seq) FROM (SELECT seq FROM events WHERE source=? AND endpoint=?"
                " AND seq>? ORDER BY seq LIMIT ?)",
                (source, endpoint, after_seq, limit),
            ).fetchone()
            top = row[0]
            if top is None:
                return [], after_seq
            hours = [
                r[0] for r in conn.execute(
                    "SELECT DISTINCT hour FROM events WHERE source=? AND endpoint=? AND seq>?"
                    " AND seq<=? ORDER BY hour", (source, endpoint, after_seq, top),
                )
            ]
            return hours, int(top)
        finally:
            conn.close()

    def iter_events(self, source: str, endpoint: str, hour: str) -> Iterator[Event]:
        """Every stored event of one hour, ordered by event time then id (streamed)."""
        return self._events(source, endpoint, "hour=? ORDER BY event_time, event_id", (hour,))

    def iter_since(self, source: str, endpoint: str, after: int, upto: int) -> Iterator[Event]:
        """Events stored with ``after < seq <= upto``, in seq order (streamed)."""
        return self._events(source, endpoint, "seq>? AND seq<=? ORDER BY seq", (after, upto))

    def _events(
        self, source: str, endpoint: str, condition: str, args: tuple
    ) -> Iterator[Event]:
        """The events of one endpoint meeting ``condition`` (SQL with ``?`` for ``args``)."""
        conn = self._conn()
        try:
            rows = conn.execute(
                "SELECT seq, event_id, event_type, event_time, received_at, body FROM events"
                f" WHERE source=? AND endpoint=? AND {condition}",
                (source, endpoint, *args),
            )
            for seq, event_id, event_type, event_time, received_at, body in rows:
                yield Event(source, endpoint, event_id, event_type, event_time, received_at,
                            bytes(body), seq)
        finally:
            conn.close()

    def mark_committed(self, source: str, endpoint: str, hour: str, max_seq: int) -> None:
        conn = self._conn()
        try:
            conn.execute(
                "INSERT INTO committed VALUES (?,?,?,?,?) ON CONFLICT (source, endpoint, hour)"
                " DO UPDATE SET max_seq=max(max_seq, excluded.max_seq),"
                " committed_at=excluded.committed_at",
                (source, endpoint, hour, max_seq, time.time()),
            )
        finally:
            conn.close()

    def backlog(self, source: str, endpoint: str) -> int:
        """Events stored but not yet in a committed partition."""
        conn = self._conn()
        try:
            return int(conn.execute(
                "SELECT count(*) FROM events e LEFT JOIN committed c ON c.source=e.source"
                " AND c.endpoint=e.endpoint AND c.hour=e.hour WHERE e.source=? AND"
                " e.endpoint=? AND (c.max_seq IS NULL OR e.seq>c.max_seq)",
                (source, endpoint),
            ).fetchone()[0])
        finally:
            conn.close()

    def count(self, source: str | None = None, endpoint: str | None = None) -> int:
        conn = self._conn()
        try:
            if source is None:
                return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
            return int(conn.execute(
                "SELECT count(*) FROM events WHERE source=? AND endpoint=?", (source, endpoint)
            ).fetchone()[0])
        finally:
            conn.close()


SPOOL_ENV_VAR = "INGESTION_WEBHOOK_SPOOL"


def default_spool_path() -> Path:
    """``$INGESTION_WEBHOOK_SPOOL``, else ``webhooks/spool.sqlite3`` in the data folder when
    that is local (``$INGESTION_DATA_DIR``, default ``./data``), else in ``./data``: the
    spool needs a local disk that fsync reaches, never object storage."""
    if os.environ.get(SPOOL_ENV_VAR):
        return Path(os.environ[SPOOL_ENV_VAR])
    data = os.environ.get("INGESTION_DATA_DIR") or "data"
    if "://" in data and not data.startswith("file://"):
        data = "data"
    return Path(data.removeprefix("file://")).absolute() / "webhooks" / "spool.sqlite3"

