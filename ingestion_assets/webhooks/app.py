"""The receiver: a Starlette app serving ``POST /webhooks/<source>/<endpoint>``.

For each request: find the endpoint's ``webhook:`` spec, read the body up to
``max_body_bytes`` (413 beyond, without reading the rest), verify the signature (401/400,
nothing stored), parse the JSON, take the event id, type and time, and append the event to
the spool. The answer is 200 only once the event is on disk (``{"stored": true}``, or
``false`` for a duplicate already stored); a failure to store answers 503 so the sender
retries. ``GET /health`` answers 200 with the spool's path and event count.

Secrets are read from the environment per request (so a rotation needs no restart) and
are never logged or returned.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ingestion_assets.specs import Endpoint, Source, WebhookSpec
from ingestion_assets.webhooks.signatures import SignatureError, verify
from ingestion_assets.webhooks.spool import Event, Spool, SpoolWriter

log = logging.getLogger("ingestion_assets.webhooks")


class _TooLarge(Exception):
    pass


def webhook_endpoints(sources: list[Source]) -> dict[tuple[str, str], tuple[Source, Endpoint]]:
    """``(source, endpoint)`` -> specs, for every endpoint declaring ``webhook:``."""
    return {
        (s.name, e.name): (s, e) for s in sources for e in s.endpoints if e.webhook is not None
    }


def dotted(body: Any, path: str | None) -> Any:
    """The value at a dotted ``path`` (``data.object.id``) of a JSON body; None when
    ``path`` is empty or any step is missing or not an object."""
    if not path:
        return None
    node = body
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def as_epoch(value: Any) -> float | None:
    """A webhook time as epoch seconds: a number, a numeric string or an ISO 8601 string
    (naive means UTC); None for anything else (booleans included)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp()
    return None


def secrets_of(spec: WebhookSpec) -> list[str]:
    """The spec's secrets that are set in the environment (a missing one is skipped, so
    the second secret of a rotation may be unset)."""
    return [os.environ[s.env] for s in spec.secrets if os.environ.get(s.env)]


#: Event times a partition can hold: from the epoch to the end of year 9999 (UTC). A sender's
#: time outside (infinite, NaN, 1e30) would make an hour key that cannot exist.
EARLIEST_EVENT_TIME, LATEST_EVENT_TIME = 0.0, 253402300799.0


class EventTimeError(ValueError):
    """The event's time field holds no usable time."""


def _event_fields(
    spec: WebhookSpec, headers: Mapping[str, str], payload: Any, received_at: float
) -> tuple[str | None, str | None, float]:
    event_id = headers.get(spec.id_header.lower()) if spec.id_header else None
    if event_id is None and spec.id_path:
        value = dotted(payload, spec.id_path)
        event_id = None if value is None or isinstance(value, (dict, list)) else str(value)
    event_type = headers.get(spec.type_header.lower()) if spec.type_header else None
    if spec.type_path:
        value = dotted(payload, spec.type_path)
        if isinstance(value, str):
            # github: X-GitHub-Event plus the body's action, e.g. "issues.opened"
            event_type = f"{event_type}.{value}" if event_type and spec.style == "github" else value
    event_time = as_epoch(dotted(payload, spec.time_path)) if spec.time_path else None
    if event_time is None and spec.time_header:
        event_time = as_epoch(headers.get(spec.time_header.lower()))
    if event_time is not None and not EARLIEST_EVENT_TIME <= event_time <= LATEST_EVENT_TIME:
        # also false for NaN; nothing is stored, so no hour key is ever made of it
        raise EventTimeError(f"event time {event_time!r} is outside years 1970-9999")
    return event_id, event_type, received_at if event_time is None else event_time


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge()  # stop reading here; the rest is never buffered
        chunks.append(chunk)
    return b"".join(chunks)


def _problem(status: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status)


