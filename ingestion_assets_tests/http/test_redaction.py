"""Secrets never appear in logs, exceptions or anything the client returns."""

from __future__ import annotations

import logging

import pytest

from ingestion_assets.http import auth, errors, paginators, redact
from ingestion_assets.http.redaction import (
    MASK,
    contains_secret,
    redact_headers,
    redact_url,
    register_secret,
)

from .conftest import fetch_charges, payments_client, source_client


def test_redact_by_name_in_urls_headers_and_mappings():
    url = "https://u:pw@api.x/v1?limit=5&api_key=abc123&access_token=zzz&page=2"
    out = redact_url(url)
    assert "abc123" not in out and "zzz" not in out and "pw" not in out
    assert "limit=5" in out and "page=2" in out
    headers = redact_headers(
        {"Authorization": "Bearer x", "X-Shopify-Access-Token": "y", "Accept": "a"}
    )
    assert headers == {"Authorization": MASK, "X-Shopify-Access-Token": MASK, "Accept": "a"}
    nested = redact(
        {"client_secret": "s", "params": {"token": "t", "q": "ok"}, "list": ["Bearer abcdefgh"]}
    )
    assert nested == {
        "client_secret": MASK,
        "params": {"token": MASK, "q": "ok"},
        "list": [f"Bearer {MASK}"],
    }


def test_redact_by_value_in_free_text_and_encoded_forms():
    register_secret("s3cr3t/with+chars=")
    text = "error: key s3cr3t/with+chars= or s3cr3t%2Fwith%2Bchars%3D or s3cr3t%2Fwith%2Bchars%3D"
    out = redact(text)
    assert not contains_secret(out, ["s3cr3t/with+chars="])
    assert redact(b"raw s3cr3t/with+chars= bytes") == f"raw {MASK} bytes"
    # Prose stays readable; credentials after a scheme word do not.
    assert redact("token endpoint refused") == "token endpoint refused"
    assert redact("Authorization: token ghp_abcdef123456789") == f"Authorization: token {MASK}"


def test_basic_auth_header_value_is_registered():
    basic = auth.HttpBasic("user-name-x", "pass-word-y")
    import requests

    prepared = basic(requests.Request("GET", "http://h/").prepare())
    header = prepared.headers["Authorization"]
    assert header.split()[1] not in redact(f"sent {header}")
    assert "pass-word-y" not in repr(basic) and "user-name-x" not in repr(basic)


def _grep_everything(caplog, objects) -> str:
    parts = [caplog.text]
    parts += [r.getMessage() for r in caplog.records]
    for obj in objects:
        parts.append(repr(obj))
        parts.append(str(obj))
        if isinstance(obj, errors.ApiError):
            parts.append(repr(obj.to_dict()))
            parts.append(repr(obj.args))
    return "\n".join(parts)


def test_no_secret_in_logs_exceptions_or_returned_objects(demo_api, caplog):
    caplog.set_level(logging.DEBUG)  # everything, urllib3's request lines included
    api = demo_api
    secrets = []
    outputs: list = []

    def record_fetch(stream):
        try:
            for page in stream:
                outputs.extend([page, page.url, page.params, page.headers, page.meta()])
        except errors.ApiError as exc:
            outputs.append(exc)
        outputs.append(stream.stats.to_dict())

    # payments: bearer, then a wrong key, then a rate-limit and an error body mid-fetch.
    key = api.credentials("payments")["api_key"]
    secrets.append(key)
    client = payments_client(api)
    outputs += [client, client.auth]
    api.add_fault(source="payments", kind="error_body", after=1)
    api.add_fault(source="payments", kind="rate_limit", retry_after="0", after=2)
    record_fetch(fetch_charges(client))
    wrong = "sk_test_wrong_key_for_redaction_1"
    secrets.append(wrong)
    record_fetch(fetch_charges(payments_client(api, key=wrong)))

    # devhub: token in the query string (also on a 401 with a bad token).
    dev_token = api.credentials("devhub")["token"]
    secrets.append(dev_token)
    q = source_client(
        api, "devhub", auth_obj=auth.ApiKey(dev_token, name="access_token", location="query")
    )
    record_fetch(
        q.fetch_pages(
            "/orgs/demo-org/repos", params={"per_page": 5}, paginator=paginators.LinkHeader()
        )
    )
    bad_token = "ghp_badTokenForRedactionTest0000000000"
    secrets.append(bad_token)
    bad = source_client(
        api, "devhub", auth_obj=auth.ApiKey(bad_token, name="access_token", location="query")
    )
    record_fetch(bad.fetch_pages("/orgs/demo-org/repos"))
    api.add_fault(source="devhub", kind="server_error", count=-1)
    record_fetch(q.fetch_pages("/orgs/demo-org/repos", params={"per_page": 5}))
    api.clear_faults()

    # commerce: header API key; crm: OAuth2 (token, refresh token, client secret) with expiry.
    secrets.append(api.credentials("commerce")["access_token"])
    shop = source_client(api, "commerce")
    outputs += [shop, shop.auth]
    record_fetch(
        shop.fetch_pages(
            "/orders.json",
            params={"limit": 5, "status": "any"},
            max_pages=2,
            paginator=paginators.LinkHeader(),
            records_path="orders",
        )
    )
    crm_creds = api.credentials("crm")
    secrets.append(crm_creds["client_secret"])
    crm = source_client(api, "crm")
    api.add_fault(kind="expire_tokens", source="crm", path="/crm/v3", after=1)
    record_fetch(
        crm.fetch_pages(
            "/crm/v3/objects/contacts",
            params={"limit": 100},
            max_pages=3,
            paginator=paginators.JsonCursor("paging.next.after", "after"),
            records_path="results",
        )
    )
    secrets += [crm.auth._token, crm.auth._refresh_token]
    outputs += [crm, crm.auth, crm.auth.describe()]
    wrong_secret = "crm-wrong-secret-for-redaction"
    secrets.append(wrong_secret)
    bad_oauth = auth.OAuth2ClientCredentials(
        "/oauth/v1/token", crm_creds["client_id"], wrong_secret
    )
    record_fetch(
        source_client(api, "crm", auth_obj=bad_oauth).fetch_pages("/crm/v3/objects/contacts")
    )

    # Rotation keys and basic.
    basic = auth.HttpBasic(key, "")
    record_fetch(
        payments_client(api, auth=basic).fetch_pages(
            "/v1/charges", params={"limit": 3}, records_path="data"
        )
    )

    assert all(secrets), "a secret under test is empty"
    assert any(isinstance(o, errors.ApiError) for o in outputs)
    haystack = _grep_everything(caplog, outputs)
    assert "ingestion_assets.http" in caplog.text  # the logs were really captured
    leaked = [s for s in secrets if contains_secret(haystack, [s])]
    assert not leaked, f"{len(leaked)} secret(s) leaked"


def test_config_errors_do_not_echo_secret_values():
    from pydantic import ValidationError

    from ingestion_assets.specs import CustomAuth

    with pytest.raises(ValidationError, match="does not accept these options") as info:
        CustomAuth(
            type="custom", class_path="ingestion_assets_tests.http.plugins:HeaderTokenAuth",
            options={"token": "tok-value-abc-123", "nope": True},
        )
    assert "tok-value-abc-123" not in str(info.value)
