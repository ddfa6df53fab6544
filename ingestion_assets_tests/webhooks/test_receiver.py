"""The receiver over real HTTP: each signature style, rotation, replay, duplicates, size limit.

Signatures are made here with ``hmac`` directly (not with the receiver's own code), the way
each vendor documents them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid

import orjson
import pytest
import requests

from ingestion_assets.webhooks.spool import Spool
from ingestion_assets_tests.webhooks.support import SECRETS


def _mac(secret: str, message: bytes) -> bytes:
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()


def _event(style: str) -> tuple[str, bytes, dict[str, str]]:
    """(event id, body, unsigned headers) in the vendor's shape."""
    event_id = uuid.uuid4().hex
    if style == "stripe":
        body = {"id": f"evt_{event_id}", "type": "charge.updated", "created": int(time.time()),
                "data": {"object": {"id": "ch_1", "amount": 100}}}
        return f"evt_{event_id}", orjson.dumps(body), {}
    if style == "shopify":
        return event_id, orjson.dumps({"id": 42, "total_price": "1.00"}), {
            "X-Shopify-Webhook-Id": event_id, "X-Shopify-Topic": "orders/updated",
            "X-Shopify-Triggered-At": "2025-03-01T10:15:00Z"}
    if style == "github":
        return event_id, orjson.dumps({"action": "edited", "issue": {"id": 7}}), {
            "X-GitHub-Delivery": event_id, "X-GitHub-Event": "issues"}
    body = {"id": event_id, "type": "contact.updated", "occurred_at": "2025-03-01T10:15:00Z"}
    return event_id, orjson.dumps(body), {}


def _sign(style: str, body: bytes, secret: str, t: int | None = None) -> dict[str, str]:
    if style == "stripe":
        t = int(time.time()) if t is None else t
        return {"Stripe-Signature": f"t={t},v1={_mac(secret, f'{t}.'.encode() + body).hex()}"}
    if style == "shopify":
        return {"X-Shopify-Hmac-Sha256": base64.b64encode(_mac(secret, body)).decode()}
    if style == "github":
        return {"X-Hub-Signature-256": "sha256=" + _mac(secret, body).hex()}
    return {"X-Signature": "v1=" + base64.b64encode(_mac(secret, body)).decode()}


STYLES = {
    "stripe": "HOOK_STRIPE_SECRET", "shopify": "HOOK_SHOPIFY_SECRET",
    "github": "HOOK_GITHUB_SECRET", "generic": "HOOK_HMAC_SECRET",
}


def _post(receiver, endpoint: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{receiver.url}/webhooks/hooks/{endpoint}", data=body,
                         headers={"Content-Type": "application/json", **headers}, timeout=10)


def _stored_ids(receiver, endpoint: str) -> set[str]:
    return {e.event_id for e in Spool(receiver.spool).iter_since("hooks", endpoint, 0, 10**12)}


@pytest.mark.parametrize("endpoint", sorted(STYLES))
def test_right_secret_is_accepted_and_stored(receiver, endpoint):
    event_id, body, headers = _event(endpoint)
    secret = SECRETS[STYLES[endpoint]]
    r = _post(receiver, endpoint, body, {**headers, **_sign(endpoint, body, secret)})
    assert r.status_code == 200, r.text
    assert r.json() == {"stored": True, "id": event_id}
    assert event_id in _stored_ids(receiver, endpoint)


@pytest.mark.parametrize("endpoint", sorted(STYLES))
def test_wrong_or_missing_signature_is_rejected_and_nothing_stored(receiver, endpoint):
    before = Spool(receiver.spool).count("hooks", endpoint)
    event_id, body, headers = _event(endpoint)
    wrong = _post(receiver, endpoint, body, {**headers, **_sign(endpoint, body, "not-the-secret")})
    assert wrong.status_code == 401
    missing = _post(receiver, endpoint, body, headers)
    assert missing.status_code == 401
    # Signed right, but the body was changed on the way.
    tampered = _post(receiver, endpoint, body + b" ",
                     {**headers, **_sign(endpoint, body, SECRETS[STYLES[endpoint]])})
    assert tampered.status_code == 401
    assert Spool(receiver.spool).count("hooks", endpoint) == before
    assert event_id not in _stored_ids(receiver, endpoint)


def test_stripe_stale_or_future_timestamp_is_rejected(receiver):
    before = Spool(receiver.spool).count("hooks", "stripe")
    for t in (int(time.time()) - 301, int(time.time()) + 400):
        _, body, _ = _event("stripe")
        r = _post(receiver, "stripe", body, _sign("stripe", body, SECRETS["HOOK_STRIPE_SECRET"], t))
        assert r.status_code == 400
        assert "stale" in r.json()["message"]
    assert Spool(receiver.spool).count("hooks", "stripe") == before


def test_malformed_signature_header_is_a_400(receiver):
    _, body, _ = _event("stripe")
    r = _post(receiver, "stripe", body, {"Stripe-Signature": "v1=zz"})
    assert r.status_code == 400
    _, body, headers = _event("github")
    r = _post(receiver, "github", body, {**headers, "X-Hub-Signature-256": "md5=abc"})
    assert r.status_code == 400


