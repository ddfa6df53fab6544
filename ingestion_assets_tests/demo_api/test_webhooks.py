"""The demo API's webhook sender, against a small receiver on loopback that fails at first."""

from __future__ import annotations

import hashlib
import hmac
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
import requests

from ingestion_assets.demo_api import CONTROL_HEADERS, credentials


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first two requests, then 200; keeps what it received."""

    received: list[tuple[str, dict, bytes, int]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = 503 if len(self.received) < 2 else 200
        self.received.append((self.path, dict(self.headers), body, status))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def flaky():
    _Flaky.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Flaky.received
    server.shutdown()
    server.server_close()


def test_mutation_posts_a_signed_stripe_event_and_retries_non_2xx(demo_api, flaky):
    url, received = flaky
    # Configured over the control API, as a user of the running demo API does.
    r = requests.post(demo_api.url + "/_control/webhooks",
                      json={"url": url, "backoff_seconds": 0.01}, headers=CONTROL_HEADERS,
                      timeout=10)
    assert r.json()["url"] == url
    changed = demo_api.mutate("payments", "charges", insert=1)
    assert demo_api.webhooks.flush(10)
    assert [status for *_, status in received] == [503, 503, 200]
    path, headers, body, _ = received[-1]
    assert path == "/webhooks/payments/charges"
    event = orjson.loads(body)
    assert event["type"] == "charge.created"
    assert event["data"]["object"]["id"] == changed["inserted"][0]
    # Stripe's scheme, checked independently: v1 = HMAC-SHA256(secret, "t.body").
    parts = dict(item.split("=", 1) for item in headers["Stripe-Signature"].split(","))
    expected = hmac.new(credentials.PAYMENTS_WEBHOOK_SECRET.encode(),
                        parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    # The same event id on every attempt: the receiver deduplicates retries by it.
    assert len({orjson.loads(b)["id"] for _, _, b, _ in received}) == 1
    status = requests.get(demo_api.url + "/_control/webhooks", headers=CONTROL_HEADERS,
                          timeout=10).json()
    assert status["delivered"] == 1 and status["pending"] == 0


def test_no_url_no_events(demo_api, flaky):
    _, received = flaky
    demo_api.mutate("payments", "charges", insert=1)
    assert demo_api.webhooks.flush(5)
    assert received == []
