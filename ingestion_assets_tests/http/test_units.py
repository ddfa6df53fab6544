"""Unit tests of the pure parsers and policies of the HTTP core (plain data, no HTTP)."""

from __future__ import annotations

import email.utils
import time

import pytest

from ingestion_assets.http import RetryPolicy, errors
from ingestion_assets.http.jsonpath import compile_path, find
from ingestion_assets.http.paginators import parse_link_header
from ingestion_assets.http.ratelimit import RateLimiter, parse_reset
from ingestion_assets.http.retry import parse_retry_after


def test_records_path_lookup():
    body = {"data": [1], "paging": {"items": [2], "next": {"after": "x"}}, "list": [{"id": 5}]}
    assert find(body, compile_path("data")) == [1]
    assert find(body, compile_path("paging.items")) == [2]
    assert find(body, compile_path("$.paging.next.after")) == "x"
    assert find(body, compile_path("list.0.id")) == 5
    assert find(body, compile_path("paging.missing.deep")) is None
    assert find([1, 2], compile_path("")) == [1, 2]


def test_link_header_parsing_relative_absolute_and_multiple_rels():
    header = (
        '<https://api.x/orders?page_info=abc&limit=50>; rel="next", '
        '</orders?page_info=prev>; rel="previous", <https://api.x/r?page=9>; rel="last"'
    )
    links = parse_link_header(header)
    assert links["next"] == "https://api.x/orders?page_info=abc&limit=50"
    assert links["previous"] == "/orders?page_info=prev"
    assert links["last"] == "https://api.x/r?page=9"
    assert parse_link_header('<a?x=1,2>; rel="next last"') == {"next": "a?x=1,2", "last": "a?x=1,2"}
    assert parse_link_header(None) == {}
    assert parse_link_header("garbage") == {}


def test_retry_after_seconds_and_http_date():
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= parse_retry_after(date, now=now) <= 31
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert parse_retry_after(past, now=now) == 0.0


def test_rate_limit_reset_delta_or_epoch():
    assert parse_reset("12") == 12.0
    now = 1_750_000_000.0
    assert parse_reset(str(int(now + 40)), now_epoch=now) == 40.0
    assert parse_reset(str(int(now - 40)), now_epoch=now) == 0.0
    assert parse_reset("x") is None


def test_retry_after_zero_still_waits_a_growing_floor():
    policy = RetryPolicy(retry_after_floor=0.5, backoff_max=8, jitter=False)
    delays = [policy.rate_limit_delay(0.0, n) for n in range(1, 6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert policy.rate_limit_delay(3.0, 1) == 3.0  # an explicit Retry-After wins above the floor
    capped = RetryPolicy(retry_after_max=10, jitter=False)
    assert capped.rate_limit_delay(3600.0, 1) == 10.0


def test_backoff_is_exponential_capped_and_jittered_within_bounds():
    policy = RetryPolicy(backoff_base=1, backoff_max=5, jitter=False)
    assert [policy.backoff(n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    jittered = RetryPolicy(backoff_base=1, backoff_max=5)
    for n in range(1, 6):
        assert policy.backoff(n) / 2 <= jittered.backoff(n) <= policy.backoff(n)


def test_header_feedback_pauses_only_near_the_limit():
    limiter = RateLimiter(None)
    plenty = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "50", "X-RateLimit-Reset": "10"}
    assert limiter.observe(plenty) == 0.0
    low = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "10"}
    assert limiter.observe(low) == pytest.approx(2.0)
    empty = {
        "X-RateLimit-Limit": "100",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int(time.time()) + 3),
    }
    assert 1.5 <= limiter.observe(empty) <= 3.5  # epoch form: wait for the reset


def test_errors_carry_context_and_transient_flag():
    err = errors.ServerError(
        "server error 503",
        source="payments",
        endpoint="charges",
        url="http://h/v1?api_key=SECRETX",
        status=503,
        body=b"<h1>oops</h1>",
    )
    assert err.transient and err.status == 503
    assert "SECRETX" not in str(err) and "payments/charges" in str(err)
    assert errors.ClientError("bad").transient is False
    assert errors.ApiError("x").to_dict()["type"] == "ApiError"


def test_http_core_imports_nothing_from_dagster():
    import subprocess
    import sys

    code = "import sys, ingestion_assets.http; sys.exit('dagster' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr or "ingestion_assets.http imported dagster"
