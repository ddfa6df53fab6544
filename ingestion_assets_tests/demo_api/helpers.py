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


def commerce_session() -> requests.Session:
    s = requests.Session()
    s.headers["X-Shopify-Access-Token"] = creds.COMMERCE_TOKEN
    return s


def devhub_session() -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {creds.DEVHUB_TOKEN}"
    return s


def crm_token(api, **extra) -> dict:
    r = requests.post(
        api.base_url("crm") + "/oauth/v1/token",
        data={
            "grant_type": "client_credentials",
            "client_id": creds.CRM_CLIENT_ID,
            "client_secret": creds.CRM_CLIENT_SECRET,
            **extra,
        },
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return r.json()


def crm_session(api) -> requests.Session:
    s = requests.Session()
    s.headers["Authorization"] = f"Bearer {crm_token(api)['access_token']}"
    return s


def walk_links(session, url, params=None):
    """Follows RFC 8288 rel="next" links; returns (records, pages)."""
    out, pages = [], 0
    while url:
        r = session.get(url, params=params, timeout=10)
        assert r.status_code == 200, r.text
        body = r.json()
        out += body if isinstance(body, list) else next(iter(body.values()))
        pages += 1
        url, params = r.links.get("next", {}).get("url"), None
    return out, pages
