"""Small helpers shared by the demo API tests."""

from __future__ import annotations

from datetime import datetime, timezone

import requests

from ingestion_assets.demo_api import credentials as creds


def ts(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp())


def payments_session() -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {creds.PAYMENTS_KEY}"
    return s


def walk_stripe(session, url, params):
    """Collects every record of a Stripe-style list, following starting_after."""
    out, cursor, pages = [], None, 0
    while True:
        p = dict(params)
        if cursor:
            p["starting_after"] = cursor
        r = session.get(url, params=p, timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        out += body["data"]
        pages += 1
        if not body["has_more"]:
            return out, pages
        cursor = body["data"][-1]["id"]