class _Refused(Exception):
    """A request answered with a problem (status, error code, message); nothing is stored."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.response = _problem(status, error, message)


class _Receiver:
    """The routes of the receiver app: one request is read, verified, parsed and spooled."""

    def __init__(self, sources: list[Source], spool_path: str, read_timeout: float) -> None:
        self.routes_by_key = webhook_endpoints(sources)
        self.spool_path = spool_path
        self.read_timeout = read_timeout
        self._writer: SpoolWriter | None = None

    def writer(self) -> SpoolWriter:
        if self._writer is None:
            self._writer = SpoolWriter(self.spool_path)
        return self._writer

    @asynccontextmanager
    async def lifespan(self, app: Starlette):
        self.writer()  # open (and create) the spool before the first request
        yield
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    async def receive(self, request: Request) -> JSONResponse:
        source = request.path_params["source"]
        endpoint = request.path_params["endpoint"]
        try:
            spec = self._spec(source, endpoint)
            body = await self._body(request, source, endpoint, spec)
            self._verify(request, source, endpoint, spec, body)
            event = _event(request, source, endpoint, spec, body)
        except _Refused as refused:
            return refused.response
        try:
            stored = await asyncio.wrap_future(self.writer().submit(event))
        except Exception as exc:  # not on disk: the sender must retry
            log.error("%s/%s: event %s not stored: %s", source, endpoint, event.event_id,
                      type(exc).__name__)
            return _problem(503, "not_stored", "the event could not be stored; retry")
        return JSONResponse({"stored": stored, "id": event.event_id})

    async def health(self, request: Request) -> JSONResponse:
        count = await asyncio.to_thread(Spool(self.spool_path).count)
        return JSONResponse({
            "status": "ok", "spool": str(self.spool_path), "events": count,
            "endpoints": sorted(f"{s}/{e}" for s, e in self.routes_by_key),
        })

    def _spec(self, source: str, endpoint: str) -> WebhookSpec:
        found = self.routes_by_key.get((source, endpoint))
        if found is None:
            raise _Refused(404, "not_found", f"no endpoint {source}/{endpoint} declares `webhook:`")
        spec = found[1].webhook
        assert spec is not None
        return spec

    async def _body(self, request: Request, source: str, endpoint: str,
                    spec: WebhookSpec) -> bytes:
        try:
            return await asyncio.wait_for(_read_body(request, spec.max_body_bytes),
                                          self.read_timeout)
        except asyncio.TimeoutError:
            log.warning("%s/%s: body not received within %g s", source, endpoint,
                        self.read_timeout)
            raise _Refused(408, "timeout",
                           f"body not received within {self.read_timeout:g} s") from None
        except _TooLarge:
            log.warning("%s/%s: body over %d bytes refused", source, endpoint,
                        spec.max_body_bytes)
            raise _Refused(413, "too_large", f"body over {spec.max_body_bytes} bytes") from None

    def _verify(self, request: Request, source: str, endpoint: str, spec: WebhookSpec,
                body: bytes) -> None:
        secrets = secrets_of(spec)
        if not secrets:
            names = ", ".join(s.env for s in spec.secrets)
            log.error("%s/%s: no webhook secret set (environment: %s)", source, endpoint, names)
            raise _Refused(503, "not_configured", "the receiver has no secret for this endpoint")
        try:
            verify(spec.style, request.headers, body, secrets, header=spec.header,
                   encoding=spec.encoding, prefix=spec.prefix,
                   tolerance_seconds=spec.tolerance_seconds)
        except SignatureError as exc:
            log.warning("%s/%s: rejected: %s", source, endpoint, exc.reason)
            raise _Refused(exc.status, "bad_signature", exc.reason) from None


def _event(request: Request, source: str, endpoint: str, spec: WebhookSpec,
           body: bytes) -> Event:
    """The spool event of a verified body: its id, type and time (400 without them)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _Refused(400, "bad_request", "body is not JSON") from None
    received_at = time.time()
    try:
        event_id, event_type, event_time = _event_fields(
            spec, request.headers, payload, received_at
        )
    except EventTimeError as exc:
        raise _Refused(400, "bad_request", str(exc)) from None
    if not event_id:
        where = f"header {spec.id_header}" if spec.id_header else f"body field {spec.id_path}"
        raise _Refused(400, "bad_request", f"no event id ({where})")
    return Event(source, endpoint, event_id, event_type, event_time, received_at, body)


def create_app(sources: list[Source], spool_path: str, read_timeout: float = 30.0) -> Starlette:
    """The receiver app for the given sources, spooling to ``spool_path``.

    ``read_timeout`` bounds the time to receive a whole body: a sender trickling its body
    gets 408 instead of holding a connection open.
    """
    receiver = _Receiver(sources, spool_path, read_timeout)
    return Starlette(
        routes=[
            Route("/webhooks/{source}/{endpoint}", receiver.receive, methods=["POST"]),
            Route("/health", receiver.health, methods=["GET"]),
        ],
        lifespan=receiver.lifespan,
    )
