"""The demo API's webhook sender: signed, vendor-style events for inserted and updated records.

When records change through ``mutate`` (``POST /_control/mutations``) and a receiver URL is
set (``--webhooks-to URL``, ``DemoConfig.webhooks_to`` or ``POST /_control/webhooks``), each
changed record becomes one event posted to ``<url>/webhooks/<source>/<endpoint>``, signed
the way its vendor signs:

=========  ===========  ===========================================================
source     style        signature
=========  ===========  ===========================================================
payments   Stripe       ``Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">``
commerce   Shopify      ``X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>``
devhub     GitHub       ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``
crm        generic      ``X-Crm-Signature: <hex HMAC-SHA256 of the body>``
=========  ===========  ===========================================================

Like a vendor, the sender retries a delivery that does not get a 2xx (connection errors
too) with exponential backoff, up to ``max_attempts``. For tests it can be told to deliver
every event twice (``duplicates``), each batch in reverse order (``out_of_order``), or to
sign the next N deliveries with a wrong secret (``bad_signatures``; sent once, not retried).

The signing code is written here on purpose: the demo API imports nothing from the rest of
the package.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlsplit

import orjson

from . import credentials as creds

#: (source, endpoint) -> the vendor style of its events. Matches the bundled YAML.
EVENT_ENDPOINTS = {
    ("payments", "charges"): "stripe",
    ("commerce", "orders"): "shopify",
    ("devhub", "issues"): "github",
    ("crm", "contacts"): "hmac",
}


def _mac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def _singular(endpoint: str) -> str:
    return endpoint[:-1] if endpoint.endswith("s") else endpoint


@dataclass
class Delivery:
    """One event to post: the body is fixed, the signature is made at each attempt."""

    source: str
    endpoint: str
    style: str
    event_id: str
    body: bytes
    headers: dict[str, str]
    bad_signature: bool = False
    attempts: int = 0
    status: int | None = None


def build_event(source: str, endpoint: str, record: dict, kind: str, ts: int
                ) -> tuple[str, bytes, dict[str, str]]:
    """``(event id, body, unsigned headers)`` of one vendor-style event.

    ``kind`` is ``"created"`` or ``"updated"``; ``ts`` the time of the change (unix s).
    """
    style = EVENT_ENDPOINTS[(source, endpoint)]
    noun = _singular(endpoint)
    iso = datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")
    headers = {"Content-Type": "application/json", "User-Agent": "demo-api-webhooks/1"}
    if style == "stripe":
        event_id = "evt_" + uuid.uuid4().hex[:24]
        body = {"id": event_id, "object": "event", "api_version": "2024-06-20",
                "created": ts, "type": f"{noun}.{kind}", "data": {"object": record}}
    elif style == "shopify":
        event_id = str(uuid.uuid4())
        body = record
        headers.update({
            "X-Shopify-Topic": f"{endpoint}/{'create' if kind == 'created' else 'updated'}",
            "X-Shopify-Webhook-Id": event_id, "X-Shopify-Triggered-At": iso,
            "X-Shopify-Shop-Domain": "demo-shop.myshopify.com", "X-Shopify-API-Version": "2024-07",
        })
    elif style == "github":
        event_id = str(uuid.uuid4())
        body = {"action": "opened" if kind == "created" else "edited", noun: record}
        headers.update({"X-GitHub-Event": endpoint, "X-GitHub-Delivery": event_id})
    else:
        event_id = str(uuid.uuid4())
        body = {"id": event_id, "type": f"{noun}.{kind}", "occurred_at": iso, "object": record}
    return event_id, orjson.dumps(body), headers


def sign(style: str, source: str, body: bytes, secret: str) -> dict[str, str]:
    """The signature header of one attempt."""
    if style == "stripe":
        t = str(int(time.time()))
        return {"Stripe-Signature": f"t={t},v1={_mac(secret, t.encode() + b'.' + body).hex()}"}
    if style == "shopify":
        return {"X-Shopify-Hmac-Sha256": base64.b64encode(_mac(secret, body)).decode()}
    if style == "github":
        return {"X-Hub-Signature-256": "sha256=" + _mac(secret, body).hex()}
    return {"X-Crm-Signature": _mac(secret, body).hex()}


@dataclass
class WebhookSender:
    """Posts events to a receiver from one background thread, retrying non-2xx answers."""

    url: str | None = None
    max_attempts: int = 8
    backoff_seconds: float = 0.1
    backoff_max_seconds: float = 5.0
    timeout_seconds: float = 10.0
    duplicates: bool = False
    out_of_order: bool = False
    bad_signatures: int = 0
    log: deque = field(default_factory=lambda: deque(maxlen=10_000))

    def __post_init__(self) -> None:
        self._pending: deque[Delivery] = deque()
        self._cond = threading.Condition()
        self._busy = 0
        self._stop = False
        self._thread: threading.Thread | None = None

    # ---- control ------------------------------------------------------------------------

    def configure(self, **settings) -> dict:
        allowed = {"url", "duplicates", "out_of_order", "bad_signatures", "max_attempts",
                   "backoff_seconds"}
        unknown = set(settings) - allowed
        if unknown:
            raise ValueError(f"unknown webhook settings {sorted(unknown)}; allowed: {sorted(allowed)}")
        for name, value in settings.items():
            setattr(self, name, value)
        return self.status()

    def status(self) -> dict:
        delivered = sum(1 for d in self.log if d["status"] is not None and 200 <= d["status"] < 300)
        return {"url": self.url, "duplicates": self.duplicates, "out_of_order": self.out_of_order,
                "bad_signatures": self.bad_signatures, "pending": len(self._pending) + self._busy,
                "delivered": delivered, "failed": len(self.log) - delivered}

    def emit(self, source: str, endpoint: str, records: list[dict], kind: str, ts: int) -> list[str]:
        """Queue one event per record (if a receiver is set and the endpoint sends events)."""
        if not self.url or (source, endpoint) not in EVENT_ENDPOINTS or not records:
            return []
        style = EVENT_ENDPOINTS[(source, endpoint)]
        batch: list[Delivery] = []
        for record in records:
            event_id, body, headers = build_event(source, endpoint, record, kind, ts)
            copies = 2 if self.duplicates else 1
            batch += [Delivery(source, endpoint, style, event_id, body, headers)
                      for _ in range(copies)]
        if self.out_of_order:
            batch.reverse()
        for delivery in batch:
            if self.bad_signatures > 0:
                self.bad_signatures -= 1
                delivery.bad_signature = True
        with self._cond:
            self._pending.extend(batch)
            self._cond.notify()
        self._ensure_thread()
        return [d.event_id for d in batch]

    def flush(self, timeout: float = 30.0) -> bool:
        """Waits until every queued delivery got its final answer; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # ---- delivery -----------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._stop = False
                self._thread = threading.Thread(target=self._run, name="demo-webhooks",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait(0.5)
                if self._stop:
                    return
                delivery = self._pending.popleft()
                self._busy += 1
            try:
                self._deliver(delivery)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _post(self, delivery: Delivery) -> int:
        target = urlsplit(f"{self.url.rstrip('/')}/webhooks/{delivery.source}/{delivery.endpoint}")
        secret = creds.WEBHOOK_SECRETS[delivery.source]
        if delivery.bad_signature:
            secret = "not-the-" + secret
        headers = {**delivery.headers, **sign(delivery.style, delivery.source, delivery.body, secret)}
        cls = http.client.HTTPSConnection if target.scheme == "https" else http.client.HTTPConnection
        conn = cls(target.hostname, target.port, timeout=self.timeout_seconds)
        try:
            conn.request("POST", target.path, body=delivery.body, headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status
        finally:
            conn.close()

    def _deliver(self, delivery: Delivery) -> None:
        wait = self.backoff_seconds
        attempts = 1 if delivery.bad_signature else self.max_attempts
        for attempt in range(1, attempts + 1):
            delivery.attempts = attempt
            try:
                delivery.status = self._post(delivery)
            except OSError:
                delivery.status = None
            if delivery.status is not None and 200 <= delivery.status < 300:
                break
            if attempt < attempts and not self._stop:
                time.sleep(wait)
                wait = min(wait * 2, self.backoff_max_seconds)
        self.log.append({"id": delivery.event_id, "source": delivery.source,
                         "endpoint": delivery.endpoint, "status": delivery.status,
                         "attempts": delivery.attempts, "bad_signature": delivery.bad_signature})