def test_both_secrets_are_valid_during_a_rotation(receiver):
    for secret in (SECRETS["HOOK_STRIPE_SECRET"], SECRETS["HOOK_STRIPE_SECRET_OLD"]):
        event_id, body, _ = _event("stripe")
        r = _post(receiver, "stripe", body, _sign("stripe", body, secret))
        assert r.status_code == 200
        assert event_id in _stored_ids(receiver, "stripe")


@pytest.mark.parametrize("endpoint", sorted(STYLES))
def test_a_duplicate_delivery_is_stored_once(receiver, endpoint):
    event_id, body, headers = _event(endpoint)
    secret = SECRETS[STYLES[endpoint]]
    before = Spool(receiver.spool).count("hooks", endpoint)
    answers = [
        _post(receiver, endpoint, body, {**headers, **_sign(endpoint, body, secret)}).json()
        for _ in range(3)
    ]
    assert [a["stored"] for a in answers] == [True, False, False]
    assert Spool(receiver.spool).count("hooks", endpoint) == before + 1


def test_body_over_the_limit_is_a_413_and_not_stored(receiver):
    before = Spool(receiver.spool).count("hooks", "generic")
    big = orjson.dumps({"id": uuid.uuid4().hex, "pad": "x" * 10_000})
    r = _post(receiver, "generic", big, _sign("generic", big, SECRETS["HOOK_HMAC_SECRET"]))
    assert r.status_code == 413

    # Without a Content-Length (chunked): the receiver stops reading at the limit.
    def chunks():
        for _ in range(100):
            yield b"x" * 1024

    r = requests.post(f"{receiver.url}/webhooks/hooks/generic", data=chunks(),
                      headers={"X-Signature": "v1=AAAA"}, timeout=10)
    assert r.status_code == 413
    assert Spool(receiver.spool).count("hooks", "generic") == before


def test_unknown_endpoint_is_a_404_and_health_answers(receiver):
    _, body, _ = _event("stripe")
    r = _post(receiver, "nope", body, _sign("stripe", body, SECRETS["HOOK_STRIPE_SECRET"]))
    assert r.status_code == 404
    health = requests.get(receiver.url + "/health", timeout=10).json()
    assert health["status"] == "ok"
    assert "hooks/stripe" in health["endpoints"]


def test_event_time_and_type_come_from_the_vendor_fields(receiver):
    event_id, body, headers = _event("shopify")
    _post(receiver, "shopify", body,
          {**headers, **_sign("shopify", body, SECRETS["HOOK_SHOPIFY_SECRET"])})
    (event,) = [e for e in Spool(receiver.spool).iter_events("hooks", "shopify",
                                                             "2025-03-01-10:00")
                if e.event_id == event_id]
    assert event.event_type == "orders/updated"
    assert event.body == body  # stored exactly as received


# As JSON text: strings are read as numbers too, and JSON itself has no infinity or NaN.
@pytest.mark.parametrize("created", ['"1e400"', "-1", str(10**13), '"NaN"'],
                         ids=["inf", "before_1970", "year_318857", "nan"])
def test_an_event_time_no_partition_can_hold_is_a_400_and_not_stored(receiver, created):
    # Signed correctly, but its time would make an hour key that cannot exist: refused with
    # the reason (the sender sees it), nothing in the spool, and the receiver keeps serving.
    event_id, body, _ = _event("stripe")
    body = body.replace(b'"created":', b'"created":' + created.encode() + b',"was":', 1)
    resp = _post(receiver, "stripe", body, _sign("stripe", body, SECRETS["HOOK_STRIPE_SECRET"]))
    assert resp.status_code == 400, resp.text
    assert "outside years 1970-9999" in resp.text
    assert event_id not in _stored_ids(receiver, "stripe")
    ok_id, ok_body, _ = _event("stripe")
    ok = _post(receiver, "stripe", ok_body,
               _sign("stripe", ok_body, SECRETS["HOOK_STRIPE_SECRET"]))
    assert ok.status_code == 200 and ok_id in _stored_ids(receiver, "stripe")


def test_secrets_never_reach_the_log(receiver):
    # After accepted and rejected requests of every style (the tests above, and these).
    for endpoint in STYLES:
        _, body, headers = _event(endpoint)
        _post(receiver, endpoint, body, {**headers, **_sign(endpoint, body, "wrong")})
    log = receiver.output()
    assert "rejected" in log  # the log does say what happened
    for secret in SECRETS.values():
        assert secret not in log


def test_a_trickling_body_gets_a_408_and_nothing_is_stored(receiver):
    import socket

    before = Spool(receiver.spool).count("hooks", "generic")
    with socket.create_connection(("127.0.0.1", receiver.port), timeout=30) as sock:
        sock.sendall(b"POST /webhooks/hooks/generic HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"id\":")
        # ... and nothing more: the receiver gives up after its read timeout (1 s here).
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
    assert Spool(receiver.spool).count("hooks", "generic") == before
